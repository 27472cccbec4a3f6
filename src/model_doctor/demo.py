"""``make demo``: train, diagnose, examine and treat on scikit-learn's bundled digits (no network, CPU, minutes)."""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config
from .jobs import run_diagnose, run_examine, run_robustness, run_train, run_treat
from .report import write_report


def run_demo(out: str = "runs/demo", epochs: int = 20, treat_epochs: int = 3, shortcut_epochs: int = 12,
             shortcut_treat_epochs: int = 4, shortcut_seeds: tuple[int, ...] = (0, 1)) -> dict:
    """The whole workflow on embedded data: the paper's pipeline on digits, then removing a
    background shortcut on decoy digits (a class-coded patch in a corner during training, a
    random one at test) with 20 annotated images per class and the counterfactual treatment."""
    t0 = time.perf_counter()
    root = Path(out)
    print(f"== model-doctor demo: digits (sklearn, upsampled to 32x32), smallcnn -> {root}")
    cfg = _fresh(str(root / "original"))
    cfg.data.name, cfg.model.name, cfg.train.epochs, cfg.train.batch_size = "digits", "smallcnn", epochs, 32
    train = run_train(cfg)
    weights = train["weights"]

    cfg = _fresh(str(root / "diagnosis"))
    cfg.model.weights = weights
    cfg.diagnose.layers = "auto:2"
    run_diagnose(cfg)

    cfg = _fresh(str(root / "examine"))
    cfg.model.weights = weights
    cfg.examine.diagnosis = str(root / "diagnosis")
    ex = run_examine(cfg)

    cfg = _fresh(str(root / "treat"))
    cfg.model.weights = weights
    cfg.treat.diagnosis = str(root / "diagnosis")
    cfg.treat.layers = "features.8"          # the last conv layer (paper: deep layers work best)
    cfg.treat.epochs, cfg.treat.batch_size = treat_epochs, 32
    treat = run_treat(cfg)
    print(f"== test accuracy  original {treat['original']['test_acc']:.4f}  treated {treat['treated']['test_acc']:.4f}  "
          f"CE-only control {treat['control']['test_acc']:.4f}  (digits test split, {len(treat['original']['per_class'])} classes)")
    shortcut = _shortcut(root, shortcut_epochs, shortcut_treat_epochs, list(shortcut_seeds))
    cfg = _fresh(str(root / "robustness"))
    cfg.model.weights = weights
    run_robustness(cfg, None, eps=0.1, samples=100)
    page = write_report(root)
    print(f"== report: {page.resolve()}")
    print(f"== demo done in {time.perf_counter() - t0:.0f} s; outputs under {root.resolve()}")
    return {"train": train, "examine": ex, "treat": treat, "shortcut": shortcut}


def _fresh(out: str) -> Config:
    """A step's config: the demo starts over in its own folders on every run (``runtime.overwrite``)."""
    cfg = Config(out=out)
    cfg.runtime.overwrite = True
    return cfg


def _shortcut(root: Path, epochs: int, treat_epochs: int, seeds: list[int]) -> dict:
    print("== shortcut removal: decoy-digits (the class is also coded by a grey patch in a corner; "
          "at test the patch is random)")
    cfg = _fresh(str(root / "shortcut" / "original"))
    cfg.data.name, cfg.model.name, cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = \
        "decoy-digits", "smallcnn", epochs, 32, 0.05
    weights = run_train(cfg)["weights"]
    cfg = _fresh(str(root / "shortcut" / "treat"))
    cfg.data.name, cfg.model.weights = "decoy-digits", weights
    cfg.treat.alpha, cfg.treat.beta, cfg.treat.space_method = 0.0, [1.0, 3.0, 10.0], "counterfactual"  # the README recipe
    cfg.treat.annotated_per_class, cfg.treat.epochs, cfg.treat.seeds = 20, treat_epochs, seeds
    s = run_treat(cfg)
    print(f"== shuffled-decoy test accuracy  original {s['original']['test_acc']:.4f}  treated {s['treated']['test_acc']:.4f}  "
          f"CE-only control {s['control']['test_acc']:.4f}")
    return s
