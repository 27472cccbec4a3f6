"""Cost of a treatment step vs a plain CE step, measured side by side in one run.

For the zoo's small CNN (1x32x32, batch 64) and its small-image ResNet-18 (3x32x32, CIFAR stem,
batch 32), the channel-wise penalty (Eq. 5, paper variant) on the default (last) conv layer, at
J=1 and J=10 and both ``tail_bn`` settings:

* time: a training step (forward, CE + constraint terms, one backward, SGD step) ÷ the plain CE
  step, the two arms interleaved over rounds (order rotated), each round's ratio of mean step
  times; median (min–max) over rounds;
* memory: peak resident-size growth of a treated step ÷ that of a plain step, each in a fresh
  process after two warm-up steps (glibc told to return freed blocks, so the resident size follows
  live tensors), repeated; median (min–max) over the repeats.

Usage: python -m benchmarks.bench_treat [--budget small|full] [--out docs/results/performance/treatment.md]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")
from benchmarks._common import emit, header, interleaved, per_round, spread

CASES = {"smallcnn": ((1, 32, 32), 64), "resnet18": ((3, 32, 32), 32)}


def make_case(name: str):
    from model_doctor import Diagnosis
    from model_doctor.models import build_model, default_layers

    shape, batch = CASES[name]
    torch.manual_seed(0)
    model = build_model(name, in_channels=shape[0], num_classes=10, image_size=32)
    layer = default_layers(name)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    # a synthetic class profile: the step's cost does not depend on its values
    k = model.get_submodule(layer).out_channels
    diag = Diagnosis(layers=[layer], correlations={layer: torch.rand(10, k, dtype=torch.float64)},
                     class_names=[str(i) for i in range(10)], sample_indices={}, settings={"theta": 0.2, "noise": 0.1},
                     model_fingerprint="synthetic", version="bench")
    return model, x, y, diag


def stepper(model, x, y, terms, steps: int):
    """A callable running ``steps`` training steps (treated when ``terms`` is given)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def run() -> None:
        model.train()
        with terms.attach(model) if terms is not None else contextlib.nullcontext():
            for step in range(steps):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                if terms is not None:
                    loss = loss + sum(terms(logits, y, (x, y), step).values())
                opt.zero_grad()
                loss.backward()
                opt.step()
    return run


def child(name: str, draws: int, tail_bn: str, steps: int) -> None:
    """One memory measurement in this process: prints JSON with the peak RSS growth (KiB).

    Two warm-up steps first (allocator, autograd and fx caches settle), then the resting size;
    a thread samples /proc/self/statm during the measured steps (torch releases the GIL in its
    kernels), so only what the steps themselves hold counts.
    """
    from model_doctor.treatment import ModelDoctorLoss

    page = os.sysconf("SC_PAGE_SIZE") // 1024

    def rss_kb() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    model, x, y, diag = make_case(name)
    terms = None if draws < 0 else ModelDoctorLoss(diag, alpha=1.0, noise_draws=draws, tail_bn=tail_bn)
    stepper(model, x, y, terms, 2)()
    gc.collect()
    rest = rss_kb()
    peak = [rest]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.0005)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    stepper(model, x, y, terms, steps)()
    done.set()
    t.join()
    print(json.dumps({"rss_growth_kb": peak[0] - rest, "rest_kb": rest}))


def peak_growth(name: str, draws: int, tail_bn: str = "train") -> int:
    # glibc's mmap threshold otherwise grows with every freed block, so freed activations stay
    # resident and later peaks look like no growth; a fixed 64 KiB threshold returns them
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_treat", "--child", name, str(draws), tail_bn, "3"],
                         capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_growth_kb"]


CONFIGS = [(1, "train"), (10, "train"), (1, "eval"), (10, "eval")]


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=["small", "full"], default="full")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from model_doctor.treatment import ModelDoctorLoss

    steps, rounds, repeats = (1, 2, 1) if args.budget == "small" else (3, 5, 3)
    configs = CONFIGS if args.budget == "full" else [(1, "train")]  # small: a smoke run
    lines = header("Treatment step cost", "bench_treat.py", args.budget) + [
        "Channel-wise penalty (Eq. 5, paper variant: create-graph gradients of the predicted and the second "
        "class) on the default layer of the zoo's `smallcnn` (features.8, batch 64) and small-image `resnet18` "
        "(layer4.1.conv2, batch 32). tail_bn=train is the default (BatchNorm after the layer uses batch "
        "statistics, as in the training forward); eval uses running statistics (cheaper double backward; "
        "docs/method.md says what it changes).", "",
        f"Time: median (min–max) over {rounds} interleaved rounds of the per-round ratio of mean step times "
        f"({steps} steps per arm per round). Memory: median (min–max) over {repeats} fresh-process repeats of "
        "peak resident growth during 3 steps after 2 warm-up steps, treated ÷ plain. Targets: time ≤ 1.5 at J=1 "
        "(ResNet-18), memory ≤ 1.5.", "",
        "| model | J | tail_bn | treat step ÷ plain step | peak memory growth ÷ plain |",
        "|---|---|---|---|---|"]
    for name in CASES:
        plain_mem = [peak_growth(name, -1) for _ in range(repeats)]
        model, x, y, diag = make_case(name)
        for draws, tail_bn in configs:
            terms = ModelDoctorLoss(diag, alpha=1.0, noise_draws=draws, tail_bn=tail_bn)
            t = interleaved({"plain": stepper(model, x, y, None, steps), "treat": stepper(model, x, y, terms, steps)},
                            rounds)
            mem = [peak_growth(name, draws, tail_bn) / p for p in plain_mem]
            lines.append(f"| {name} | {draws} | {tail_bn} | {spread(per_round(t['treat'], t['plain']))} | "
                         f"{spread(mem)} |")
    lines += ["", "Plain resident growth is what one CE step holds (activations kept for backward, gradients); "
              "a ratio near 1 means the constraint's extra graph is small next to it."]
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
