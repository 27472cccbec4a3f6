"""Group labels (e.g. class × background place) from a CSV, and accuracy per group.

The spurious-correlation field reports **worst-group accuracy** beside average accuracy: a model
that reads the background does well on the majority groups and badly on the minority ones.
``groups.csv`` has a header and two columns, ``file`` (the image's path relative to the
ImageFolder root, e.g. ``test/top/00012.png``) and ``group`` (any name).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

__all__ = ["load_groups", "group_accuracy", "chance_worst_group"]


def load_groups(path: str | Path, dataset: Any, split: str) -> tuple[torch.Tensor, list[str]]:
    """(group index per item of ``dataset`` ``[N]``, group names) for an ImageFolder split (or a
    :class:`Subset` of one, e.g. validation carved from ``train``: pass ``split="train"``).

    Raises:
        ValueError: an unreadable CSV, no ``file,group`` header, a dataset that is not an
            ImageFolder, or images of the split the CSV does not name (counted, the first named).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--groups {str(p)!r} is not a file; pass a CSV with a file,group header")
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--groups {str(p)!r} is not a readable CSV ({exc}); write it as UTF-8 file,group rows") from None
    if not rows or not {"file", "group"} <= set(rows[0]):
        raise ValueError(f"--groups {str(p)!r} needs a header with the columns file,group and one row per image")
    samples = _samples(dataset)
    if samples is None:
        raise ValueError("--groups needs an ImageFolder dataset (--data imagefolder:DIR): groups are matched by file path")
    by_file = {r["file"].replace("\\", "/").lstrip("./"): r["group"] for r in rows}
    keys = [f"{split}/{rel}" for rel, _ in samples]
    missing = [k for k in keys if k not in by_file]
    if missing:
        raise ValueError(f"--groups {str(p)!r} names no group for {len(missing)} of {len(keys)} {split} images "
                         f"(first: {missing[0]!r}); add a file,group row for each")
    names = sorted({by_file[k] for k in keys})
    index = {n: i for i, n in enumerate(names)}
    return torch.tensor([index[by_file[k]] for k in keys], dtype=torch.long), names


def _samples(dataset: Any) -> list[tuple[str, Any]] | None:
    """An ImageFolder's ``(relative path, label)`` rows, through a :class:`Subset` too (its items only)."""
    if isinstance(dataset, Subset):
        inner = _samples(dataset.dataset)
        return None if inner is None else [inner[int(i)] for i in dataset.indices]
    return getattr(dataset, "samples", None)


def group_accuracy(model: nn.Module, dataset: Any, groups: torch.Tensor, names: list[str],
                   batch_size: int = 256) -> dict[str, Any]:
    """Per-group accuracy, the worst group, and average accuracy (over images) in eval mode."""
    from .base import hits_of

    hit = hits_of(model, dataset, batch_size).double()
    per_group = {n: float(hit[groups == i].mean()) for i, n in enumerate(names) if bool((groups == i).any())}
    worst = min(per_group, key=lambda n: per_group[n])
    return {"average": float(hit.mean()), "worst": per_group[worst], "worst_group": worst, "per_group": per_group,
            "sizes": {n: int((groups == i).sum()) for i, n in enumerate(names)}}


def chance_worst_group(sizes: list[int] | tuple[int, ...], n_classes: int) -> tuple[float, float]:
    """(mean, std) of the worst-group accuracy of a classifier that guesses a uniformly random class
    for every image, on groups of these sizes: each group's hits are Binomial(n, 1/K) and the worst
    group is their minimum, so on finite groups chance sits well below 1/K (4 groups of 250, two
    classes: 46.7 ± 2.2 %). Why: a worst-group figure means nothing until it is read against this.

    Exact: P(worst ≥ t) = Π_g P(hits_g / n_g ≥ t) over every attainable t; E = Σ (t_i − t_{i−1})
    P(worst ≥ t_i), and E[worst²] likewise with t².

    Raises:
        ValueError: no group, an empty group, or fewer than 2 classes.
    """
    from scipy.stats import binom

    if not sizes or min(sizes) < 1 or n_classes < 2:
        raise ValueError(f"chance_worst_group needs non-empty groups and >= 2 classes (got sizes {list(sizes)}, "
                         f"{n_classes} classes)")
    import numpy as np

    levels = np.unique(np.concatenate([np.arange(1, n + 1) / n for n in sizes]))
    at_least = np.ones_like(levels)
    for n in sizes:   # P(hits >= ceil(t n)); the tolerance keeps k/n == t exact in float
        at_least *= binom.sf(np.ceil(levels * n - 1e-9) - 1, n, 1.0 / n_classes)
    prev = np.concatenate([[0.0], levels[:-1]])
    mean = float(((levels - prev) * at_least).sum())
    second = float(((levels ** 2 - prev ** 2) * at_least).sum())
    return mean, math.sqrt(max(second - mean * mean, 0.0))
