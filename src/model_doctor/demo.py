"""``make demo``: the whole pipeline on scikit-learn's bundled digits (no network, CPU, minutes)."""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config
from .pipeline import run_diagnose, run_examine, run_train


def run_demo(out: str = "runs/demo", epochs: int = 30) -> dict:
    t0 = time.perf_counter()
    root = Path(out)
    print(f"== model-doctor demo: digits (sklearn, upsampled to 32x32), smallcnn -> {root}")
    cfg = Config(out=str(root / "original"))
    cfg.data.name, cfg.model.name, cfg.train.epochs, cfg.train.batch_size = "digits", "smallcnn", epochs, 32
    train = run_train(cfg)
    weights = train["weights"]

    cfg = Config(out=str(root / "diagnosis"))
    cfg.model.weights = weights
    cfg.diagnose.layers = "auto:2"
    run_diagnose(cfg)

    cfg = Config(out=str(root / "examine"))
    cfg.model.weights = weights
    cfg.examine.diagnosis = str(root / "diagnosis")
    ex = run_examine(cfg)
    print(f"== demo done in {time.perf_counter() - t0:.0f} s; outputs under {root.resolve()}")
    return {"train": train, "examine": ex}
