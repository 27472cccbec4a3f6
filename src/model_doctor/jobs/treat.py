"""``model-doctor treat``: the constrained fine-tune next to a CE-only control, as one study per seed.

Steps: load the original and its data; annotated pools (when a weight needs masks); the diagnosis
(when α or Eq. 6 needs it); per seed :func:`model_doctor.study.run_study` over the treated arms
(one per β) and the control; then, once, the test split; then ``summary.json``
(:class:`model_doctor.summary.TreatSummary`), the verdict lines and the report's artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import Config
from ..data.groups import group_accuracy, load_groups
from ..diagnosis import Diagnosis, diagnose
from ..distributed import barrier, is_main
from ..experiment import spread
from ..report.artifacts import save_annotations, save_treatment_maps
from ..runtime import (
    Log,
    check_diagnosis,
    check_resume,
    fit_config,
    load_data,
    load_model,
    out_dir,
    pct,
    save_model,
    save_run_config,
    train_val_split,
    trained_lr,
    versions,
    warn_skipped,
    workers,
    write_json,
)
from ..study import ArmSpec, StudyResult, diverged_arms, guess_ceiling, run_study, verdict
from ..summary import ArmSummary, TreatSummary
from ..training import evaluate
from ..treatment.plan import (
    Pools,
    broken_warning,
    build_terms,
    escalation,
    make_pools,
    needs_diagnosis,
    reliance_verdicts,
    residual_hint,
    weights_of,
)
from ..treatment.reliance import (
    as_told,
    background_reliance,
    group_selection_score,
    headline_key,
    resolve_rule,
    selection_score,
    wilson_interval,
)
from .text import reliance_table

__all__ = ["run_treat"]

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


@dataclass
class _Setup:
    """What every seed of a treat run shares."""

    original: nn.Module
    meta: dict[str, Any]
    train_full: Any
    train: Any
    val: Any
    betas: list[float]
    pools: Pools | None
    expand: int
    layers: list[str]
    diag: Diagnosis | None
    rule: str = "swap"
    val_groups: tuple[Any, list[str]] | None = None
    floor: float = 0.0  # validation accuracy under which an epoch is chosen last (min_val_share × the original's)
    orig_val: float = float("nan")  # the original's validation accuracy: the floor's base and the summary's figure
    escalation: dict[str, Any] | None = None  # what decided the escalated round (treat.escalate_below), once measured
    ceiling: float | None = None  # validation accuracy no better than guessing (None when the original is no better)

    @property
    def classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def report(self) -> Any:
        """The annotated images the reliance figures are measured on (report set, else selection set)."""
        if self.pools is None:
            return None
        return self.pools.report if self.pools.report is not None else self.pools.select


def run_treat(cfg: Config, log: Log = print, train_data: Any = None, test_data: Any = None) -> dict[str, Any]:
    """Fine-tune the original with the constraints and, with ``treat.control``, a CE-only control
    with the identical schedule, data order and seed; pick each arm's best epoch and the weight
    without test data; evaluate original, treated and control on the test split once, at the end.

    ``train_data`` / ``test_data`` replace the named dataset (e.g. a ``MaskedDataset`` for beta > 0).
    """
    out = _checked_out(cfg)
    s = _setup(cfg, out, log, train_data)
    arms = _arms(cfg, s)
    first = {seed: _run_seed(cfg, s, arms, seed, out / f"seed{seed}", log) for seed in cfg.treat.seeds}
    cfg, studies, s.escalation = _escalate(cfg, s, arms, first, out, log)
    # the test split is read here, once, after every arm has finished
    test = test_data if test_data is not None else load_data(cfg, "test", s.meta["in_channels"], s.classes,
                                                                 like=s.train_full)
    groups = load_groups(cfg.treat.groups, test, "test") if cfg.treat.groups else None
    summary = _summarize(cfg, s, studies, test, groups)
    summary.diverged = [{"round": "escalated" if studies is not first else "first", **d}
                        for d in diverged_arms(studies, ["treated", "control"], s.ceiling)]
    if summary.diverged:
        summary.verdict.insert(0, _diverged_line(cfg, summary.diverged))
    if is_main():
        report_arms = ["treated"] + (["control"] if cfg.treat.control else [])
        shown = studies[next(iter(studies))]
        save_treatment_maps(out, s.original, {a: shown.arm(a).model for a in report_arms}, test, s.layers[-1])
    write_json(out / "summary.json", summary.to_dict())
    _say(cfg, summary, studies, out, log)
    return summary.to_dict()


def _checked_out(cfg: Config):
    if cfg.diagnose.estimate:
        raise ValueError("diagnose.estimate is set, but only `model-doctor diagnose` estimates; remove it from the "
                         "config to treat, or run `model-doctor diagnose --estimate`")
    out = out_dir(cfg, "treat")
    if not cfg.model.weights:
        raise ValueError("treat needs the trained original; pass --weights (from `model-doctor train`)")
    return out


def _setup(cfg: Config, out: Path, log: Log, train_data: Any) -> _Setup:
    """Model, data, pools, layers and diagnosis; writes config.yaml (and the annotations' figure data)."""
    t = cfg.treat
    betas = weights_of(t.beta)
    original, meta = load_model(cfg)
    if t.lr is None:
        t.lr = trained_lr(cfg.model.weights)
        log(f"fine-tuning at learning rate {t.lr:g} (the original's; --lr to change)")
    n_cls = meta["num_classes"]
    train_full = train_data if train_data is not None else load_data(cfg, "train", meta["in_channels"], n_cls)
    tr, va = train_val_split(cfg, train_full, meta["in_channels"])
    check_resume(cfg, out)
    if t.groups:  # a bad CSV fails now, not after training (only file names are listed; no test image is read)
        load_groups(t.groups, load_data(cfg, "test", meta["in_channels"], n_cls, like=train_full), "test")
    val_groups = _val_groups(cfg, va, log)
    rule = resolve_rule(t.select_rule, val_groups is not None)
    pools, expand = None, 0
    if any(betas) or t.rrr:
        tr, pools, expand = _treat_masks(cfg, train_full, tr, log, select=rule != "groups")
    save_run_config(cfg, out, {"command": "treat", "versions": versions(), "model": meta, "train_size": len(tr), "val_size": len(va),
                               **({"masks": pools.summary(), "expand": expand} if pools else {})})
    if pools is not None and is_main():
        save_annotations(out, pools)
    layers = _layers(original, meta, t.layers or cfg.diagnose.layers, train_full[0][0])
    diag = _diagnosis(cfg, original, meta, tr, out, log) if needs_diagnosis(t, betas) else None
    if diag is not None and not t.layers:
        layers = list(diag.layers)
    orig_eval = evaluate(original, va, n_cls)
    floor, orig_val, ceiling = 0.0, orig_eval["acc"], guess_ceiling(orig_eval["counts"])
    if t.min_val_share and pools is not None and pools.select is not None and rule != "groups":
        floor = t.min_val_share * orig_val
        log(f"selection floor: validation accuracy {100 * floor:.1f} % ({t.min_val_share:g} × the original's "
            f"{100 * orig_val:.1f} %); an epoch under it is chosen only when every epoch is (--min-val-share)")
    return _Setup(original, meta, train_full, tr, va, betas, pools, expand, layers, diag, rule, val_groups, floor, orig_val,
                  ceiling=ceiling if orig_val > ceiling else None)


def _val_groups(cfg: Config, val: Any, log: Log) -> tuple[Any, list[str]] | None:
    """The validation images' groups from ``--groups``; None (said once) where it does not label them all."""
    from torch.utils.data import Subset

    if not cfg.treat.groups:
        return None
    split = "train" if isinstance(val, Subset) else "val"  # carved from train/ when the folder has no val/
    try:
        return load_groups(cfg.treat.groups, val, split)
    except ValueError as exc:
        if cfg.treat.select_rule == "groups":
            raise
        log(f"groups: not used to select ({exc}); choosing by --select-rule swap")
        return None


def _layers(model: nn.Module, meta: dict[str, Any], spec: Any, example: Any) -> list[str]:
    """Layer names from a spec (or the architecture's default; "auto" = the last conv in execution order)."""
    from ..layers import resolve_layers

    return [n for n, _ in resolve_layers(model, spec or meta["default_layers"], example[None])]


def _diagnosis(cfg: Config, original: nn.Module, meta: dict[str, Any], tr: Any, out: Path, log: Log) -> Diagnosis:
    """The saved diagnosis (``--diagnosis`` or OUT/diagnosis), else one made now on the training part."""
    t, d = cfg.treat, cfg.diagnose
    diag_dir = Path(t.diagnosis) if t.diagnosis else out / "diagnosis"
    if t.diagnosis or (diag_dir / "diagnosis.json").is_file():
        diag = Diagnosis.load(diag_dir)
    else:  # diagnosis samples come from the training part only, never from validation
        diag = diagnose(original, tr, layers=d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                        samples_per_class=d.samples_per_class, min_confidence=d.min_confidence, noise=d.noise,
                        noise_draws=d.noise_draws, batch_size=d.batch_size, seed=d.seed, reduce=d.reduce,  # type: ignore[arg-type]  # validated by config
                        theta=d.theta, allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"),
                        precision=cfg.runtime.precision, num_workers=workers(cfg, meta["device"]))
        if is_main():
            diag.save(diag_dir)
        barrier()
        log(f"diagnosed the original at {', '.join(diag.layers)} -> {diag_dir}")
    check_diagnosis(diag, original, meta["num_classes"], str(diag_dir))
    return diag


def _treat_masks(cfg: Config, train_full: Any, tr: Any, log: Log, select: bool = True) -> tuple[Any, Pools, int]:
    """(training part with expanded masks, pools, expansion) for a run that uses masks."""
    from torch.utils.data import Subset

    from ..data.masks import ExpandedMasks, scaled_expansion

    t = cfg.treat
    expand = t.expand if t.expand is not None else scaled_expansion(30, int(train_full[0][0].shape[-1]))
    if t.masks:
        from ..data.annotations import load_masks
        from ..data.workflow import with_masks

        found = load_masks(t.mask_format, t.masks, dataset_root=t.masks)
        raw_full, exp_full = with_masks(train_full, found, 0), with_masks(train_full, found, expand)
    elif len(train_full[0]) >= 4:  # a dataset with its own masks (decoy-*)
        raw_full, exp_full = train_full, ExpandedMasks(train_full, expand)
    else:
        raise ValueError("beta/rrr need foreground masks; pass --masks DIR (see `model-doctor select`) or use a "
                         "dataset with masks (decoy-digits, decoy-fashion-mnist)")
    raw_tr, exp_tr = Subset(raw_full, tr.indices), Subset(exp_full, tr.indices)
    pools = make_pools(raw_tr, exp_tr, t.holdout, t.annotated_per_class, cfg.train.split_seed, t.refine, t.erode, select)
    pools.skipped_report = raw_full.skip_report() if hasattr(raw_full, "skip_report") else "skipped: none"
    log(f"masks: {pools.describe()} (expansion {expand} px for the gradient penalties); annotations {pools.skipped_report}")
    return pools.masked_train, pools, expand


def _arms(cfg: Config, s: _Setup) -> list[tuple[str, float | None]]:
    """(name, weight) of every arm: one treated arm per β (group "treated"), then the control."""
    arms: list[tuple[str, float | None]] = [(f"treated-beta{b:g}" if len(s.betas) > 1 else "treated", b) for b in s.betas]
    return arms + ([("control", None)] if cfg.treat.control else [])


def _run_seed(cfg: Config, s: _Setup, arms: list[tuple[str, float | None]], seed: int, seed_dir: Path,
              log: Log) -> StudyResult:
    t = cfg.treat
    held = s.pools.select if s.pools is not None else None

    def select(model: nn.Module) -> dict[str, Any]:
        """The no-test-data selection rule: worst-group validation accuracy (``groups``), else
        validation accuracy and held-out background-swap accuracy."""
        if s.rule == "groups":
            g = group_accuracy(model, s.val, *s.val_groups)  # type: ignore[misc]  # set with the groups rule
            return {"val_worst_group": g["worst"], "select_score": group_selection_score(g)}
        val = evaluate(model, s.val, s.classes)["acc"]
        cue = t.object_colour == "cue"
        rel = as_told(background_reliance(model, held, seed=cfg.train.split_seed, matched=cue),  # type: ignore[arg-type]  # select runs only with held
                      t.object_colour)
        return {"held_swap_acc": rel["swap_acc"], "held_bg_grad_share": rel["bg_grad_share"],
                "select_score": selection_score(val, rel, s.rule, s.floor)}

    def terms(beta: float):
        return lambda: build_terms(t, s.diag, seed, beta, s.pools, s.expand, s.layers)

    specs = [ArmSpec(name, terms(w), group="treated", weight=w) if w is not None else ArmSpec(name)
             for name, w in arms]
    assert t.lr is not None  # set from the original's config in _setup
    fcfg = fit_config(cfg, s.meta["device"], epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=seed,
                      freeze_bn=t.freeze_bn)
    study = run_study(s.original, s.train, s.val, specs, fcfg, s.classes, seed_dir,
                      select=select if held is not None or s.rule == "groups" else None, resume=cfg.runtime.resume, log=log,
                      on_epoch=lambda arm, r: log(_epoch_line(seed, arm, r)))
    for name, run in study.arms.items():
        warn_skipped(run.result, f"seed {seed} {name}", log)
        save_model(run.model, seed_dir / name, s.meta)
    return study


def _escalate(cfg: Config, s: _Setup, arms: list[tuple[str, float | None]], studies: dict[int, StudyResult],
              out: Path, log: Log) -> tuple[Config, dict[int, StudyResult], dict[str, Any] | None]:
    """(config, studies, what decided) after :func:`~model_doctor.treatment.plan.escalation`: where
    the treated models still read the background on the selection set, every arm (control included,
    so the schedules stay equal) trains again from the original at ``kl_weight`` 0 for
    ``escalate_epochs`` under ``OUT/escalated``, and that round is the one reported. Only the
    counterfactual space method with a selection set escalates: the others have no KL term."""
    t = cfg.treat
    if (not t.escalate_below or s.pools is None or s.pools.select is None or s.rule == "groups"
            or t.space_method != "counterfactual" or not any(s.betas)):
        return cfg, studies, None
    seed_ = cfg.train.split_seed
    cue = t.object_colour == "cue"
    swaps = [background_reliance(st.arm("treated").model, s.pools.select, seed=seed_, matched=cue)[headline_key(t.object_colour)]
             for st in studies.values()]
    clean = background_reliance(s.original, s.pools.select, seed=seed_, matched=False)["clean_acc"]
    due = escalation(swaps, clean, t.escalate_below)
    decided = {"fired": due is not None, "swap_acc": sum(swaps) / len(swaps), "swap_acc_per_seed": swaps,
               "original_clean_acc": clean, "below": t.escalate_below,
               "selection_images": len(s.pools.select),
               "chosen_beta_per_seed": [st.arm("treated").spec.weight for st in studies.values()]}
    if due is None:
        return cfg, studies, decided
    import copy

    esc = copy.deepcopy(cfg)
    esc.treat.kl_weight, esc.treat.epochs = 0.0, t.escalate_epochs or 3 * t.epochs
    decided.update(epochs=esc.treat.epochs, kl_weight=0.0, first_round_epochs=t.epochs, first_round_kl_weight=t.kl_weight)
    log(f"escalating: on the selection set's {len(s.pools.select)} held-out images the treated models are right on "
        f"{100 * due['swap_acc']:.0f} % on another class's background{' (colour-matched: --object-colour cue)' if cue else ''} "
        f"against the original's {100 * clean:.0f} % as "
        f"annotated (under {t.escalate_below:g} ×): every arm trains again at --kl-weight 0 for {esc.treat.epochs} "
        f"epochs -> {out / 'escalated'} (--escalate-below 0 turns this off)")
    save_run_config(esc, out / "escalated", {"command": "treat", "versions": versions(), "escalation": decided})
    return esc, {seed: _run_seed(esc, s, arms, seed, out / "escalated" / f"seed{seed}", log) for seed in studies}, decided


def _diverged_line(cfg: Config, diverged: list[dict[str, Any]]) -> dict[str, Any]:
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


def _epoch_line(seed: int, arm: str, r: dict[str, Any]) -> str:
    return (f"seed {seed} {arm} epoch {r['epoch']}: " + " ".join(f"{k[5:]} {v:.4f}" for k, v in r.items()
                                                                  if k.startswith("loss_"))
            + f" val_acc {r['val_acc']:.4f}"
            + (f" held-out swap acc {r['held_swap_acc']:.4f}" if r.get("held_swap_acc") is not None else "")
            + (f" val worst group {r['val_worst_group']:.4f}" if r.get("val_worst_group") is not None else ""))


def _summarize(cfg: Config, s: _Setup, studies: dict[int, StudyResult], test: Any,
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
                          background_reliance=rel_orig, groups=_groups_over([orig_test["groups"]]) if groups else None)
    arms = {a: _over_seeds(runs, a, report is not None) for a in report_arms}
    verdicts, delta = [], None
    if cfg.treat.control:
        deltas = [r["treated"]["test_acc"] - r["control"]["test_acc"] for r in runs]
        delta = spread(deltas).as_dict()
        verdicts.append(verdict(deltas, "test accuracy"))
        if groups is not None:
            verdicts.append(verdict([r["treated"]["groups"]["worst"] - r["control"]["groups"]["worst"] for r in runs],
                                    "worst-group test accuracy"))
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


def _groups_over(gs: list[dict[str, Any]]) -> dict[str, Any]:
    """Worst-group and average accuracy (mean ± std over seeds) and the mean per group."""
    per_group = {n: spread([g["per_group"][n] for g in gs]).mean for n in gs[0]["per_group"]}
    return {"worst": spread([g["worst"] for g in gs]).as_dict(), "average": spread([g["average"] for g in gs]).as_dict(),
            "per_group": per_group, "worst_group": min(per_group, key=lambda n: per_group[n])}


def _test_of(model: nn.Module, test: Any, n_cls: int) -> dict[str, Any]:
    res = evaluate(model, test, n_cls)
    return {"test_acc": res["acc"], "per_class": res["per_class"]}


def _over_seeds(runs: list[dict[str, Any]], arm: str, reliance: bool) -> ArmSummary:
    import torch

    acc = spread([r[arm]["test_acc"] for r in runs])
    per_class = torch.tensor([r[arm]["per_class"] for r in runs], dtype=torch.float64).mean(0).tolist()
    out = ArmSummary(acc.mean, spread([r[arm]["val_acc"] for r in runs]).mean, per_class, test_acc_std=acc.std)
    if "groups" in runs[0][arm]:
        out.groups = _groups_over([r[arm]["groups"] for r in runs])
    if reliance:
        rels = [r[arm]["background_reliance"] for r in runs]
        out.background_reliance = {
            **{k: spread([x[k] for x in rels]).as_dict() for k in ("swap_acc", "same_swap_acc", "balanced_swap_acc",
                                                                    "shuffled_swap_acc", "matched_swap_acc", "bg_only_acc",
                                                                    "bg_only_conf", "bg_grad_share")},
            "per_class": {c: {k: spread([x["per_class"][c][k] for x in rels]).mean for k in v}
                          for c, v in rels[0]["per_class"].items()}}
    return out


def _say(cfg: Config, s: TreatSummary, studies: dict[int, StudyResult], out: Path, log: Log) -> None:
    """The lines the user reads last: test accuracy, reliance, the chosen weights, the verdict."""
    msg = f"original {pct(s.original.test_acc)} | treated {pct(s.treated.test_acc)}"
    if s.control is not None:
        msg += f" | control (CE only) {pct(s.control.test_acc)}"
    log(f"test accuracy: {msg} -> {out / 'summary.json'}")
    if s.treated.groups is not None:
        log("worst-group test accuracy: " + " | ".join(
            f"{a} {pct(v.groups['worst']['mean'])}" for a, v in s.arms().items() if v.groups is not None)
            + f" (groups: {', '.join(s.treated.groups['per_group'])})")
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
                 ("bg_only_acc", "background-only accuracy")]
        if cfg.treat.object_colour == "cue":   # the user's word: the colour-matched figure heads
            lines.insert(0, lines.pop(3))
        for k, what in lines:
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
