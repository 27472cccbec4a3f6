"""Diagnosis speed, cost model and usefulness, measured side by side in one run.

1. Speed, J=10, for the zoo's small CNN (1x32x32) and its small-image ResNet-18 (3x32x32, CIFAR
   stem), each at its default (last) layer. Four arms, interleaved in every round, order rotated:
   - whole: the whole ``diagnose()`` call (selection, layer tracing, noise, bookkeeping, fingerprint);
   - limit: one no-grad forward over the candidate images (selection) + the prefix forward (no
     graph) of the selected + the batched tail forward/backward over their J copies, nothing else;
   - naive, batched: what a user writes with plain hooks: the selection forward, then per batch
     and draw one full forward with a hook adding noise at the layer, and one backward;
   - naive, per sample: the same, one image at a time (timed on a subset, scaled to all images).
2. Scaling: whole ``diagnose()`` time vs classes K, draws J and number of layers, against the cost
   model of ``model_doctor.diagnosis.diagnosis_flops`` (selection + prefix once + tail x J, in
   FLOPs, plus the tail's element-wise work ∝ J x feature-map size), fitted per model.
3. AUROC for detecting misclassified Fashion-MNIST test samples: deviation score vs max-softmax
   probability (and their rank average), for a small CNN trained on a subset. Skipped with a
   reason when ../shared/data is absent.

Usage: python -m benchmarks.bench_diagnose [--budget small|full] [--out docs/results/performance/diagnosis.md]
       [--sections speed,scaling,auroc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.data import Subset, TensorDataset

from benchmarks._common import emit, header, interleaved, per_round, spread
from model_doctor import diagnose, examine
from model_doctor.diagnosis import diagnosis_flops
from model_doctor.hooks import preserved_state
from model_doctor.models import SmallCNN, build_model, default_layers
from model_doctor.split import LayerSplit

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

BATCH = 64  # diagnose()'s default batch size, used by every arm
DELTA = 0.1


def _case(name: str, classes: int = 10):
    shape = (1, 32, 32) if name == "smallcnn" else (3, 32, 32)
    torch.manual_seed(0)
    return build_model(name, in_channels=shape[0], num_classes=classes, image_size=32).eval(), shape


def self_labelled(model, n: int, shape) -> TensorDataset:
    """Random images labelled with the model's own predictions: every one is 'correct'."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return TensorDataset(x, y)


def _batches(ds: TensorDataset, batch: int):
    x, y = ds.tensors
    return [(x[s:s + batch], y[s:s + batch]) for s in range(0, len(x), batch)]


def limit(model, batches, layer: str, j: int) -> None:
    split = LayerSplit(model, layer)
    with preserved_state(model):
        for x, y in batches:
            with torch.no_grad():
                model(x)                       # the selection pass over the candidates
                m, extras = split.prefix(x)    # the prefix of the selected, once
            z = m.repeat_interleave(j, 0).requires_grad_(True)
            out = split.tail(z, extras, j)
            torch.autograd.grad(out.gather(1, y.repeat_interleave(j)[:, None]).sum(), z)


def naive(model, batches, layer: str, j: int) -> None:
    """Plain hooks, no split: one full forward (noise added at the layer) + backward per draw."""
    module = model.get_submodule(layer)
    with preserved_state(model):
        for x, y in batches:
            with torch.no_grad():
                model(x)                       # the same selection pass
            for _ in range(j):
                box = {}

                def noisy(_m, _i, out):
                    box["z"] = (out.detach() + (torch.rand_like(out) * 2 - 1) * DELTA).requires_grad_(True)
                    return box["z"]

                h = module.register_forward_hook(noisy)
                try:
                    logits = model(x)
                finally:
                    h.remove()
                torch.autograd.grad(logits.gather(1, y[:, None]).sum(), box["z"])


def _whole(model, ds, layers, classes, j):
    return lambda: diagnose(model, ds, layers=layers, num_classes=classes, samples_per_class=len(ds),
                            min_confidence=0.0, noise=DELTA, noise_draws=j, batch_size=BATCH, allow_empty_classes=True)


def speed_rows(budget: str, rounds: int):
    sizes = {"smallcnn": (1000, 32) if budget == "full" else (64, 2),
             "resnet18": (256, 8) if budget == "full" else (16, 1)}
    J = 10
    rows = []
    for name, (n, n_single) in sizes.items():
        model, shape = _case(name)
        layer = default_layers(name)
        ds = self_labelled(model, n, shape)
        batches = _batches(ds, BATCH)
        singles = _batches(TensorDataset(*(t[:n_single] for t in ds.tensors)), 1)
        t = interleaved({"whole": _whole(model, ds, [layer], 10, J),
                         "limit": lambda: limit(model, batches, layer, J),
                         "naive_batched": lambda: naive(model, batches, layer, J),
                         "naive_single": lambda: naive(model, singles, layer, J)}, rounds)
        rows.append((name, layer, tuple(LayerSplit(model, layer).prefix(ds.tensors[0][:1])[0].shape[1:]), n,
                     per_round(t["whole"], t["limit"]),
                     per_round(t["naive_batched"], t["whole"]),
                     per_round(t["naive_single"], t["whole"], scale=n / n_single),
                     [n / v for v in t["whole"]]))
    return rows


# -- scaling ---------------------------------------------------------------------------------
SCALING = {
    # model: (images per class T, layer stack deepest first, configs (K, J, number of layers))
    "smallcnn": (100, ["features.8", "features.4", "features.0"]),
    "resnet18": (10, ["layer4.1.conv2", "layer4.0.conv2", "layer3.1.conv2"]),
}
CONFIGS = [(10, 10, 1), (2, 10, 1), (5, 10, 1), (10, 1, 1), (10, 5, 1), (10, 20, 1), (10, 10, 2), (10, 10, 3)]


def _fit(rows):
    """Least squares ``t ≈ a + b·FLOPs + c·elements`` with a, b, c ≥ 0 (a negative one is dropped)."""
    keep = [0, 1, 2]
    while True:
        A = torch.tensor([[[1.0, f / 1e9, e / 1e9][k] for k in keep] for _, f, e in rows], dtype=torch.float64)
        t = torch.tensor([[r[0]] for r in rows], dtype=torch.float64)
        coef = torch.linalg.lstsq(A, t).solution.flatten().tolist()
        neg = [k for k, c in zip(keep, coef) if c < 0]
        if not neg:
            full = [0.0, 0.0, 0.0]
            for k, c in zip(keep, coef):
                full[k] = c
            return full
        keep.remove(neg[0])


def scaling_rows(budget: str, rounds: int):
    out = {}
    for name, (per_class, stack) in SCALING.items():
        per_class = per_class if budget == "full" else max(1, per_class // 50)  # small: a smoke run
        arms, cost = {}, {}
        for k, j, nl in CONFIGS:
            model, shape = _case(name, classes=k)
            ds = self_labelled(model, k * per_class, shape)
            layers = stack[:nl]
            arms[(k, j, nl)] = _whole(model, ds, layers, k, j)
            cost[(k, j, nl)] = diagnosis_flops(model, ds.tensors[0][:1], layers, candidates=len(ds), selected=len(ds),
                                               noise_draws=j)
        t = interleaved(arms, rounds)
        meds = {c: statistics.median(v) for c, v in t.items()}
        a, b, c = _fit([(meds[k], cost[k].total, cost[k].copy_elements) for k in CONFIGS])
        rows = []
        for key in CONFIGS:
            pred = a + b * cost[key].total / 1e9 + c * cost[key].copy_elements / 1e9
            rows.append((key, per_class, stack[:key[2]], cost[key], t[key], pred))
        out[name] = (rows, (a, b, c))
    return out


def auroc_rows(budget):
    if not (SHARED / "FashionMNIST" / "raw").is_dir():
        return None, f"skipped: ../shared/data not found at {SHARED}"
    from model_doctor.data.datasets import load_dataset
    from model_doctor.diagnosis.metrics import misclassification_auroc
    from model_doctor.training import FitConfig, evaluate, fit, split_train_val

    n_train, n_test, epochs = (2000, 500, 2) if budget == "small" else (20000, 10000, 8)
    train = load_dataset("fashion-mnist", "train", root=str(SHARED))
    test = load_dataset("fashion-mnist", "test", root=str(SHARED))
    train = Subset(train, range(n_train))
    test_sub = Subset(test, range(n_test))
    rows = []
    seeds = [0] if budget == "small" else [0, 1, 2]
    for seed in seeds:
        torch.manual_seed(seed)
        model = SmallCNN(1, 10)
        tr, va = split_train_val(train, 0.1, seed)
        fit(model, tr, va, FitConfig(epochs=epochs, seed=seed, batch_size=64, lr=0.05), 10)
        acc = evaluate(model, test_sub, 10)["acc"]
        diag = diagnose(model, tr, layers="auto:2", num_classes=10, samples_per_class=100, seed=seed,
                        allow_empty_classes=True)  # a weak small-budget model may lack confident samples
        ex = examine(model, diag, test_sub, derivative_maps=False)
        a = misclassification_auroc(ex.deviation, ex.confidence, ex.misclassified)
        rows.append((seed, acc, int(ex.misclassified.sum()), a["auroc_deviation"], a["auroc_msp"], a["auroc_combined"]))
    note = (f"SmallCNN trained {epochs} epochs on the first {n_train} Fashion-MNIST training images "
            f"(SGD lr 0.05, momentum 0.9, cosine; val 10% of those), examined on the first {n_test} test images; layers auto:2. "
            "Fashion-MNIST split: ../shared's re-split (per class first 6,000 train / next 1,000 test), not the original one.")
    return rows, note


def speed_lines(budget: str, rounds: int) -> list[str]:
    lines = ["## 1. Speed: the whole `diagnose()` call, J=10", "",
             f"Median (min–max) over {rounds} interleaved rounds of per-round ratios; every arm uses batch {BATCH}. "
             "Target: whole ÷ limit ≤ 1.5.", "",
             "| model | layer (map) | images | whole ÷ limit | naive batched ÷ whole | naive per-sample ÷ whole | "
             "whole, images/s |", "|---|---|---|---|---|---|---|"]
    for name, layer, fmap, n, r_lim, r_nb, r_ns, ips in speed_rows(budget, rounds):
        lines.append(f"| {name} | {layer} ({'×'.join(map(str, fmap))}) | {n} | {spread(r_lim)} | {spread(r_nb, '.1f')} | "
                     f"{spread(r_ns, '.0f')} | {spread(ips, '.0f')} |")
    lines += ["", "whole = `diagnose(model, data, layers=[layer], samples_per_class=N, min_confidence=0, noise_draws=10)` "
              "on N random images labelled with the model's own predictions (so every candidate is selected: the "
              "selection pass covers exactly the selected images). limit = the selection forward + prefix forward "
              "(no graph) + batched tail forward/backward over the J copies and nothing else. naive = plain forward "
              "hooks adding the noise at the layer and a full forward + backward per draw, batched over samples or "
              "one sample at a time (the per-sample arm runs on a subset and is scaled to N). Models from the zoo: "
              "`smallcnn`, and `resnet18` with its small-image stem (3×3/1, no max-pool), as "
              "`build_model(name, image_size=32)` gives them.", ""]
    return lines


def scaling_lines(budget: str, rounds: int) -> list[str]:
    lines = ["## 2. Scaling: whole `diagnose()` time vs classes K, draws J, layers", "",
             "Cost model (`model_doctor.diagnosis.diagnosis_flops`): FLOPs = candidates·F_model + "
             "Σ_layers selected·(F_prefix + J·F_tail), where F_tail is the tail's forward + backward to the "
             "feature map (parameters frozen), and the tail's element-wise work ∝ copies = selected·J·Σ numel(feature "
             "map). Fitted per model on this table's medians: seconds ≈ a + FLOPs / rate + copies · c. "
             f"Median (min–max) over {rounds} interleaved rounds; K classes × T images per class, all selected.", ""]
    for name, (rows, (a, b, c)) in scaling_rows(budget, rounds).items():
        rate = f"{1 / b:.0f} GFLOP/s" if b > 0 else "— (dropped)"
        lines += [f"### {name}", "", f"Fit: a = {a:.3f} s, rate = {rate}, c = {c:.2f} s per 10⁹ copy elements.", "",
                  "| K | T | J | layers | selected | GFLOPs (selection + prefix + tail×J) | copy elements (M) | "
                  "seconds, median (min–max) | model predicts | measured ÷ predicted |", "|---|---|---|---|---|---|---|---|---|---|"]
        for (k, j, _nl), t_cls, layers, cost, times, pred in rows:
            sel = cost.candidates * cost.model_forward / 1e9
            pre = cost.selected * sum(cost.prefix.values()) / 1e9
            tail = cost.selected * max(j, 1) * sum(cost.tail.values()) / 1e9
            med = statistics.median(times)
            lines.append(f"| {k} | {t_cls} | {j} | {', '.join(layers)} | {cost.selected} | {cost.total / 1e9:.1f} "
                         f"({sel:.1f} + {pre:.1f} + {tail:.1f}) | {cost.copy_elements / 1e6:.1f} | {spread(times)} | "
                         f"{pred:.2f} | {med / pred:.2f} |")
        lines.append("")
    lines += ["To predict your own model's cost: `diagnosis_flops(model, x[:1], layers, candidates=len(train), "
              "selected=samples_per_class*classes, noise_draws=J)` gives `.total` and `.copy_elements`; time a "
              "small `diagnose()` on your machine to get its rate. The fit is in-sample (same rows), so the last "
              "column shows how well two terms explain these configurations, not a held-out prediction.", ""]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=["small", "full"], default="full")
    ap.add_argument("--out", default=None, help="also write the markdown here (e.g. docs/results/performance/diagnosis.md)")
    ap.add_argument("--sections", default="speed,scaling,auroc", help="comma-separated: speed, scaling, auroc")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # shortfall warnings of the self-labelled speed data
    rounds = 5 if args.budget == "full" else 2
    sections = set(args.sections.split(","))
    lines = header("Diagnosis benchmark", "bench_diagnose.py", args.budget)
    partial = Path(args.out).with_suffix(".partial.md") if args.out else None
    for name, section in (("speed", speed_lines), ("scaling", scaling_lines)):
        if name in sections:
            lines += section(args.budget, rounds)
            if partial:  # a later failure keeps what was measured
                partial.write_text("\n".join(lines) + "\n")
    if "auroc" not in sections:
        return _done(lines, args.out, partial)
    lines += ["## 3. Misclassification detection (AUROC, higher is better)", ""]
    rows, note = auroc_rows(args.budget)
    if rows is None:
        lines.append(note)
    else:
        lines += ["| seed | test acc | # wrong | deviation score | max-softmax (1 − MSP) | rank average |",
                  "|---|---|---|---|---|---|"]
        for seed, acc, nw, a, b, c in rows:
            lines.append(f"| {seed} | {acc:.4f} | {nw} | {a:.3f} | {b:.3f} | {c:.3f} |")
        if len(rows) > 1:
            t = torch.tensor([[r[3], r[4], r[5]] for r in rows], dtype=torch.float64)
            m, s = t.mean(0), t.std(0)
            lines.append(f"| mean ± std | | | {m[0]:.3f} ± {s[0]:.3f} | {m[1]:.3f} ± {s[1]:.3f} | {m[2]:.3f} ± {s[2]:.3f} |")
        lines += ["", note]
    return _done(lines, args.out, partial)


def _done(lines: list[str], out: str | None, partial: Path | None) -> int:
    code = emit(lines, out)
    if partial:
        partial.unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
