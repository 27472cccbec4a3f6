"""The annotated images of a treatment in three disjoint parts: the constraint's training part,
the selection set (chooses each arm's epoch and weight) and the report set (the verdict's figures).

**Selection without test data** (the rule ``treat`` applies, documented in ``docs/method.md``):
a quarter (``holdout``) of each class's annotated training images is held out — their masks are
never used by a constraint — and after every epoch each arm (the control too) is scored by
:func:`~model_doctor.treatment.reliance.selection_score` (default: the held-out background-swap
accuracy, validation accuracy breaking ties). Each arm keeps its best-scoring epoch; with several weights
(``--beta 1 3 10``) each seed keeps the weight whose chosen epoch scores best. The test split is
read only afterwards, to report.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data.base import sized
from ..data.masks import KeepMasks, expand_foreground, pick_per_class
from .pool import AnnotatedPool

__all__ = ["Pools", "make_pools", "held_fraction", "expanded_pool", "MIN_REPORT_IMAGES"]


class Pools:
    """Annotated training images, in three disjoint parts:

    - ``train``: the constraints may use them (and CE trains on them);
    - ``select``: held out from every kind of training; they choose each arm's epoch and weight;
    - ``report``: held out from every kind of training *and* from selection; the verdict's
      background reliance is measured on them.

    ``masked_train`` is the training part without the held-out images, masks only on ``train``'s
    images (for Eq. 6 and RRR, which read masks from the batch). ``select`` / ``report`` are None
    when a class has too few annotated images to split."""

    def __init__(self, train: AnnotatedPool, select: AnnotatedPool | None, report: AnnotatedPool | None,
                 masked_train: Dataset, refine: str = "none"):
        self.train, self.select, self.report, self.masked_train = train, select, report, masked_train
        self.refine = refine
        self.skipped_report = "skipped: none"
        #: (asked, used) where the held-out share was raised for few classes (:func:`held_fraction`)
        self.raised: tuple[float, float] | None = None

    @property
    def held(self) -> AnnotatedPool | None:
        """The images that choose epochs and weights (the selection set)."""
        return self.select

    def parts(self) -> list[AnnotatedPool]:
        return [p for p in (self.train, self.select, self.report) if p is not None]

    def describe(self) -> str:
        if self.select is None and self.report is not None:
            held = f", {len(self.report)} held out to report background reliance (none spent on selection)"
        elif self.select is None:
            held = ", none held out (too few per class: background reliance is not measured)"
        else:
            held = (f", {len(self.select)} held out to choose epochs and weights"
                    + (f", {len(self.report)} held out to report background reliance" if self.report is not None else
                       ", none left to report on (the reliance reported is the selection set's: optimistic)"))
        n = sum(len(p) for p in self.parts())
        done = sum(int(p.refined.sum()) for p in self.parts())
        raised = (f" (--holdout {self.raised[0]:g} raised to {self.raised[1]:.2g} of each class: few classes, at least "
                  f"{MIN_REPORT_IMAGES} report images)" if self.raised else "")
        return (f"{len(self.train)} annotated training images used by the constraint{held} (never trained on){raised}; "
                f"refine {self.refine}: {done} of {n} foregrounds refined")

    def summary(self) -> dict[str, Any]:
        parts = {"train": self.train, "select": self.select, "report": self.report}
        refine: dict[str, Any] = {"method": self.refine, "images": 0, "refined": 0, "not_refined": {}}
        for p in self.parts():
            r = p.refine_report()
            refine["images"] += r["images"]
            refine["refined"] += r["refined"]
            for k, v in r["not_refined"].items():
                refine["not_refined"][k] = refine["not_refined"].get(k, 0) + v
        return {**{k: len(v) if v is not None else 0 for k, v in parts.items()},
                "held_out": sum(len(v) for k, v in parts.items() if k != "train" and v is not None),
                "held_out_share": self.raised[1] if self.raised else None,
                "per_class": {k: v.counts() for k, v in parts.items() if v is not None},
                "held_out_indices": {k: list(v.indices) for k, v in parts.items() if k != "train" and v is not None},
                "refine": refine, "annotations": self.skipped_report}


#: the fewest report images the held-out share is raised for (where the classes are few)
MIN_REPORT_IMAGES = 10


def held_fraction(counts: dict[int, int], holdout: float, with_select: bool = True) -> float:
    """``holdout``, raised where the classes are few until about :data:`MIN_REPORT_IMAGES` report
    (as many again select when ``with_select``), but never above half of the smallest class: with
    2 classes × 20 annotations a quarter leaves 4 report images, and on E6 a figure on 4 images
    missed the truth by up to 55 points (docs/results/reliance/reliance_vs_truth.md). 0 stays 0."""
    if holdout <= 0 or not counts:
        return holdout
    need = math.ceil(MIN_REPORT_IMAGES / len(counts)) * (2 if with_select else 1)
    return max(holdout, min(0.5, need / min(counts.values())))


def make_pools(raw_train: Dataset, expanded_train: Dataset, holdout: float, per_class: int | None,
               seed: int, refine: str = "grabcut", erode_px: int = 0, with_select: bool = True) -> Pools:
    """Pools from the training part with raw (unexpanded) masks; ``expanded_train`` is the same
    part with expanded masks (what Eq. 6 / RRR read from the batch). Foregrounds are refined
    (``refine``, :mod:`model_doctor.data.refine`) once, here. ``holdout`` of each class's images
    are held out (raised for few classes: :func:`held_fraction`); half of them (per class) select,
    the other half report; all of them report with ``with_select=False`` (when
    something else, e.g. worst-group validation accuracy, chooses).

    Raises:
        ValueError: no annotated image in the training part (masks that pair with nothing).
    """
    from torch.utils.data import Subset

    pool = AnnotatedPool.from_dataset(raw_train)
    if per_class is not None:
        pool = pool._take(pick_per_class(pool.labels, per_class, seed))
    pool = pool.refine(refine, seed, erode_px)
    share = held_fraction(pool.counts(), holdout, with_select)
    train, held = pool.split_holdout(share, seed)
    select, report = held.split_holdout(0.5, seed + 1) if held is not None and with_select else (None, held)
    out = {int(i) for p in (select, report) if p is not None for i in p.indices}
    keep = [i for i in range(sized(expanded_train)) if i not in out]
    pools = Pools(train, select, report, Subset(KeepMasks(expanded_train, train.indices), keep), refine)
    pools.raised = (holdout, share) if share > holdout else None
    return pools


def expanded_pool(pool: AnnotatedPool, pixels: int) -> AnnotatedPool:
    if not pixels:
        return pool
    fg = torch.stack([expand_foreground(f[0], pixels).to(pool.foreground.dtype)[None] for f in pool.foreground])
    return AnnotatedPool(pool.images, pool.labels, fg, pool.indices, pool.coarse, pool.refined, pool.reasons)
