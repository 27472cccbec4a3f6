"""Cost of a treatment step vs a plain CE step, measured side by side in one run.

For a small CNN (1x32x32) and ResNet-18 (3x32x32), the channel-wise penalty (Eq. 5) on the last
conv layer, at J=1 and J=10: time per training step (forward, CE + constraint terms, one
backward, SGD step) divided by the plain CE step's, and the peak-memory ratio (each measured in a
fresh subprocess: peak RSS growth over the model's resting RSS).

Usage: python benchmarks/bench_treat.py [--budget small|full] [--out docs/results/treatment.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, header  # noqa: E402


def make_case(name: str, batch: int):
    import torchvision

    from model_doctor import Diagnosis
    from model_doctor.zoo import SmallCNN

    torch.manual_seed(0)
    if name == "smallcnn":
        model, shape, layer = SmallCNN(1, 10), (1, 32, 32), "features.8"
    else:
        model, shape, layer = torchvision.models.resnet18(num_classes=10), (3, 32, 32), "layer4.1.conv2"
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    # a synthetic class profile: the step's cost does not depend on its values
    k = model.get_submodule(layer).out_channels
    diag = Diagnosis(layers=[layer], correlations={layer: torch.rand(10, k, dtype=torch.float64)},
                     class_names=[str(i) for i in range(10)], sample_indices={}, settings={"theta": 0.2, "noise": 0.1},
                     model_fingerprint="synthetic", version="bench")
    return model, x, y, diag, layer


def run_steps(model, x, y, terms, steps):
    import contextlib

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    ctx = terms.attach(model) if terms is not None else contextlib.nullcontext()
    times = []
    with ctx:
        for step in range(steps):
            t = time.perf_counter()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if terms is not None:
                loss = loss + sum(terms(logits, y, (x, y), step).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
    return times


def child(name: str, draws: int, batch: int, steps: int, tail_bn: str = "train") -> None:
    """One measurement in this process: prints JSON with step times and peak RSS growth.

    The peak is sampled from /proc/self/statm by a thread during the measured steps only (torch
    releases the GIL inside its kernels), so warm-up and tracing allocations do not count.
    """
    import threading

    from model_doctor.treatment import ModelDoctorLoss

    page = os.sysconf("SC_PAGE_SIZE") // 1024

    def rss_kb() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    model, x, y, diag, layer = make_case(name, batch)
    terms = None if draws < 0 else ModelDoctorLoss(diag, alpha=1.0, noise_draws=draws)
    import gc

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
    times = run_steps(model, x, y, terms, steps)
    done.set()
    t.join()
    print(json.dumps({"times": times, "rss_growth_kb": peak[0] - rest, "rest_kb": rest}))


def interleaved_ratio(name: str, draws: int, batch: int, steps: int, rounds: int, tail_bn: str = "train") -> float:
    """Median treat-step / plain-step time, alternating the two in one process."""
    from model_doctor.treatment import ModelDoctorLoss

    model, x, y, diag, _ = make_case(name, batch)
    terms = ModelDoctorLoss(diag, alpha=1.0, noise_draws=draws, tail_bn=tail_bn)
    run_steps(model, x, y, None, 2)
    run_steps(model, x, y, terms, 2)
    plain, treat = [], []
    for _ in range(rounds):
        plain += run_steps(model, x, y, None, steps)
        treat += run_steps(model, x, y, terms, steps)
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return med(treat) / med(plain)


def peak_memory(name: str, draws: int, batch: int, tail_bn: str = "train") -> int:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(draws), str(batch), "3", tail_bn],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_growth_kb"]


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=["small", "full"], default="full")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    steps, rounds = (3, 2) if args.budget == "small" else (5, 4)
    lines = header("Treatment step cost", "bench_treat.py", args.budget) + [
             "Channel-wise penalty (Eq. 5, paper variant, two create-graph gradients: predicted and second class) "
             "on the last conv layer; batch 64 (small CNN) / 32 (ResNet-18). tail_bn=train is the default "
             "(BatchNorm after the layer uses batch statistics, as the training forward); eval uses running "
             "statistics (cheaper double backward; see docs/method.md for what it changes).", "",
             "| model | J | tail_bn | treat step ÷ plain step (target: ≤ 1.3 at J=1, ≤ 2 at J=10) | peak memory growth ÷ plain (target ≤ 1.5) |",
             "|---|---|---|---|---|"]
    for name, batch in (("smallcnn", 64), ("resnet18", 32)):
        plain_mem = peak_memory(name, -1, batch)
        for draws, tail_bn in ((1, "train"), (10, "train"), (1, "eval"), (10, "eval")):
            ratio = interleaved_ratio(name, draws, batch, steps, rounds, tail_bn)
            mem = peak_memory(name, draws, batch, tail_bn) / plain_mem
            lines.append(f"| {name} | {draws} | {tail_bn} | {ratio:.2f} | {mem:.2f} |")
    lines += ["", "Times: median over interleaved rounds of plain and treated steps in one process. Memory: in a "
              "fresh process running only that kind of step, after two warm-up steps, the peak resident size "
              "sampled during the measured steps minus the resident size just before them."]
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
