"""E7 — the field's regime: the Waterbirds-style task fine-tuned from a backbone pretrained once on a
shortcut-free set, ERM, JTT, GroupDRO and DFR as their authors run them, every method chosen with 5,
20 or 100 group-labelled validation images per group and (where it can) with none, worst-group
accuracy read against chance.

1. **Pretraining** (once per budget, cached): ``model-doctor waterbirds --pretraining``'s writer
   (:func:`model_doctor.data.waterbirds.write_pretraining`): Fashion-MNIST's ten classes (its training
   split only; the task tests on its test split) in random colours on crops of any of the twelve
   photos, and every photo alone as its own class (22 classes). Why both: a backbone pretrained on a
   large set (ImageNet) encodes the objects *and* the scenes, so the shortcut is one the features
   offer; a backbone taught only to ignore the places would hide it. The model is trained on it
   from scratch by the library (a one-arm study), its epoch chosen by validation accuracy. Why 32 px:
   the small CNN's receptive field (18 px) spans an object there (11-19 px), not at 64 px.
2. **Every method's candidates** per seed (:mod:`benchmarks.e7_methods`; E6's writer at 32 px: 2,000
   training images, the class on its place for 95 %, group-balanced validation 400 and test 1,000):
   ERM, JTT and GroupDRO from the backbone with a new two-class head (``train --init``), every layer
   fine-tuned; the CE-only control and the counterfactual (``treat``'s loss on 20 boxes per class, a
   quarter of them held out for its own rule) one more schedule from ERM's no-label model. Every
   epoch of every candidate is recorded; each selection rule then picks a (candidate, epoch) from
   the validation records: the worst group on 5, 20 or 100 validation images per group (the same
   images for every method), or with **no group label** average validation accuracy (ERM, JTT, the
   control) and ``treat``'s own swap rule on the held-out boxes (the counterfactual).
3. **DFR(Val)** as its authors' ``dfr_evaluate_spurious.py`` runs it
   (:func:`benchmarks.baselines.dfr_val`: L1 logistic regression on the no-label ERM model's frozen
   features, C tuned on half of a group-balanced labelled set, 20 retrains averaged) on the same 5,
   20 and 100 labelled images per group.

Every worst-group figure is printed beside random guessing's expected worst-group accuracy at the
test split's group sizes (:func:`model_doctor.data.groups.chance_worst_group`), and every model's
BG-Gap (ImageNet-9's background reliance, Xiao et al. 2021: accuracy with the object on its own
class's background minus on a random class's). Here that is the accuracy on the cue-agreeing test
groups minus the average over all four (the test split is group-balanced, so a random place is
either place equally often): 0 for a model that ignores the place, half the agreeing − conflicting
gap otherwise.

Usage: python -m benchmarks.bench_pretrained [--budget small|full] [--seeds 0 1 2] [--out docs/results/e7/e7_pretrained.md]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import _studies as S
from benchmarks import e7_methods as M
from benchmarks._common import emit, header
from benchmarks.baselines import DFR_C, dfr_predict, dfr_val, penultimate, per_group_subset
from benchmarks.bench_waterbirds import CORRELATION, _data, agreeing, chance
from model_doctor.config import Config, TreatConfig
from model_doctor.data.annotations import load_masks
from model_doctor.data.datasets import load_dataset
from model_doctor.data.masks import scaled_expansion
from model_doctor.data.waterbirds import write_pretraining, write_waterbirds
from model_doctor.data.workflow import with_masks
from model_doctor.experiment import spread
from model_doctor.models import build_model, load_matching
from model_doctor.study import beyond_noise, from_scratch
from model_doctor.training import FitConfig, split_train_val
from model_doctor.treatment.pools import make_pools
from model_doctor.treatment.selection import selector

BUDGETS = {
    "small": dict(arch="tinycnn", size=32, n_objects=300, n_places=120, pre_epochs=1, seeds=[0], n_train=240, n_val=80,
                  n_test=80, per_class=8, erm_epochs=1, ft_epochs=1, budgets=[5, 20]),
    # sized for this 2-core CPU: the pretraining ~10 minutes, each seed's 24 fine-tunes ~15 minutes on one core
    "full": dict(arch="smallcnn", size=32, n_objects=15000, n_places=6000, pre_epochs=24, seeds=[0, 1, 2], n_train=2000,
                 n_val=400, n_test=1000, per_class=20, erm_epochs=15, ft_epochs=5, budgets=[5, 20, 100]),
}
#: the settings the cache depends on
KEYS = ("arch", "size", "n_objects", "n_places", "pre_epochs", "n_train", "n_val", "n_test", "erm_epochs", "ft_epochs")
#: every fine-tune's base learning rate (candidates change it where :data:`e7_methods.CANDIDATES` says)
FT_LR = 0.01


def backbone(b: dict, cache: Path, root: str | None) -> dict[str, torch.Tensor]:
    """The pretrained weights (written and trained once; a study of one arm, resumable)."""
    folder = cache / "pretraining"
    if not (folder / "done").is_file():
        write_pretraining(folder, b["n_objects"], b["n_places"], b["size"], seed=0, fashion_root=root)
        (folder / "done").write_text("written\n")
    full = load_dataset(f"imagefolder:{folder}", "train", image_size=b["size"], in_channels=3)
    train, val = split_train_val(full, 0.1, 0)
    n = len(full.classes)

    def fresh():
        torch.manual_seed(0)
        return build_model(b["arch"], in_channels=3, num_classes=n, image_size=b["size"])

    run = from_scratch(cache / "backbone" / "pretrained", fresh, train, val,
                       FitConfig(epochs=b["pre_epochs"], lr=S.ORIGINAL_LR, seed=0), n)
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def bg_gap(g: dict) -> float:
    """Accuracy on the cue-agreeing groups minus the average over all groups (see the docstring)."""
    return agreeing(g) - sum(g["per_group"].values()) / len(g["per_group"])


def run_seed(b: dict, seed: int, cache: Path, root: str | None, weights: dict[str, torch.Tensor]) -> dict:
    """Every method's candidates for one seed, then each selection rule's choice and its test accuracy."""
    folder, here = cache / f"data-seed{seed}", cache / f"seed{seed}"
    if not (folder / "groups.csv").is_file():
        write_waterbirds(folder, b["n_train"], b["n_val"], b["n_test"], b["size"], CORRELATION, b["per_class"], seed,
                         fashion_root=root)
    d = _data(folder, b["size"])

    def start():
        torch.manual_seed(seed)
        model = build_model(b["arch"], in_channels=3, num_classes=2, image_size=b["size"])
        load_matching(model, weights)
        return model

    fit = FitConfig(epochs=b["erm_epochs"], lr=FT_LR, seed=seed)
    erm, runs = M.run_erm(d, start, fit, here / "erm")
    runs = {"erm": runs, "jtt": M.run_jtt(d, start, fit, here / "jtt"), "groupdro": M.run_groupdro(d, start, fit, here / "groupdro")}
    boxes = folder / "masks-box"
    found = load_masks("png", boxes, dataset_root=boxes)
    masked = with_masks(d["train"], found, 0)
    pools = make_pools(masked, masked, TreatConfig().holdout, b["per_class"], seed)   # as treat splits by default
    rule = selector(d["val"], 2, "swap", held=pools.select, seed=0)
    if rule is None:
        raise RuntimeError(f"{b['per_class']} boxes per class leave none for treat's own rule; raise per_class")
    expand = scaled_expansion(30, b["size"])   # as `treat --groups` makes its pools (split seed, expansion, no select)
    by_groups = make_pools(masked, with_masks(d["train"], found, expand),
                           TreatConfig().holdout, b["per_class"], Config().train.split_seed, with_select=False)
    runs |= M.run_treatment(d, erm, pools, rule, FitConfig(epochs=b["ft_epochs"], lr=FT_LR, seed=seed), seed,
                            here / "treat", by_groups)
    g_val, _ = d["groups"]["val"]
    g_test, names = d["groups"]["test"]
    out: dict = {"held_boxes": {"counterfactual": len(pools.select) + len(pools.report),
                                "counterfactual_groups": len(by_groups.report)}}
    labelled = {k: M.worst_on(g_val, per_group_subset(g_val, k, seed)) for k in b["budgets"]}   # the same images for all
    for method, rs in runs.items():
        rules = dict(labelled)
        if method not in ("groupdro", "counterfactual_groups"):   # GroupDRO needs every training image's group
            rules[0] = M.by_rule if method == "counterfactual" else M.by_average
        for k, score in rules.items():
            name, row = M.pick(rs, score)
            out[f"{method}@{k}"] = {**M.test_groups(row, g_test, names), "candidate": name, "epoch": row["epoch"]}
    feats = {s: penultimate(erm, d[s]) for s in ("train", "val", "test")}
    y = {s: torch.as_tensor([t for _, t in d[s].samples]) for s in ("val", "test")}
    for k in b["budgets"]:
        keep = per_group_subset(g_val, k, seed)
        fit_k = dfr_val(feats["train"], feats["val"][keep], y["val"][keep], g_val[keep], seed)
        hit = (dfr_predict(fit_k, feats["test"]) == y["test"]).double()
        per = {n: float(hit[g_test == i].mean()) for i, n in enumerate(names)}
        out[f"dfr@{k}"] = {"average": float(hit.mean()), "worst": min(per.values()), "per_group": per,
                           "candidate": f"C{fit_k['C']:g}", "unconverged": fit_k["unconverged"]}
    (here / "test.json").write_text(json.dumps(out))
    return out


#: (key, name, training images' group labels used, boxes, candidates)
METHODS = [("erm", "ERM", 0, False, 4), ("jtt", "JTT", 0, False, 4), ("groupdro", "GroupDRO", -1, False, 4),
           ("dfr", "DFR(Val) on ERM's features", 0, False, 7), ("control", "control: ERM + one more schedule, CE only", 0, False, 4),
           ("counterfactual", "counterfactual from ERM, half the boxes held out (for its no-label rule)", 0, True, 4),
           ("counterfactual_groups", "counterfactual from ERM as `treat --groups` splits the boxes", 0, True, 4)]


def table(rows: list[dict], b: dict) -> list[str]:
    lines = ["| method | selection (validation group labels) | group labels used | boxes per class | candidates "
             "| worst-group test acc | average test acc | average − worst | BG-Gap |", "|---|---|---|---|---|---|---|---|---|"]
    cell = lambda xs: (lambda sp: f"{100 * sp.mean:.1f} ± {100 * sp.std:.1f}")(spread(xs))
    for key, name, train_labels, boxes, cands in METHODS:
        for k in [0] + b["budgets"]:
            gs = [r.get(f"{key}@{k}") for r in rows]
            used = 4 * k + (b["n_train"] if train_labels < 0 else 0)
            how = f"{k} per group" if k else ("none: treat's own rule on held-out boxes" if boxes else "none: average accuracy")
            box = f"{b['per_class']} ({rows[0]['held_boxes'][key]} of {2 * b['per_class']} held out)" if boxes else "0"
            if any(g is None for g in gs):
                why = "no box left to choose with" if boxes else "needs group labels"
                lines.append(f"| {name} | none | | {box} | {cands} | n/a: {why} | | | |")
                continue
            lines.append(f"| {name} | {how} | {used} | {box} | {cands} | {cell([g['worst'] for g in gs])} | "
                         f"{cell([g['average'] for g in gs])} | {cell([g['average'] - g['worst'] for g in gs])} | "
                         f"{cell([bg_gap(g) for g in gs])} |")
    lines += [f"| random guessing (expected) | | 0 | 0 | | {chance(rows[0]['erm@0'])} | 50.0 | | 0.0 |", ""]
    treated = ("counterfactual", "counterfactual_groups")
    for t, k in ((t, k) for t in treated for k in [0] + b["budgets"] if f"{t}@{k}" in rows[0]):
        for o in [o for o, *_ in METHODS if o not in treated and f"{o}@{k}" in rows[0]]:
            d = [r[f"{t}@{k}"]["worst"] - r[f"{o}@{k}"]["worst"] for r in rows]
            sp = spread(d)
            lines.append(f"- {f'{k} group labels per group' if k else 'no group labels'}, worst-group accuracy, {t} − {o}: "
                         f"{100 * sp.mean:+.1f} ± {100 * sp.std:.1f} pts ({sp.n} seeds; "
                         f"{'beyond' if beyond_noise(d) else 'not beyond'} 2σ of the seed spread)")
    lines += ["", "Chosen per seed (candidate, epoch):"]
    for key, *_ in METHODS:
        for k in [0] + b["budgets"]:
            if f"{key}@{k}" in rows[0]:
                lines.append(f"- {key}, {k} per group: " + "; ".join(
                    f"{r[f'{key}@{k}']['candidate']}" + (f" e{r[f'{key}@{k}']['epoch']}" if "epoch" in r[f"{key}@{k}"] else "")
                    for r in rows))
    return lines


def cache_of(b: dict, args) -> Path:
    """``--cache/e7-pretrained/<budget>-<hash of the settings every run depends on>``."""
    import hashlib

    key = hashlib.sha256(json.dumps({k: b[k] for k in KEYS}, sort_keys=True).encode()).hexdigest()[:8]
    return Path(args.cache) / "e7-pretrained" / f"{args.budget}-{key}"


def main() -> int:
    ap = S.parser(__doc__)
    args = ap.parse_args()
    b = S.with_seeds(BUDGETS[args.budget], args.seeds)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root if (Path(args.root) / "FashionMNIST" / "raw").is_dir() else None
    cache = cache_of(b, args)
    weights = backbone(b, cache, root)
    rows = [run_seed(b, s, cache, root, weights) for s in b["seeds"]]
    lines = header("E7: the pretrained regime, worst-group accuracy", "bench_pretrained.py", args.budget)
    lines += [" ".join(__doc__.split("\n\n")[0].split()), "",
              f"{b['arch']}, {b['size']} px; pretraining: {b['n_objects']} object and {b['n_places']} photo-only images, "
              f"{b['pre_epochs']} epochs at lr {S.ORIGINAL_LR}; task: {b['n_train']} training images (correlation "
              f"{CORRELATION}); ERM, JTT and GroupDRO {b['erm_epochs']} epochs from the backbone, the control and the "
              f"counterfactual {b['ft_epochs']} more from ERM, at lr {FT_LR} unless a candidate changes it; candidates: "
              + "; ".join(f"{m} " + ", ".join(M.cand_name(c) for c in cs) for m, cs in M.CANDIDATES.items())
              + f", DFR C in {list(DFR_C)}; seeds {b['seeds']}; objects: "
              f"{'Fashion-MNIST' if root else 'scikit-learn digits (no FashionMNIST under --root)'}.", ""]
    lines += table(rows, b) + ["", "Departures from the authors' code:"] + [f"- {k}: {v}" for k, v in M.DEPARTURES.items()]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
