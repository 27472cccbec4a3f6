"""What the evidence studies (E1-E3, ablations) share: data, cached originals and diagnoses.

Every trained model lives under ``--cache`` (default ``runs/bench``), keyed by study, budget,
architecture and seed, so E3 reuses E1's originals, the ablations reuse E2's, and an interrupted
study resumes where it stopped (every model is trained through :func:`model_doctor.study.run_study`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")

from model_doctor import Diagnosis, diagnose
from model_doctor.experiment import subset
from model_doctor.models import build_model
from model_doctor.study import ArmRun, from_scratch
from model_doctor.training import FitConfig, evaluate, split_train_val

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
#: where the benchmarks keep the models they train (``--cache``), resumable
CACHE = ROOT / "runs" / "bench"
SPLIT_NOTE = ("Fashion-MNIST here is ../shared's re-split of the public 70,000 images (per class the first 6,000 "
              "train / next 1,000 test, each split shuffled with seed 0), not the original train/test split.")
#: training of every original: SGD momentum 0.9, wd 5e-4, cosine; best epoch on validation
ORIGINAL_LR = 0.05
#: partners per test image in the benchmark-only swap measure on every test image (report images take 20)
TEST_PARTNERS = 5
#: per-architecture exceptions (none in the shipped studies; SqueezeNet did not train at 0.05 or 0.01)
ORIGINAL_LR_BY_ARCH: dict[str, float] = {}
#: fine-tuning (treated arms and the CE-only control share it): the original's lr ÷ 5, cosine, same seed and data order
FINETUNE_LR_RATIO = 0.2
FINETUNE_LR = ORIGINAL_LR * FINETUNE_LR_RATIO


def original_lr(arch: str) -> float:
    return ORIGINAL_LR_BY_ARCH.get(arch, ORIGINAL_LR)


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--budget", choices=["small", "full"], default="full")
    ap.add_argument("--out", default=None, help="also write the markdown here (e.g. docs/results/...)")
    ap.add_argument("--root", default=str(SHARED_DATA), help="folder holding FashionMNIST/raw (default ../shared/data)")
    ap.add_argument("--cache", default=str(CACHE), help="trained models, resumable")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="only these seeds (to split a study across processes; the cache joins them: rerun without "
                         "--seeds for the full table)")
    return ap


def with_seeds(budget: dict, seeds: list[int] | None) -> dict:
    return {**budget, "seeds": list(seeds)} if seeds else budget


#: the settings every cached run of a study depends on; arms, seeds and weights have their own folders
CACHE_KEYS = ("arch", "n_train", "n_test", "orig_epochs", "ft_epochs")


def study_cache(args: argparse.Namespace, study: str, budget: dict) -> Path:
    """``--cache/<study>/<budget>-<hash of the settings runs depend on>``: a changed setting never
    reuses old runs, while adding an arm, a seed or a weight reuses every finished one."""
    import hashlib
    import json

    shared = {k: budget[k] for k in CACHE_KEYS if k in budget}
    key = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(args.cache) / study / f"{args.budget}-{key}"


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.root) / "FashionMNIST" / "raw").is_dir():
        sys.exit(f"error: no FashionMNIST/raw under --root {args.root}; pass --root DIR holding it "
                 "(torchvision layout; see ../shared/README.md)")


def fashion(args: argparse.Namespace, n_train: int | None, n_test: int | None):
    """(train, val, test): ``n_train`` training images (val = a fixed 10 % of them), ``n_test`` test images."""
    from model_doctor.data.datasets import load_dataset

    full = subset(load_dataset("fashion-mnist", "train", root=args.root), n_train, seed=0)
    tr, va = split_train_val(full, 0.1, seed=0)
    return tr, va, subset(load_dataset("fashion-mnist", "test", root=args.root), n_test, seed=0)


def original(cache: Path, arch: str, seed: int, data: tuple, epochs: int, image_size: int) -> tuple[torch.nn.Module, dict]:
    """Train (or load) the original model of (arch, seed) to convergence on ``data``'s train part."""
    tr, va, te = data

    def fresh():
        torch.manual_seed(seed)
        return build_model(arch, in_channels=1, num_classes=10, image_size=image_size)

    cfg = FitConfig(epochs=epochs, lr=original_lr(arch), seed=seed)
    run = from_scratch(cache / arch / f"seed{seed}" / "original", fresh, tr, va, cfg, 10)
    return run.model, tested(run, te)


def tested(run: ArmRun, test: Any) -> dict:
    """The run's result with its test accuracy: read once, after the study chose (runs cached by
    ``cached_run(test=...)`` before the studies went through ``run_study`` hold it already)."""
    if "test_acc" not in run.result:
        run.result["test_acc"] = evaluate(run.model, test, 10)["acc"]
    return run.result


def diagnosis(cache: Path, model: torch.nn.Module, train: Any, layers: list[str], samples_per_class: int = 100) -> Diagnosis:
    """Diagnose the original on its training part (J=10, δ=0.1, confidence > 0.9), cached.

    Classes with no confident correct sample are allowed (and counted in ``empty_classes``)."""
    path = cache / ("diagnosis-" + "+".join(layers))
    if (path / "diagnosis.json").is_file():
        return Diagnosis.load(path)
    d = diagnose(model, train, layers=layers, num_classes=10, samples_per_class=samples_per_class,
                 allow_empty_classes=True)
    d.save(path)
    return d


def empty_classes(d: Diagnosis) -> int:
    return sum(1 for c in d.counts() if c == 0)


def finetune_cfg(epochs: int, seed: int, arch: str = "") -> FitConfig:
    return FitConfig(epochs=epochs, lr=original_lr(arch) * FINETUNE_LR_RATIO, seed=seed)


def cli(args: list[str], threads: int | None = None) -> None:
    """Run ``python -m model_doctor ARGS`` as a user would (quiet, this checkout's source); exit
    with its output's tail when it fails (a diverged arm is not a failure: its results are written)."""
    import subprocess

    env = {**os.environ, "MODEL_DOCTOR_QUIET": "1", "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "model_doctor", *args]
    from model_doctor.cli import DIVERGED_EXIT

    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode == DIVERGED_EXIT:   # results written, an arm diverged: the table records it (summary's "diverged")
        print(res.stderr.strip().splitlines()[-1], file=sys.stderr)
    elif res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
