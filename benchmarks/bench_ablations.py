"""Ablations on the decoy Fashion-MNIST benchmark, as in the paper's Fig. 6 and Tables 2-3.

Uses E2's originals and CE-only controls (same cache, same budget), so every row is a
fine-tune of the same decoy-trained original with the control's schedule, seed and data order:

* layer depth (Fig. 6): the space-wise and the channel-wise constraint at each conv layer;
* annotated images per class (Table 2): masks kept for 2 %-20 % of the training images;
* mask expansion (Table 3): the paper's 0-40 px at 224 px, scaled to the 44 px canvas.

Reported: test accuracy on shuffled decoys and Δ against the control, mean ± std over seeds, and
the background-swap accuracy a user would read (as E2 measures it, on the validation images);
``--out`` also writes every arm as E2's per-seed records for ``benchmarks.reliance_vs_truth``.

Usage: python -m benchmarks.bench_ablations [--budget small|full] [--out docs/results/e2/ablations.md]
"""

from __future__ import annotations

from benchmarks import _studies as S
from benchmarks import bench_e2_space as E2
from benchmarks._common import emit, header
from model_doctor.data.masks import ExpandedMasks, LimitedMasks, scaled_expansion
from model_doctor.experiment import fmt
from model_doctor.treatment import ModelDoctorLoss

BUDGETS = {
    "small": dict(seeds=[0], layers=["features.8"], fractions=[0.05], paper_px=[0, 30],
                  beta=100.0, alpha=10.0, layer="features.8"),
    "full": dict(seeds=[0, 1, 2], layers=["features.0", "features.4", "features.8"], fractions=[0.02, 0.05, 0.1, 0.2],
                 paper_px=[0, 5, 10, 20, 30, 40], beta=1000.0, alpha=10.0, layer="features.8"),
}
CANVAS = 44


def run(args, budget: dict) -> list[dict]:
    e2b = E2.BUDGETS[args.budget]
    data = E2.decoy_data(args, e2b)
    cache = S.study_cache(args, "e2", e2b)  # E2's originals and controls
    n_train_per_class = len(data["train"]) / 10
    rows = []
    for seed in budget["seeds"]:
        (orig, o), _ = E2.originals(args, e2b, data, seed, cache)
        run_dir = cache / f"seed{seed}"
        diag = S.diagnosis(run_dir, orig, data["train"], E2.DIAG_LAYERS, samples_per_class=50)
        rec = {"seed": seed, "original": E2.measure(orig, data, o["val_acc"]),
               "control": E2.finetune("control", run_dir, orig, data, e2b, seed)}
        ft = (lambda name, **kw: E2.finetune(name, run_dir, orig, data, e2b, seed, **kw))
        b, a, layer = budget["beta"], budget["alpha"], budget["layer"]
        for lay in budget["layers"]:
            rec[("depth", "space", lay)] = ft(f"space-{lay}-b{b:g}", terms=E2.space_arm(diag, lay, b, seed))
            rec[("depth", "channel", lay)] = ft(
                f"channel-{lay}-a{a:g}",
                terms=lambda lay=lay: ModelDoctorLoss(diag, [lay], alpha=a, beta=0.0, noise_draws=E2.NOISE_DRAWS, seed=seed))
        for frac in budget["fractions"]:
            per_class = max(1, round(frac * n_train_per_class))
            rec[("annotated", frac, per_class)] = ft(f"space-{layer}-b{b:g}-ann{per_class}",
                                                     terms=E2.space_arm(diag, layer, b, seed),
                                                     train=LimitedMasks(data["train"], per_class, seed=seed))
        for px in budget["paper_px"]:
            ex = scaled_expansion(px, CANVAS)
            name = f"space-{layer}-b{b:g}" + (f"-exp{ex}" if ex else "")  # no expansion: E2's own arm
            rec[("expand", px, ex)] = ft(name, terms=E2.space_arm(diag, layer, b, seed),
                                         train=ExpandedMasks(data["train"], ex) if ex else None)
        rows.append(rec)
        print(f"seed {seed} done", flush=True)
    return rows


#: (section, title, row label) per kind of ablation
SECTIONS = {"depth": ("Layer depth (paper Fig. 6)", lambda k: f"{k[1]}-wise at {k[2]}"),
            "annotated": ("Annotated images per class (paper Table 2)", lambda k: f"{k[1] * 100:g} % ({k[2]} per class)"),
            "expand": ("Mask expansion (paper Table 3)", lambda k: f"{k[1]} px at 224 → {k[2]} px at {CANVAS}")}


def section(rows, kind: str) -> list[str]:
    title, label = SECTIONS[kind]
    keys = [k for k in rows[0] if isinstance(k, tuple) and k[0] == kind]
    lines = [f"## {title}", "", "| setting | test acc, shuffled decoys | Δ vs control | test acc, consistent decoys | "
             "decoy share of the input gradient | swap acc on validation images |", "|---|---|---|---|---|---|"]
    for k in keys:
        lines.append(f"| {label(k)} | {fmt([r[k]['test_shuffled'] for r in rows])} | "
                     f"{fmt([r[k]['test_shuffled'] - r['control']['test_shuffled'] for r in rows], signed=True)} | "
                     f"{fmt([r[k]['test_consistent'] for r in rows])} | {fmt([r[k]['decoy_grad_share'] for r in rows], digits=1)} % | "
                     f"{fmt([r[k]['report_swap_acc'] for r in rows])} |")
    return lines + [""]


def records(rows: list[dict]) -> list[dict]:
    """The rows as E2's per-seed records (arm names for tuple keys), which ``reliance_vs_truth`` reads."""
    return [{(f"{k[0]}: {SECTIONS[k[0]][1](k)}" if isinstance(k, tuple) else k): v for k, v in r.items()} for r in rows]


def main(argv=None) -> int:
    args = S.parser(__doc__).parse_args(argv)
    S.setup(args)
    b = S.with_seeds(BUDGETS[args.budget], args.seeds)
    rows = run(args, b)
    e2b = E2.BUDGETS[args.budget]
    lines = header("Ablations on decoy Fashion-MNIST (Fig. 6, Tables 2-3)", "bench_ablations.py", args.budget)
    lines += [f"Same originals, data and fine-tune schedule as E2 (`bench_e2_space.py --budget {args.budget}`: {e2b['arch']}, "
              f"{e2b['n_train']} training images, {e2b['ft_epochs']} fine-tune epochs, seeds {b['seeds']}). Space-wise β={b['beta']:g}, "
              f"channel-wise α={b['alpha']:g}, J={E2.NOISE_DRAWS}; annotation and expansion rows constrain {b['layer']}. "
              f"Control (CE only) on shuffled decoys: {fmt([r['control']['test_shuffled'] for r in rows])} %, "
              f"swap acc on validation images {fmt([r['control']['report_swap_acc'] for r in rows])} %. The swap "
              "accuracy is E2's: the user's figure, on validation images (never trained on; they chose each arm's "
              "epoch by clean validation accuracy).", "", S.SPLIT_NOTE, ""]
    for kind in SECTIONS:
        lines += section(rows, kind)
    if args.out:
        from pathlib import Path

        from model_doctor.io import atomic_write_json

        atomic_write_json(Path(args.out).with_suffix(".json"), records(rows), compact=True)
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
