"""What ``treat`` decides before and after training: the annotated pools, the loss of each arm,
the weight chosen without test data, and the verdict.

**Selection without test data** (the rule ``treat`` applies, documented in ``docs/method.md``):
a quarter (``holdout``) of each class's annotated training images is held out — their masks are
never used by a constraint — and after every epoch each arm (the control too) is scored by
:func:`~model_doctor.treatment.space.selection_score`: the mean of validation accuracy and the
held-out background-swap accuracy. Each arm keeps its best-scoring epoch; with several weights
(``--beta 1 3 10``) each seed keeps the weight whose chosen epoch scores best. The test split is
read only afterwards, to report.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.masks import KeepMasks, expand_foreground
from .space import AnnotatedPool, AttributionLoss, CounterfactualLoss, InputGradientLoss, SPACE_METHODS

__all__ = ["Pools", "make_pools", "build_terms", "needs_diagnosis", "weights_of", "choose_weight", "verdict", "CombinedTerms"]


class CombinedTerms:
    """Several loss-term objects as one (attached together; called in order, dicts merged).

    Order matters: a term that runs its own forward (the pool-based space methods) must come after
    the ones that read the CE forward's captured feature maps (Eq. 5)."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = list(parts)

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator["CombinedTerms"]:
        with contextlib.ExitStack() as stack:
            for p in self.parts:
                stack.enter_context(p.attach(model))
            yield self

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, batch: tuple = (), step: int = 0) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for p in self.parts:
            out.update(p(logits, labels, batch, step))
        return out


class Pools:
    """Annotated training images: ``train`` (the constraints may use them), ``held`` (held out to
    measure background reliance; None when there are too few), and the training part with masks
    only on ``train``'s images (for Eq. 6 and RRR, which read masks from the batch)."""

    def __init__(self, train: AnnotatedPool, held: AnnotatedPool | None, masked_train: Dataset, skipped: int = 0):
        self.train, self.held, self.masked_train, self.skipped = train, held, masked_train, skipped
        self.skipped_report = "skipped: none"

    def describe(self) -> str:
        held = f", {len(self.held)} held out to measure background reliance" if self.held is not None else \
            ", none held out (too few per class: background reliance is not measured)"
        return f"{len(self.train)} annotated training images used by the constraint{held}"

    def summary(self) -> dict[str, Any]:
        return {"train": len(self.train), "held_out": len(self.held) if self.held is not None else 0,
                "train_per_class": self.train.counts(), "held_per_class": self.held.counts() if self.held else {},
                "held_out_indices": list(self.held.indices) if self.held else [], "annotations": self.skipped_report}


def make_pools(raw_train: Dataset, expanded_train: Dataset, holdout: float, per_class: int | None,
               seed: int) -> Pools:
    """Pools from the training part with raw (unexpanded) masks; ``expanded_train`` is the same
    part with expanded masks (what Eq. 6 / RRR read from the batch).

    Raises:
        ValueError: no annotated image in the training part (masks that pair with nothing).
    """
    pool = AnnotatedPool.from_dataset(raw_train)
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"annotated_per_class={per_class}; use a positive count (paper: 20) or leave it unset")
        g = torch.Generator().manual_seed(1000 + seed)
        keep = torch.zeros(len(pool), dtype=torch.bool)
        for c in pool.labels.unique().tolist():
            idx = torch.nonzero(pool.labels == c).flatten()
            keep[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
        pool = pool._take(keep)
    train, held = pool.split_holdout(holdout, seed)
    return Pools(train, held, KeepMasks(expanded_train, train.indices))


def _expanded(pool: AnnotatedPool, pixels: int) -> AnnotatedPool:
    if not pixels:
        return pool
    fg = torch.stack([expand_foreground(f[0], pixels).to(pool.foreground.dtype)[None] for f in pool.foreground])
    return AnnotatedPool(pool.images, pool.labels, fg, pool.indices)


def weights_of(beta: Any) -> list[float]:
    """``--beta`` as a list of weights (one number or several)."""
    values = list(beta) if isinstance(beta, (list, tuple)) else [beta]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"beta={beta!r}; use a number or a list of numbers (e.g. --beta 1 3 10)") from None
    if any(v < 0 or math.isnan(v) for v in out):
        raise ValueError(f"beta={beta!r}; constraint weights must be >= 0")
    if len(set(out)) != len(out):
        raise ValueError(f"beta={beta!r} repeats a weight; give each weight once")
    return out


def needs_diagnosis(t: Any, betas: Sequence[float]) -> bool:
    """Only Eq. 5 (α) and Eq. 6 (``space_method="paper"``) read the diagnosis."""
    return bool(t.alpha) or (any(betas) and t.space_method == "paper" and not t.rrr)


def build_terms(t: Any, diag: Any, seed: int, beta: float, pools: Pools | None, expand: int,
                layers: Sequence[str] | None = None) -> Any:
    """The loss terms of one treated arm from a :class:`~model_doctor.config.TreatConfig`.

    ``layers``: where ``attribution`` works when neither ``t.layers`` nor a diagnosis names them."""
    from .losses import ModelDoctorLoss, RRRLoss

    if t.space_method not in SPACE_METHODS:
        raise ValueError(f"space_method={t.space_method!r}; use one of {', '.join(SPACE_METHODS)}")
    if t.rrr and (t.alpha or beta):
        raise ValueError("combine rrr with alpha/beta in separate runs; set alpha=0 and beta=0 for the RRR baseline")
    if t.rrr:
        return RRRLoss(t.rrr)
    if not (t.alpha or beta):
        raise ValueError("alpha=0 and beta=0 and rrr=0: nothing to treat with; set --alpha, --beta or --rrr")
    layers_default = layers or []
    layers = [t.layers] if isinstance(t.layers, str) else t.layers
    paper_beta = beta if t.space_method == "paper" else 0.0
    parts: list[Any] = []
    if t.alpha or paper_beta:
        parts.append(ModelDoctorLoss(diag, layers, alpha=t.alpha, beta=paper_beta, v=t.v, noise_draws=t.noise_draws,
                                     noise=t.noise, variant=t.variant, reduce=t.reduce, normalize=t.normalize,
                                     every=t.every, warmup_steps=t.warmup_steps, seed=seed))
    if beta and t.space_method != "paper":
        assert pools is not None
        if t.space_method == "attribution":
            parts.append(AttributionLoss(_expanded(pools.train, expand), layers or (list(diag.layers) if diag is not None else list(layers_default)), beta,
                                         pool_batch=t.pool_batch, seed=seed))
        elif t.space_method == "input":
            parts.append(InputGradientLoss(_expanded(pools.train, expand), beta, mode=t.input_mode,
                                           pool_batch=t.pool_batch, seed=seed))
        else:  # the pasted foreground is the annotation itself: expansion would carry background along
            parts.append(CounterfactualLoss(pools.train, beta, pool_batch=t.pool_batch, seed=seed))
    return parts[0] if len(parts) == 1 else CombinedTerms(parts)


def choose_weight(scores: dict[float, float]) -> float:
    """The weight whose chosen epoch has the highest selection score (ties: the smaller weight)."""
    return max(sorted(scores), key=lambda w: scores[w])


def verdict(deltas: Sequence[float], what: str, unit: str = "pts", scale: float = 100.0) -> dict[str, Any]:
    """Treated − control over seeds: mean, sample std, and whether the mean is beyond seed noise
    (mean − 2·std > 0 or mean + 2·std < 0, which needs ≥ 2 seeds). ``text`` is one plain line."""
    vals = [float(d) for d in deltas if d is not None and not math.isnan(float(d))]
    if not vals:
        return {"what": what, "mean": None, "std": None, "seeds": 0, "beyond_noise": False,
                "text": f"{what}: not measured"}
    t = torch.tensor(vals, dtype=torch.float64)
    mean = float(t.mean())
    std = float(t.std()) if len(vals) > 1 else None
    beyond = std is not None and (mean - 2 * std > 0 or mean + 2 * std < 0)
    spread = f" ± {std * scale:.1f}" if std is not None else ""
    n = f"{len(vals)} seed" + ("s" if len(vals) > 1 else "")
    if std is None:
        judgement = "1 seed: cannot tell from seed noise; pass --seeds 0 1 2"
    elif beyond:
        judgement = ("better" if mean > 0 else "worse") + " than the control beyond seed noise (|mean| > 2 std)"
    else:
        judgement = "within seed noise of the control"
    return {"what": what, "mean": mean, "std": std, "seeds": len(vals), "beyond_noise": beyond,
            "text": f"{what}: treated − control {mean * scale:+.1f}{spread} {unit} ({n}); {judgement}"}
