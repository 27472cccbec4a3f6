"""Controlled fine-tuning runs, cached on disk: what the evidence benchmarks and
``model-doctor reproduce`` share.

A *run* trains a model with :func:`~model_doctor.training.fit` (validation from the training
split picks its best epoch), then evaluates it once on the test set, and writes
``result.json`` last. A run whose ``result.json`` exists is loaded instead of trained, and an
interrupted one resumes from its checkpoint, so a long study can be stopped and restarted.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from .data.base import sized
from .distributed import GlobalBatchSampler
from .io import atomic_save_safetensors, atomic_write_json, load_state_dict
from .training import FitConfig, FitResult, LossTerms, NonFiniteLossError, evaluate, fit

__all__ = ["subset", "Spread", "spread", "fmt", "cached_run", "copy_of", "RUN_FILE"]

RUN_FILE = "result.json"


def subset(dataset: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """The first ``n`` items of a seeded permutation (in index order); all of it for ``None``."""
    size = sized(dataset)
    if n is None or n >= size:
        return dataset
    if n < 1:
        raise ValueError(f"subset size {n}; use a positive number of images (or none for all {size})")
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return Subset(dataset, sorted(perm.tolist()))


class Spread(NamedTuple):
    """Mean and sample standard deviation over seeds (std 0 for one value; both NaN for none)."""

    mean: float
    std: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def spread(values: Sequence[float | None]) -> Spread:
    """The one aggregate over seeds: :class:`Spread` of the finite values (``None``/NaN dropped)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return Spread(math.nan, math.nan, 0)
    t = torch.tensor(vals, dtype=torch.float64)
    return Spread(float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0, len(vals))


def fmt(values: Sequence[float], scale: float = 100.0, digits: int = 2, signed: bool = False) -> str:
    """``"91.23 ± 0.40"`` (percent by default; sample std), ``"91.23 (1 run)"``, ``"—"`` when empty."""
    m, s, n = spread(values)
    if not n:
        return "—"
    sign = "+" if signed else ""
    tail = f" ± {s * scale:.{digits}f}" if n > 1 else " (1 run)"
    return f"{m * scale:{sign}.{digits}f}{tail}"


def cached_run(out_dir: str | Path, start: Callable[[], nn.Module], train: Dataset, val: Dataset,
               fit_cfg: FitConfig, num_classes: int, *, test: Dataset | None = None,
               terms: Callable[[], LossTerms | None] | None = None, tag: str = "run",
               extra: dict[str, Any] | None = None,
               select: Callable[[nn.Module], dict[str, Any]] | None = None,
               say: Callable[[str], None] | None = None, log: Callable[[dict[str, Any]], None] | None = None,
               resume: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``start()`` (a fresh model, or a copy of an original) once and cache the result.

    Returns the model holding its best-validation weights and the result: ``val_acc``,
    ``best_epoch``, ``test_acc`` (when ``test`` is given; read after training), the last epoch's
    mean loss terms, ``seconds`` and ``extra``. ``resume=False`` ignores a finished or interrupted
    run in ``out_dir`` and trains again; ``say`` / ``log`` are :func:`fit`'s progress callbacks.
    """
    out = Path(out_dir)
    model = start()
    done = out / RUN_FILE
    if done.is_file() and resume:
        import json

        model.load_state_dict(load_state_dict(out / "best.safetensors"))
        return model, json.loads(done.read_text())
    t0 = time.perf_counter()
    steps = fit_cfg.epochs * len(GlobalBatchSampler(sized(train), fit_cfg.batch_size, 0))
    try:
        res = fit(model, train, val, fit_cfg, num_classes, terms=terms() if terms else None, out_dir=out, resume=resume,
                  tag=tag, select=select, say=say, log=log)
        diverged = None
    except NonFiniteLossError as exc:  # kept as a finished, diverged run: the caller reports it (study.divergence)
        if exc.best_state is None:
            raise
        model.load_state_dict(exc.best_state)  # the last good epoch (the start when none was)
        row = exc.best_row or {}
        res = FitResult(int(row.get("epoch", 0)), float(row.get("val_acc", math.nan)), exc.history or [], exc.skipped, row)
        diverged = " ".join(str(exc).split())
    seconds = time.perf_counter() - t0
    atomic_save_safetensors(out / "best.safetensors", {k: v.detach().contiguous() for k, v in model.state_dict().items()})
    result: dict[str, Any] = {
        "val_acc": res.best_val_acc, "best_epoch": res.best_epoch, "skipped_steps": res.skipped_steps, "steps": steps,
        "last_losses": {k: v for k, v in (res.history[-1] if res.history else {}).items() if k.startswith("loss_")},
        "seconds": seconds, "best_row": res.best_row, **({"diverged": diverged} if diverged else {}), **(extra or {}),
    }
    if test is not None:
        result["test_acc"] = evaluate(model, test, num_classes)["acc"]
    atomic_write_json(done, result)
    (out / "checkpoint.pt").unlink(missing_ok=True)  # the run is finished; best.safetensors is what stays
    return model, result


def copy_of(model: nn.Module) -> Callable[[], nn.Module]:
    """A ``start`` for :func:`cached_run` that fine-tunes a copy of ``model``."""
    return lambda: copy.deepcopy(model)
