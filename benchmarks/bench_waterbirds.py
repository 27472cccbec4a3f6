"""E6 — the Waterbirds-style benchmark: worst-group accuracy of the counterfactual against ERM,
JTT, DFR and GroupDRO (oracle), all as arms of one study per seed.

Per seed (each with its own data, original and annotated sample): ``model-doctor waterbirds``'s
writer (``model_doctor.data.waterbirds``: Fashion-MNIST tops vs footwear in random colours on
natural-photo crops; the class agrees with the place on ``correlation`` of training images;
group-balanced validation and test); an ERM original trained from scratch (no pretrained weights
here); then, fine-tuning that original with one schedule (:func:`model_doctor.study.run_study`):

- ``erm`` — CE only (the control);
- ``jtt`` — the original's training errors repeated ×20 (no group labels);
- ``dfr`` — the last layer only, on the N annotated images per class and 4 background swaps of each;
- ``groupdro`` — online GroupDRO with every training image's group (oracle; the upper reference);
- ``counterfactual`` — the default space method at β 1, 3 and 10 (one arm each, the best chosen);
- ``ceiling`` — not an arm: a model trained like the original on the same objects with places drawn
  independently of the class (correlation 0.5), to show what the model can learn without the shortcut.

Every arm's epoch (and the counterfactual's β) is chosen by worst-group accuracy on the
group-balanced validation split, which needs validation group labels (as JTT's and DFR's papers
assume); the test split is read once per finished arm. Annotations: boxes, refined by GrabCut.

Usage: python -m benchmarks.bench_waterbirds [--budget small|full] [--seeds 0 1 2] [--out docs/results/e6_waterbirds.md]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import _studies as S
from benchmarks._common import emit, header
from model_doctor.data.annotations import load_masks
from model_doctor.data.datasets import load_dataset
from model_doctor.data.groups import group_accuracy, load_groups
from model_doctor.data.waterbirds import write_waterbirds
from model_doctor.data.workflow import with_masks
from model_doctor.experiment import cached_run, spread
from model_doctor.models import build_model
from model_doctor.study import ArmSpec, run_study
from model_doctor.training import FitConfig
from model_doctor.treatment.baselines import GroupDROLoss, WithGroups, freeze_all_but_last, jtt_upsampled, swap_balanced
from model_doctor.treatment.pool import AnnotatedPool
from model_doctor.treatment.space import CounterfactualLoss

BUDGETS = {
    "small": dict(arch="tinycnn", seeds=[0], n_train=240, n_val=40, n_test=80, size=32, per_class=8, orig_epochs=2,
                  ft_epochs=1, betas=[1.0]),
    # sized for this 2-core CPU (smallcnn at 64 px trains ~150 img/s on one core): 2000 images, arms 5 epochs
    "full": dict(arch="smallcnn", seeds=[0, 1, 2], n_train=2000, n_val=400, n_test=1000, size=64, per_class=20,
                 orig_epochs=15, ft_epochs=5, betas=[1.0, 3.0, 10.0]),
}
CORRELATION = 0.95
JTT_FACTOR = 20


def _data(folder: Path, size: int) -> dict:
    """The splits, the training split's annotated pool (GrabCut-refined boxes) and the group labels."""
    name = f"imagefolder:{folder}"
    ds = {s: load_dataset(name, s, image_size=size, in_channels=3) for s in ("train", "val", "test")}
    groups = {s: load_groups(folder / "groups.csv", ds[s], s) for s in ds}
    masked = with_masks(ds["train"], load_masks("png", folder / "masks-box", dataset_root=folder / "masks-box"), 0)
    return {**ds, "groups": groups, "pool": AnnotatedPool.from_dataset(masked).refine("grabcut")}


def _arms(original, d: dict, budget: dict, seed: int) -> list[ArmSpec]:
    g_train, names = d["groups"]["train"]
    cf = [ArmSpec(f"counterfactual-beta{b:g}", lambda b=b: CounterfactualLoss(d["pool"], b, seed=seed), group="cf",
                  weight=b) for b in budget["betas"]]
    return [ArmSpec("erm"),
            ArmSpec("jtt", train=jtt_upsampled(original, d["train"], JTT_FACTOR)[0]),
            ArmSpec("dfr", train=swap_balanced(d["pool"], partners=4, seed=seed), prepare=freeze_all_but_last,
                    fit={"freeze_bn": True}),
            ArmSpec("groupdro", train=WithGroups(d["train"], g_train), terms=lambda: GroupDROLoss(len(names)))] + cf


def _ceiling(b: dict, seed: int, cache: Path, root: str | None, fresh, val, select):
    """The same objects and schedule as the original, places drawn independently of the class
    (correlation 0.5): what this model learns when the background carries no shortcut."""
    folder = cache / f"data-seed{seed}-uncorrelated"
    if not (folder / "groups.csv").is_file():
        write_waterbirds(folder, b["n_train"], b["n_val"], b["n_val"], b["size"], 0.5, b["per_class"], seed,
                         fashion_root=root)
    train = load_dataset(f"imagefolder:{folder}", "train", image_size=b["size"], in_channels=3)
    model, _ = cached_run(cache / f"seed{seed}" / "ceiling", fresh, train, val,
                          FitConfig(epochs=b["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, tag="ceiling", select=select)
    return model


def run_seed(budget: dict, seed: int, cache: Path, root: str | None) -> dict:
    b = budget
    folder = cache / f"data-seed{seed}"
    if not (folder / "groups.csv").is_file():
        write_waterbirds(folder, b["n_train"], b["n_val"], b["n_test"], b["size"], CORRELATION, b["per_class"], seed,
                         fashion_root=root)
    d = _data(folder, b["size"])
    select = lambda m: {"select_score": group_accuracy(m, d["val"], *d["groups"]["val"])["worst"]}

    def fresh():
        torch.manual_seed(seed)
        return build_model(b["arch"], in_channels=3, num_classes=2, image_size=b["size"])

    original, _ = cached_run(cache / f"seed{seed}" / "original", fresh, d["train"], d["val"],
                             FitConfig(epochs=b["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, tag="original",
                             select=select)
    study = run_study(original, d["train"], d["val"], _arms(original, d, b, seed),
                      FitConfig(epochs=b["ft_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, cache / f"seed{seed}",
                      select=select)
    ceiling = _ceiling(b, seed, cache, root, fresh, d["val"], select)
    test = lambda m: group_accuracy(m, d["test"], *d["groups"]["test"])
    out = {"original": test(original), **{n: test(study.arm(n).model) for n in ("erm", "jtt", "dfr", "groupdro")},
           "counterfactual": test(study.arm("cf").model), "chosen_beta": study.arm("cf").spec.weight,
           "ceiling": test(ceiling)}
    (cache / f"seed{seed}" / "test.json").write_text(json.dumps(out))
    return out


def table(rows: list[dict]) -> list[str]:
    arms = ["original", "erm", "jtt", "dfr", "groupdro", "counterfactual", "ceiling"]
    lines = ["| arm | worst-group test acc | average test acc | worst − ERM (worst group) |", "|---|---|---|---|"]
    for a in arms:
        w, av = spread([r[a]["worst"] for r in rows]), spread([r[a]["average"] for r in rows])
        dw = spread([r[a]["worst"] - r["erm"]["worst"] for r in rows])
        lines.append(f"| {a} | {100 * w.mean:.1f} ± {100 * w.std:.1f} | {100 * av.mean:.1f} ± {100 * av.std:.1f} | "
                     f"{100 * dw.mean:+.1f} ± {100 * dw.std:.1f} |")
    lines.append("")
    for a, b in (("counterfactual", "erm"), ("counterfactual", "jtt"), ("counterfactual", "dfr"),
                 ("groupdro", "counterfactual")):
        d = [r[a]["worst"] - r[b]["worst"] for r in rows]
        sp = spread(d)
        where = "beyond" if sp.n > 1 and abs(sp.mean) > 2 * sp.std else "not beyond"
        lines.append(f"- worst-group accuracy, {a} − {b}: {100 * sp.mean:+.1f} ± {100 * sp.std:.1f} pts "
                     f"({sp.n} seeds; {where} 2σ of the seed spread)")
    return lines


def _paragraph(text: str) -> str:
    """A docstring paragraph as markdown: wrapped lines joined, list items kept on their own lines."""
    import re

    return re.sub(r"\n(?!- )\s*", " ", text.strip()) + "\n"


def main() -> int:
    ap = S.parser(__doc__)
    args = ap.parse_args()
    budget = S.with_seeds(BUDGETS[args.budget], args.seeds)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root if (Path(args.root) / "FashionMNIST" / "raw").is_dir() else None
    cache = S.study_cache(args, "e6-waterbirds", budget)
    rows = [run_seed(budget, s, cache, root) for s in budget["seeds"]]
    lines = header("E6: Waterbirds-style benchmark, worst-group accuracy", "bench_waterbirds.py", args.budget)
    lines += [*(_paragraph(__doc__.split("\n\n")[i]) for i in (1, 2, 3)),
              f"{budget['arch']}, {budget['size']} px, {budget['n_train']} training images (correlation {CORRELATION}), "
              f"{budget['per_class']} box annotations per class, original {budget['orig_epochs']} epochs, arms "
              f"{budget['ft_epochs']} epochs at lr {S.ORIGINAL_LR}; seeds {budget['seeds']}; objects: "
              f"{'Fashion-MNIST' if root else 'scikit-learn digits (no FashionMNIST under --root)'}.", ""] + table(rows)
    lines += ["", "Counterfactual β chosen per seed: " + ", ".join(f"{r['chosen_beta']:g}" for r in rows)]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
