"""E7 — the field's regime: the Waterbirds-style task fine-tuned from a backbone pretrained once on a
shortcut-free set, ERM and DFR as its authors run it, worst-group accuracy read against chance.

1. **Pretraining** (once per budget, cached): ``model-doctor waterbirds --pretraining``'s writer
   (:func:`model_doctor.data.waterbirds.write_pretraining`): Fashion-MNIST's ten classes (its training
   split only; the task tests on its test split) in random colours on crops of any of the twelve
   photos, and every photo alone as its own class (22 classes). Why both: a backbone pretrained on a
   large set (ImageNet) encodes the objects *and* the scenes, so the shortcut is one the features
   offer; a backbone taught only to ignore the places would hide it. The model is trained on it
   from scratch by the library (a one-arm study), its epoch chosen by validation accuracy.
2. **ERM**, per seed (each with E6's data for that seed: 2,000 training images, the class on its
   place for 95 %, group-balanced validation 400 and test 1,000): the backbone with a new two-class
   head (``train --init``), every layer fine-tuned at ``ft_lr``. Its epoch chosen two ways: by average
   validation accuracy (**no group label**) and by worst-group validation accuracy (all 400
   validation images' groups: 100 per group).
3. **DFR(Val)** as its authors' ``dfr_evaluate_spurious.py`` runs it
   (:func:`benchmarks.baselines.dfr_val`: L1 logistic regression on the no-label ERM model's frozen
   features, C tuned on half of a group-balanced labelled set, 20 retrains averaged), with 5, 20 and
   100 group labels per group drawn from the validation images.

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
from benchmarks._common import emit, header
from benchmarks.baselines import dfr_predict, dfr_val, penultimate, per_group_subset
from benchmarks.bench_waterbirds import CORRELATION, _data, _pool, agreeing, chance
from model_doctor.data.datasets import load_dataset
from model_doctor.data.groups import group_accuracy
from model_doctor.data.waterbirds import write_pretraining, write_waterbirds
from model_doctor.experiment import spread
from model_doctor.models import build_model, load_matching
from model_doctor.study import ArmSpec, beyond_noise, from_scratch, run_study
from model_doctor.training import FitConfig, split_train_val
from model_doctor.treatment.selection import selector
from model_doctor.treatment.space import CounterfactualLoss

BUDGETS = {
    "small": dict(arch="tinycnn", size=32, n_objects=300, n_places=120, pre_epochs=1, seeds=[0], n_train=240, n_val=80,
                  n_test=80, per_class=8, ft_epochs=1, ft_lr=0.01, dfr_budgets=[5, 20], betas=[1.0]),
    # sized for this 2-core CPU: the pretraining ≤ 30 minutes, each seed's fine-tunes a few minutes
    "full": dict(arch="smallcnn", size=64, n_objects=15000, n_places=6000, pre_epochs=8, seeds=[0, 1, 2], n_train=2000,
                 n_val=400, n_test=1000, per_class=20, ft_epochs=5, ft_lr=0.01, dfr_budgets=[5, 20, 100],
                 betas=[1.0, 3.0, 10.0]),
}
#: the settings the cache depends on
KEYS = ("arch", "size", "n_objects", "n_places", "pre_epochs", "n_train", "n_val", "n_test", "ft_epochs", "ft_lr")


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
    folder = cache / f"data-seed{seed}"
    if not (folder / "groups.csv").is_file():
        write_waterbirds(folder, b["n_train"], b["n_val"], b["n_test"], b["size"], CORRELATION, b["per_class"], seed,
                         fashion_root=root)
    d = _data(folder, b["size"])

    def start():
        torch.manual_seed(seed)
        model = build_model(b["arch"], in_channels=3, num_classes=2, image_size=b["size"])
        load_matching(model, weights)
        return model

    fit = FitConfig(epochs=b["ft_epochs"], lr=b["ft_lr"], seed=seed)
    study = run_study(None, d["train"], d["val"], [ArmSpec("erm", start=start)], fit, 2, cache / f"seed{seed}" / "avg")
    labelled = run_study(None, d["train"], d["val"], [ArmSpec("erm", start=start)], fit, 2, cache / f"seed{seed}" / "wg",
                         select=selector(d["val"], 2, "groups", val_groups=d["groups"]["val"]))
    test = lambda m: group_accuracy(m, d["test"], *d["groups"]["test"])
    erm = study.arm("erm").model
    out = {"erm": test(erm), "erm_groups": test(labelled.arm("erm").model)}
    out.update(_treated(b, seed, cache, d, erm, _pool(d["train"], folder, "box", b["per_class"], seed), fit, test))
    feats = {s: penultimate(erm, d[s]) for s in ("train", "val", "test")}
    y = {s: torch.as_tensor([t for _, t in d[s].samples]) for s in ("val", "test")}
    g_val, _ = d["groups"]["val"]
    for k in b["dfr_budgets"]:
        keep = per_group_subset(g_val, k, seed)
        fit_k = dfr_val(feats["train"], feats["val"][keep], y["val"][keep], g_val[keep], seed)
        hit = (dfr_predict(fit_k, feats["test"]) == y["test"]).double()
        g_test, names = d["groups"]["test"]
        per = {n: float(hit[g_test == i].mean()) for i, n in enumerate(names)}
        out[f"dfr{k}"] = {"average": float(hit.mean()), "worst": min(per.values()), "per_group": per,
                          "sizes": out["erm"]["sizes"], "C": fit_k["C"], "unconverged": fit_k["unconverged"]}
    (cache / f"seed{seed}" / "test.json").write_text(json.dumps(out))
    return out


def _treated(b: dict, seed: int, cache: Path, d: dict, erm: torch.nn.Module, pool, fit: FitConfig, test) -> dict:
    """From the no-label ERM model, one more schedule: the CE-only control and the counterfactual
    on ``per_class`` boxes per class (β among ``betas``), each epoch and β chosen by worst-group
    validation accuracy (every validation image's group), as ``treat --groups`` chooses."""
    arms = [ArmSpec("control")] + [ArmSpec(f"counterfactual-beta{w:g}", lambda w=w: CounterfactualLoss(pool, w, seed=seed),
                                           group="cf", weight=w) for w in b["betas"]]
    study = run_study(erm, d["train"], d["val"], arms, fit, 2, cache / f"seed{seed}" / "treat",
                      select=selector(d["val"], 2, "groups", val_groups=d["groups"]["val"]))
    return {"control": test(study.arm("control").model), "counterfactual": test(study.arm("cf").model),
            "chosen_beta": study.arm("cf").spec.weight}


#: (key, name, group labels used (-1: every validation image's), boxes per class (-1: the budget's))
ROWS = [("erm", "ERM, epoch by average validation accuracy", 0, 0),
        ("erm_groups", "ERM, epoch by worst-group validation", -1, 0),
        ("control", "ERM + one more schedule, CE only (the control), by worst-group validation", -1, 0),
        ("counterfactual", "counterfactual from ERM, β and epoch by worst-group validation", -1, -1)]


def table(rows: list[dict], b: dict) -> list[str]:
    arms = ROWS + [(f"dfr{k}", f"DFR(Val), {k} labelled images per group", 4 * k, 0) for k in b["dfr_budgets"]]
    lines = ["| method | group labels used | boxes per class | worst-group test acc | average test acc | average − worst "
             "| BG-Gap |", "|---|---|---|---|---|---|---|"]
    cell = lambda xs: (lambda sp: f"{100 * sp.mean:.1f} ± {100 * sp.std:.1f}")(spread(xs))
    for key, name, labels, boxes in arms:
        gs = [r[key] for r in rows]
        lines.append(f"| {name} | {b['n_val'] if labels < 0 else labels} | {b['per_class'] if boxes < 0 else boxes} | "
                     f"{cell([g['worst'] for g in gs])} | {cell([g['average'] for g in gs])} | "
                     f"{cell([g['average'] - g['worst'] for g in gs])} | {cell([bg_gap(g) for g in gs])} |")
    lines += [f"| random guessing (expected) | 0 | 0 | {chance(rows[0]['erm'])} | 50.0 | | 0.0 |", ""]
    pairs = [(k, "erm") for k, *_ in arms[1:]] + [("counterfactual", "control")] + \
        [("counterfactual", f"dfr{k}") for k in b["dfr_budgets"]]
    for a, o in pairs:
        d = [r[a]["worst"] - r[o]["worst"] for r in rows]
        sp = spread(d)
        lines.append(f"- worst-group accuracy, {a} − {o}: {100 * sp.mean:+.1f} ± {100 * sp.std:.1f} pts ({sp.n} seeds; "
                     f"{'beyond' if beyond_noise(d) else 'not beyond'} 2σ of the seed spread)")
    lines += ["", "DFR's C chosen per seed: " + "; ".join(
        f"{k} per group: " + ", ".join(format(r[f'dfr{k}']['C'], 'g') for r in rows) for k in b["dfr_budgets"]),
        "", "Counterfactual β chosen per seed: " + ", ".join(format(r["chosen_beta"], "g") for r in rows)]
    return lines


def main() -> int:
    ap = S.parser(__doc__)
    args = ap.parse_args()
    b = S.with_seeds(BUDGETS[args.budget], args.seeds)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root if (Path(args.root) / "FashionMNIST" / "raw").is_dir() else None
    import hashlib

    key = hashlib.sha256(json.dumps({k: b[k] for k in KEYS}, sort_keys=True).encode()).hexdigest()[:8]
    cache = Path(args.cache) / "e7-pretrained" / f"{args.budget}-{key}"
    weights = backbone(b, cache, root)
    rows = [run_seed(b, s, cache, root, weights) for s in b["seeds"]]
    lines = header("E7: the pretrained regime, worst-group accuracy", "bench_pretrained.py", args.budget)
    lines += [" ".join(__doc__.split("\n\n")[0].split()), "",
              f"{b['arch']}, {b['size']} px; pretraining: {b['n_objects']} object and {b['n_places']} photo-only images, "
              f"{b['pre_epochs']} epochs at lr {S.ORIGINAL_LR}; task: {b['n_train']} training images (correlation "
              f"{CORRELATION}), fine-tunes {b['ft_epochs']} epochs at lr {b['ft_lr']}; seeds {b['seeds']}; objects: "
              f"{'Fashion-MNIST' if root else 'scikit-learn digits (no FashionMNIST under --root)'}.", ""]
    return emit(lines + table(rows, b), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
