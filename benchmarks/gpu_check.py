"""GPU check: the CLI end to end on CUDA, and the library's speed and memory on CUDA.

Runs from the source tree on a machine that already has torch, torchvision, timm, safetensors,
scikit-learn, PyYAML, tqdm, Jinja2 and matplotlib, with no network and no installs:

    PYTHONPATH=src python -m benchmarks.gpu_check --data-root DIR_WITH_FashionMNIST --out docs/results/performance/gpu.md

It stops by itself inside ``--budget-s`` (default 330 s) and writes whatever it measured; a stage
that would start past the budget is listed as skipped. Stages:

1. CLI on CUDA: ``train`` (resnet34, 32 px, full Fashion-MNIST) -> ``diagnose`` -> ``treat`` with
   its CE-only control, each with ``--device cuda``.
2. Whole ``diagnose()`` images/s for ResNet-50 at 224 px, J=1 and J=10 (fp32) and J=10 under bf16
   autocast, against the limit (one no-grad forward over the candidates + prefix forward of the
   selected + batched tail forward/backward over the J copies); at J=10 also the whole call with
   the noise drawn in one thread (``MODEL_DOCTOR_NOISE_THREADS=1``), to show what the threaded
   noise buys on a GPU; interleaved rounds, median (min–max).
3. Treatment step ÷ plain CE step (J=1, J=10; fp32 and bf16; ``tail_bn`` train = the default, and
   eval) and peak-memory ratios, ResNet-50.

``--tiny`` runs every stage at toy sizes on whatever device there is (the test suite runs it on
the CPU so the script cannot rot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from benchmarks._common import interleaved, per_round, spread
from benchmarks.bench_diagnose import limit  # the same limit as the CPU benchmark
from model_doctor import diagnose
from model_doctor.models import build_model, default_layers
from model_doctor.noise import noise_threads
from model_doctor.precision import autocast

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rounds(arms: dict, device, n: int, budget: Budget, min_left: float) -> dict[str, list[float]]:
    """Arms interleaved over up to ``n`` rounds (fewer when the budget runs out); one warm-up each."""
    return interleaved(arms, n, sync=lambda: sync(device), keep_going=lambda: budget.left() >= min_left)


def med(xs: list[float]) -> str:
    return spread(xs, ".3g")


def ratio(a: list[float], b: list[float]) -> str:
    return spread(per_round(a, b))


def cli_stage(args, device, lines, budget: Budget) -> None:
    out = Path(args.work) / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MODEL_DOCTOR_QUIET": "1"}
    data = ["--data", "digits"] if args.tiny else ["--data", "fashion-mnist", "--data-root", args.data_root,
                                                   "--image-size", "32"]
    model = ["--model", "tinycnn"] if args.tiny else ["--model", "resnet34"]
    epochs = "4" if args.tiny else "3"
    conf = ["--min-confidence", "0.0"] if args.tiny else []
    steps = [("train", ["train", *model, *data, "--epochs", epochs, "--batch-size", "256", "--lr", "0.1"]),
             ("diagnose", ["diagnose", "--weights", str(out / "train" / "model.safetensors"), *data,
                           "--allow-empty-classes", *conf]),
             ("treat", ["treat", "--weights", str(out / "train" / "model.safetensors"), *data, "--epochs", "1",
                        "--treat-batch-size", "256", "--treat-noise-draws", "1", "--diagnosis", str(out / "diagnose"),
                        "--allow-empty-classes"])]
    lines += ["## 1. The CLI on the device", "", "| step | seconds | result |", "|---|---|---|"]
    for name, cmd in steps:
        if budget.left() < (5 if args.tiny else 60):
            lines.append(f"| {name} | — | skipped: budget spent |")
            continue
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "model_doctor", *cmd, "--device", args.device, "--out", str(out / name)],
                             env=env, capture_output=True, text=True, timeout=max(10, budget.left()))
        secs = time.perf_counter() - t
        last = (res.stdout.strip().splitlines() or [""])[-1] if res.returncode == 0 else \
            f"failed ({res.returncode}): {(res.stderr.strip().splitlines() or [''])[-1]}"
        lines.append(f"| {name} | {secs:.1f} | {last.replace('|', '/')[:300]} |")
    cfg = out / "train" / "config.yaml"
    if cfg.is_file():
        import yaml

        lines += ["", f"Resolved device recorded in config.yaml: `{yaml.safe_load(cfg.read_text())['resolved'].get('device')}`"]
    lines.append("")


def diagnose_stage(args, device, lines, budget: Budget) -> None:
    name, size, n = ("tinycnn", 32, 64) if args.tiny else ("resnet50", 224, 512)
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=10, image_size=size).to(device).eval()
    layer = default_layers(name)
    if layer == "auto":
        from model_doctor.layers import resolve_layers

        layer = resolve_layers(model, "auto", torch.zeros(1, 3, size, size, device=device))[0][0]
    x = torch.randn(n, 3, size, size, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)
    ds = TensorDataset(x.cpu(), y.cpu())
    lines += [f"## 2. Whole `diagnose()` on {name} at {size} px ({n} images, layer {layer})", "",
              f"Noise threads: {noise_threads(device)} (`model_doctor.noise.noise_threads`).", "",
              "| J | precision | diagnose() img/s, median (min–max) | limit img/s | diagnose ÷ limit | "
              "with the noise in one thread ÷ limit |", "|---|---|---|---|---|---|"]
    for j, precision in ((1, "fp32"), (10, "fp32"), (10, "bf16")):
        if budget.left() < 20:
            lines.append(f"| {j} | {precision} | skipped: budget spent | | | |")
            continue
        bs = 64 if j == 1 else 16

        def whole():
            diagnose(model, ds, layers=[layer], num_classes=10, samples_per_class=n, min_confidence=0.0,
                     noise_draws=j, batch_size=bs, allow_empty_classes=True, precision=precision)

        batches = [(x[s:s + bs], y[s:s + bs]) for s in range(0, n, bs)]

        def lim():
            with autocast(device, precision):
                limit(model, batches, layer, j)

        def one_thread():
            old = os.environ.get("MODEL_DOCTOR_NOISE_THREADS")
            os.environ["MODEL_DOCTOR_NOISE_THREADS"] = "1"
            try:
                whole()
            finally:
                if old is None:
                    del os.environ["MODEL_DOCTOR_NOISE_THREADS"]
                else:
                    os.environ["MODEL_DOCTOR_NOISE_THREADS"] = old

        arms = {"whole": whole, "limit": lim, **({"one_thread": one_thread} if j > 1 else {})}
        t = rounds(arms, device, 5, budget, min_left=10 if not args.tiny else 1)
        ips = lambda xs: [n / v for v in xs]
        single = ratio(t["one_thread"], t["limit"]) if j > 1 else "—"
        lines.append(f"| {j} | {precision} | {med(ips(t['whole']))} | {med(ips(t['limit']))} | "
                     f"{ratio(t['whole'], t['limit'])} | {single} |")
    lines.append("")


def treat_stage(args, device, lines, budget: Budget) -> None:
    import torch.nn.functional as F

    from model_doctor.treatment import ModelDoctorLoss

    name, size, b = ("tinycnn", 32, 16) if args.tiny else ("resnet50", 224, 64)
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=10, image_size=size).to(device)
    layer = default_layers(name)
    if layer == "auto":
        from model_doctor.layers import resolve_layers

        layer = resolve_layers(model, "auto", torch.zeros(1, 3, size, size, device=device))[0][0]
    x = torch.randn(b, 3, size, size, device=device)
    y = torch.randint(0, 10, (b,), device=device)
    with torch.no_grad():
        ds = TensorDataset(x.cpu(), model.eval()(x).argmax(1).cpu())
    model.train()
    diag = diagnose(model, ds, layers=[layer], num_classes=10, samples_per_class=b, min_confidence=0.0, noise_draws=1,
                    allow_empty_classes=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    lines += [f"## 3. Treatment step ÷ plain step, {name} at {size} px, batch {b}, layer {layer}", "",
              "| precision | J | tail_bn | plain step s | treat step s | treat ÷ plain | peak memory treat ÷ plain |",
              "|---|---|---|---|---|---|---|"]
    for precision in ("fp32", "bf16"):
        for j, tail_bn in ((1, "train"), (10, "train"), (1, "eval"), (10, "eval")):
            if budget.left() < 15:
                lines.append(f"| {precision} | {j} | {tail_bn} | skipped: budget spent | | | |")
                continue
            loss = ModelDoctorLoss(diag, alpha=1.0, noise_draws=j, tail_bn=tail_bn)

            def step(with_terms: bool):
                def run():
                    with autocast(device, precision):
                        logits = model(x)
                        total = F.cross_entropy(logits.float(), y)
                        if with_terms:
                            total = total + sum(v.float() for v in loss(logits, y, (x, y), 0).values())
                    opt.zero_grad()
                    total.backward()
                    opt.step()
                return run

            with loss.attach(model):
                def peak(fn):
                    if device.type != "cuda":
                        return float("nan")
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                    fn()
                    sync(device)
                    return torch.cuda.max_memory_allocated(device) - base
                t = rounds({"plain": step(False), "treat": step(True)}, device, 5, budget, min_left=2)
                mem = peak(step(True)) / max(peak(step(False)), 1)
            lines.append(f"| {precision} | {j} | {tail_bn} | {med(t['plain'])} | {med(t['treat'])} | "
                         f"{ratio(t['treat'], t['plain'])} | {'—' if mem != mem else f'{mem:.2f}'} |")
    lines.append("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"), help="folder holding FashionMNIST/raw")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "performance" / "gpu.md"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "gpu_check"), help="scratch folder for the CLI runs")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=330.0)
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU smoke test)")
    args = ap.parse_args(argv)
    from model_doctor.distributed import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        sys.exit(f"gpu_check: {exc}")
    budget = Budget(args.budget_s)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    lines = ["# GPU check" + (" (tiny, CPU smoke run)" if args.tiny else ""), "",
             f"Command: `PYTHONPATH=src python -m benchmarks.gpu_check{' --tiny' if args.tiny else ''} --device {args.device} "
             f"--data-root DATA --budget-s {args.budget_s:g}`  ",
             f"Device: {name}; torch {torch.__version__}; date {datetime.date.today().isoformat()}", ""]
    out = Path(args.out)
    for stage in (cli_stage, diagnose_stage, treat_stage):
        try:
            stage(args, device, lines, budget)
        except Exception as exc:  # write what was measured, then say what failed
            lines += [f"{stage.__name__} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", ""]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")  # after every stage: a killed run keeps what it measured
    print("\n".join(lines))
    print(json.dumps({"seconds_left": round(budget.left(), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
