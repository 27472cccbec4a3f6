"""A treatment's figures and words: the summary (per seed, over seeds, the verdict) from the test
split read once, and the lines the user reads last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..config import Config
from ..data.groups import chance_worst_group, group_accuracy
from ..experiment import spread
from ..runtime import Log, pct, versions
from ..study import StudyResult, verdict
from ..summary import ArmSummary, TreatSummary
from ..training import evaluate
from ..treatment.arms import weights_of
from ..treatment.reliance import background_reliance, headline_key, wilson_interval
from ..treatment.verdicts import broken_warning, reliance_verdicts, residual_hint
from .setup import Setup
from .text import reliance_table

__all__ = ["SELECTION_RULES", "summarize", "say", "diverged_line"]

SELECTION_RULES = {
    "swap": ("each arm's epoch, and the weight, by held-out background-swap accuracy on the selection set, validation "
             "accuracy breaking ties (validation accuracy alone without held-out annotated images); test data never used"),
    "mean": ("each arm's epoch, and the weight, by the mean of validation accuracy and held-out background-swap "
             "accuracy (validation accuracy alone without held-out annotated images); test data never used"),
    "balanced": ("each arm's epoch, and the weight, by the lower of the held-out cue-conflicting and cue-agreeing "
                 "background-swap accuracy, validation accuracy breaking ties; test data never used"),
    "groups": ("each arm's epoch, and the weight, by worst-group validation accuracy (--groups labels the validation "
               "images), average validation accuracy breaking ties; every held-out annotated image reports; test data "
               "never used")}


def diverged_line(cfg: Config, diverged: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict's first line when an arm diverged: which, why, and the option to change."""
    arms = "; ".join(f"{'escalated round ' if d['round'] == 'escalated' else ''}seed {d['seed']} {d['arm']} ({d['why']})"
                     for d in diverged)
    control = any(d["arm"] == "control" for d in diverged)
    fix = (f"lower --lr (now {cfg.treat.lr:g})" if control else
           f"lower the constraint weights (--alpha {cfg.treat.alpha:g}, --beta {' '.join(f'{b:g}' for b in weights_of(cfg.treat.beta))}) "
           f"or --lr (now {cfg.treat.lr:g})")
    return {"what": "diverged", "beyond_noise": False, "arms": diverged,
            "text": f"training diverged: {arms}. The figures above are not a treatment's effect; {fix} and run again "
                    "with --overwrite"}


def summarize(cfg: Config, s: Setup, studies: dict[int, StudyResult], test: Any,
               groups: tuple[Any, list[str]] | None) -> TreatSummary:
    """Per-seed rows, arms over seeds, verdicts: the test split read once per model."""
    report, seed_ = s.report, cfg.train.split_seed
    orig_test = {**evaluate(s.original, test, s.classes), **_groups_of(s.original, test, groups)}
    rel_orig = background_reliance(s.original, report, seed=seed_) if report is not None else None
    report_arms = ["treated"] + (["control"] if cfg.treat.control else [])
    runs = []
    for seed, study in studies.items():
        chosen = study.arm("treated")
        scores = {r.spec.weight: r.score for r in study.arms.values() if r.spec.group == "treated"}
        fired = s.escalation is not None and s.escalation["fired"]
        row: dict[str, Any] = {"seed": seed, "chosen_beta": chosen.spec.weight, "selection_scores": scores,
                               "dir": f"escalated/seed{seed}" if fired else f"seed{seed}"}
        names = report_arms + ([n for n in study.arms if study.arms[n].spec.group == "treated"] if len(scores) > 1 else [])
        for name in names:
            run = study.arm(name)
            row[name] = {"val_acc": run.result["val_acc"], **_test_of(run.model, test, s.classes),
                         "best_epoch": run.result.get("best_epoch"), "skipped_steps": run.result.get("skipped_steps", 0),
                         **_groups_of(run.model, test, groups)}
            if report is not None:
                row[name]["background_reliance"] = background_reliance(run.model, report, seed=seed_)
        runs.append(row)
    original = ArmSummary(orig_test["acc"], s.orig_val, orig_test["per_class"],
                          background_reliance=rel_orig, groups=_groups_over([orig_test["groups"]], s.classes) if groups else None)
    arms = {a: _over_seeds(runs, a, report is not None, s.classes) for a in report_arms}
    verdicts, delta = [], None
    if cfg.treat.control:
        deltas = [r["treated"]["test_acc"] - r["control"]["test_acc"] for r in runs]
        delta = spread(deltas).as_dict()
        verdicts.append(verdict(deltas, "test accuracy"))
        if groups is not None:   # the truth, where the user has it: it heads, the swap figures follow
            verdicts.insert(0, chance_said(verdict([r["treated"]["groups"]["worst"] - r["control"]["groups"]["worst"]
                                                    for r in runs], "worst-group test accuracy"), arms["treated"].groups))
        if s.pools is not None:
            verdicts += reliance_verdicts(runs, s.pools, rel_orig, object_colour=cfg.treat.object_colour)
        verdicts += [w for w in (broken_warning(runs), residual_hint(runs, escalated=bool(s.escalation and s.escalation["fired"]))
                                 if s.pools is not None else None) if w]
    told = (" (the swap colour-matched: --object-colour cue)" if cfg.treat.object_colour == "cue" and s.rule != "groups"
            else "")
    selection = {"rule": SELECTION_RULES[s.rule] + told, "select_rule": s.rule, "select_rule_asked": cfg.treat.select_rule,
                 "object_colour": cfg.treat.object_colour, "headline": headline_key(cfg.treat.object_colour),
                 "space_method": cfg.treat.space_method if any(s.betas) else None,
                 "weights": s.betas, "chosen_beta": {str(r["seed"]): r["chosen_beta"] for r in runs},
                 "val_floor": s.floor, "escalation": s.escalation}
    return TreatSummary(original=original, treated=arms["treated"], control=arms.get("control"), runs=runs,
                        verdict=verdicts, selection=selection, config=cfg.to_dict(), versions=versions(),
                        delta_treated_minus_control=delta, masks=s.pools.summary() if s.pools is not None else None,
                        classes=s.meta.get("classes"))


def _groups_of(model: nn.Module, test: Any, groups: tuple[Any, list[str]] | None) -> dict[str, Any]:
    """``{"groups": worst-group, average and per-group test accuracy}`` with ``--groups``, else ``{}``."""
    return {"groups": group_accuracy(model, test, *groups)} if groups is not None else {}


def _groups_over(gs: list[dict[str, Any]], n_classes: int) -> dict[str, Any]:
    """Worst-group and average accuracy (mean ± std over seeds), the mean per group, and random
    guessing's worst-group accuracy at these group sizes (:func:`chance_worst_group`)."""
    per_group = {n: spread([g["per_group"][n] for g in gs]).mean for n in gs[0]["per_group"]}
    mean, std = chance_worst_group([n for n in gs[0]["sizes"].values() if n], n_classes)
    return {"worst": spread([g["worst"] for g in gs]).as_dict(), "average": spread([g["average"] for g in gs]).as_dict(),
            "per_group": per_group, "worst_group": min(per_group, key=lambda n: per_group[n]),
            "chance": {"mean": mean, "std": std}}


def chance_said(v: dict[str, Any], groups: dict[str, Any] | None) -> dict[str, Any]:
    """The worst-group verdict with what random guessing scores on these groups beside the treated
    model's figure: a worst-group accuracy below that line is no better than a coin."""
    if groups is None or "chance" not in groups:
        return v
    c, w = groups["chance"], groups["worst"]["mean"]
    where = "below" if w < c["mean"] - 2 * c["std"] else "above" if w > c["mean"] + 2 * c["std"] else "within noise of"
    return {**v, "chance": c, "text": f"{v['text']}; the treated model's {100 * w:.1f} % is {where} random guessing's "
                                      f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f} % at these group sizes"}


def _test_of(model: nn.Module, test: Any, n_cls: int) -> dict[str, Any]:
    res = evaluate(model, test, n_cls)
    return {"test_acc": res["acc"], "per_class": res["per_class"]}


def _chance_words(groups: dict[str, Any]) -> str:
    c = groups.get("chance")
    return f"; random guessing {100 * c['mean']:.1f} ± {100 * c['std']:.1f} % at these group sizes" if c else ""


def _over_seeds(runs: list[dict[str, Any]], arm: str, reliance: bool, n_classes: int) -> ArmSummary:
    import torch

    acc = spread([r[arm]["test_acc"] for r in runs])
    per_class = torch.tensor([r[arm]["per_class"] for r in runs], dtype=torch.float64).mean(0).tolist()
    out = ArmSummary(acc.mean, spread([r[arm]["val_acc"] for r in runs]).mean, per_class, test_acc_std=acc.std)
    if "groups" in runs[0][arm]:
        out.groups = _groups_over([r[arm]["groups"] for r in runs], n_classes)
    if reliance:
        rels = [r[arm]["background_reliance"] for r in runs]
        out.background_reliance = {
            **{k: spread([x[k] for x in rels]).as_dict() for k in ("swap_acc", "same_swap_acc", "balanced_swap_acc",
                                                                    "shuffled_swap_acc", "matched_swap_acc", "transfer_swap_acc",
                                                                    "silhouette_swap_acc",
                                                                    "bg_only_acc", "bg_only_conf", "bg_grad_share")
               if all(x.get(k) == x.get(k) for x in rels)},   # nan: not measured (grey images: no colour covariance)
            "per_class": {c: {k: spread([x["per_class"][c][k] for x in rels]).mean for k in v}
                          for c, v in rels[0]["per_class"].items()}}
    return out


def say(cfg: Config, s: TreatSummary, studies: dict[int, StudyResult], out: Path, log: Log) -> None:
    """The lines the user reads last: test accuracy, reliance, the chosen weights, the verdict."""
    msg = f"original {pct(s.original.test_acc)} | treated {pct(s.treated.test_acc)}"
    if s.control is not None:
        msg += f" | control (CE only) {pct(s.control.test_acc)}"
    log(f"test accuracy: {msg} -> {out / 'summary.json'}")
    if s.treated.groups is not None:
        log("worst-group test accuracy: " + " | ".join(
            f"{a} {pct(v.groups['worst']['mean'])}" for a, v in s.arms().items() if v.groups is not None)
            + f" (groups: {', '.join(s.treated.groups['per_group'])}{_chance_words(s.treated.groups)})")
    rel_orig = s.original.background_reliance
    if rel_orig is not None:
        arms = {a: v.background_reliance for a, v in s.arms().items() if a != "original"}
        n = int(rel_orig["images"])
        ci = lambda v: "[{}]".format("–".join(f"{100 * x:.0f}" for x in wilson_interval(v, n)))
        lines = [("swap_acc", "background-swap accuracy (another class's background)"),
                 ("same_swap_acc", "background-swap accuracy (own class's background)"),
                 ("shuffled_swap_acc", "background-swap accuracy (a random class's background, own included)"),
                 ("matched_swap_acc", "background-swap accuracy (another class's background, the object's colour "
                                      "matched to that image's object)"),
                 ("transfer_swap_acc", "background-swap accuracy (another class's background, the object's colour mean "
                                       "and covariance transferred from that image's object)"),
                 ("silhouette_swap_acc", "background-swap accuracy (another class's background, the object filled "
                                         "flat with its own mean colour)"),
                 ("bg_only_acc", "background-only accuracy")]
        if cfg.treat.object_colour == "cue":   # the user's word: the colour-matched figure heads
            lines.insert(0, lines.pop(3))
        for k, what in lines:
            if rel_orig.get(k) != rel_orig.get(k):   # nan: not measured (grey images have no colour covariance)
                continue
            log(f"{what} on held-out annotated report images: original {pct(rel_orig[k])} {ci(rel_orig[k])} | "
                + " | ".join(f"{a} {pct(r[k]['mean'])} {ci(r[k]['mean'])}" for a, r in arms.items() if r is not None)
                + f" ([95 % interval over the {n} images])")
        log(reliance_table({"original": rel_orig, **{a: r for a, r in arms.items() if r is not None}}, s.classes))
    esc = s.selection.get("escalation")
    if esc and esc["fired"]:
        log(f"escalated: the first round ({esc['first_round_epochs']} epochs, --kl-weight {esc['first_round_kl_weight']:g}) "
            f"kept {100 * esc['swap_acc']:.0f} % swap accuracy on the "
            f"selection set against the original's {100 * esc['original_clean_acc']:.0f} %; every figure above is the "
            f"escalated round's ({esc['epochs']} epochs, --kl-weight 0; the first round's models stay in seed*/)")
    if len(weights_of(cfg.treat.beta)) > 1:
        log("chosen weight per seed (no test data): " + ", ".join(f"seed {r['seed']}: {r['chosen_beta']:g}" for r in s.runs))
    for v in s.verdict:
        log(f"verdict: {v['text']}")
