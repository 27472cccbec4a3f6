"""Diagnosis speed and usefulness, measured side by side in one run.

1. Speed (J=10), for a small CNN (1x32x32) and ResNet-18 (3x32x32), last conv layer:
   - naive / ours: the naive loop runs one full forward + backward per sample per noise draw;
   - ours / limit: the limit is one prefix forward (no graph) + the batched tail forward/backward
     over B*J copies, with nothing else (no noise drawing, no bookkeeping, no sample selection).
   "ours" is the whole ``diagnose()`` call, sample selection included.
2. AUROC for detecting misclassified Fashion-MNIST test samples: deviation score vs max-softmax
   probability (and their rank average), for a small CNN trained on a subset. Skipped with a
   reason when ../shared/data is absent.

Usage: python benchmarks/bench_diagnose.py [--budget small|full] [--out docs/results/diagnosis.md]
"""

from __future__ import annotations

import argparse
import warnings
import os
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import Subset, TensorDataset

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, header  # noqa: E402
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

from model_doctor import diagnose, examine  # noqa: E402
from model_doctor.diagnosis.engine import aggregate_correlations  # noqa: E402
from model_doctor.hooks import preserved_state  # noqa: E402
from model_doctor.layers import resolve_layers  # noqa: E402
from model_doctor.noise import sample_noise  # noqa: E402
from model_doctor.split import LayerSplit  # noqa: E402
from model_doctor.zoo import SmallCNN  # noqa: E402


def naive(model, ds, layer, J, delta, seed):
    module = dict(model.named_modules())[layer]
    for p in model.parameters():
        p.requires_grad_(False)
    for idx in range(len(ds)):
        x, y = ds[idx]
        store = {}
        h = module.register_forward_hook(lambda m, i, o: store.__setitem__("m", o.detach()))
        with torch.no_grad():
            model(x[None])
        h.remove()
        noise = sample_noise(seed, 0, idx, J, tuple(store["m"].shape[1:]), delta)
        for j in range(J):
            z = (store["m"] + noise[j][None]).requires_grad_(True)
            h = module.register_forward_hook(lambda mod, i, o: z.clone())
            logits = model(x[None])
            h.remove()
            torch.autograd.grad(logits[0, int(y)], z)
    for p in model.parameters():
        p.requires_grad_(True)


def limit(model, ds, layer, J, batch):
    split = LayerSplit(model, layer)
    for p in model.parameters():
        p.requires_grad_(False)
    x_all = torch.stack([ds[i][0] for i in range(len(ds))])
    y_all = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
    for s in range(0, len(ds), batch):
        x, y = x_all[s:s + batch], y_all[s:s + batch]
        with torch.no_grad():
            m, extras = split.prefix(x)
        z = m.repeat_interleave(J, 0).requires_grad_(True)
        logits = split.tail(z, extras, J)
        torch.autograd.grad(logits.gather(1, y.repeat_interleave(J)[:, None]).sum(), z)
    for p in model.parameters():
        p.requires_grad_(True)


def self_labelled(model, n, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return TensorDataset(x, y)


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def speed_rows(budget):
    rows = []
    torch.manual_seed(0)
    cases = [
        ("smallcnn 1x32x32", SmallCNN(1, 10).eval(), (1, 32, 32), "features.8", 256 if budget == "small" else 1000, 16 if budget == "small" else 32),
        ("resnet18 3x32x32", torchvision.models.resnet18(num_classes=10).eval(), (3, 32, 32), "layer4.1.conv2",
         64 if budget == "small" else 256, 4 if budget == "small" else 8),
    ]
    J, delta = 10, 0.1
    for name, model, shape, layer, n_ours, n_naive in cases:
        ds = self_labelled(model, n_ours, shape)
        batch = 32
        kw = dict(layers=[layer], num_classes=10, samples_per_class=n_ours, min_confidence=0.0, noise=delta,
                  noise_draws=J, batch_size=batch, allow_empty_classes=True)
        chosen = {0: list(range(n_ours))}
        flat = TensorDataset(ds.tensors[0], torch.zeros(n_ours, dtype=torch.long))
        named = resolve_layers(model, layer)

        def ours():
            with preserved_state(model):
                aggregate_correlations(model, flat, chosen, named, 10, noise=delta, noise_draws=J,
                                       batch_size=batch, seed=0, reduce="abs")

        ours()  # warm-up
        t_ours = best_of(ours, 3) / n_ours
        t_whole = best_of(lambda: diagnose(model, ds, **kw), 2) / n_ours
        t_lim = best_of(lambda: limit(model, ds, layer, J, batch), 3) / n_ours
        t_naive = best_of(lambda: naive(model, Subset(ds, range(n_naive)), layer, J, delta, 0), 1) / n_naive
        rows.append((name, layer, n_ours, t_naive / t_ours, t_ours / t_lim, t_whole / t_ours))
    return rows


def auroc_rows(budget):
    if not (SHARED / "FashionMNIST" / "raw").is_dir():
        return None, f"skipped: ../shared/data not found at {SHARED}"
    from model_doctor.data.datasets import load_dataset
    from model_doctor.pipeline import misclassification_auroc
    from model_doctor.training import FitConfig, evaluate, fit, split_train_val

    n_train, n_test, epochs = (6000, 2000, 3) if budget == "small" else (20000, 10000, 8)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=["small", "full"], default="full")
    ap.add_argument("--out", default=None, help="also write the markdown here (e.g. docs/results/diagnosis.md)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # shortfall warnings of the self-labelled speed data
    lines = header("Diagnosis benchmark", "bench_diagnose.py", args.budget) + [
             "## Speed, J=10 (ratios measured side by side in this run)", "",
             "| model | layer | samples | naive loop ÷ ours (target ≥ 5) | ours ÷ limit (target ≤ 1.2) | whole diagnose() ÷ ours |",
             "|---|---|---|---|---|---|"]
    for name, layer, n, r1, r2, r3 in speed_rows(args.budget):
        lines.append(f"| {name} | {layer} | {n} | {r1:.1f} | {r2:.2f} | {r3:.2f} |")
    lines += ["", "ours = the gradient phase (`aggregate_correlations`: prefix once, noise drawn per sample, "
              "J noisy copies batched through the tail, per-class sums); limit = one prefix forward (no graph) + "
              "batched tail forward/backward over B·J copies and nothing else; naive = one full forward + backward "
              "per sample per draw. The last column adds sample selection (one forward over the data), "
              "layer tracing and the weights fingerprint, all fixed or per-dataset costs.", "",
              "## Misclassification detection (AUROC, higher is better)", ""]
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
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
