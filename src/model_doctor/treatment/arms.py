"""The loss of each treated arm, from the ``treat`` settings: the channel term (Eq. 5), a space
method from :data:`~model_doctor.treatment.space.SPACE_METHODS`, or the RRR baseline."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .pools import Pools, expanded_pool
from .space import SPACE_METHODS

__all__ = ["CombinedTerms", "weights_of", "needs_diagnosis", "build_terms"]


class CombinedTerms:
    """Several loss-term objects as one (attached together; called in order, dicts merged).

    Order matters: a term that runs its own forward (the pool-based space methods) must come after
    the ones that read the CE forward's captured feature maps (Eq. 5)."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = list(parts)

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator[CombinedTerms]:
        with contextlib.ExitStack() as stack:
            for p in self.parts:
                stack.enter_context(p.attach(model))
            yield self

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, batch: tuple = (), step: int = 0) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for p in self.parts:
            out.update(p(logits, labels, batch, step))
        return out


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
    from .losses import ModelDoctorLoss
    from .space import RRRLoss

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
                                     every=t.every, warmup_steps=t.warmup_steps, seed=seed, tail_bn=t.tail_bn))
    method = SPACE_METHODS[t.space_method]
    if beta and method is not None:
        assert pools is not None
        pool = expanded_pool(pools.train, expand) if method.expanded else pools.train
        parts.append(method.build(pool, beta, layers=layers or (list(diag.layers) if diag is not None else list(layers_default)),
                                  pool_batch=t.pool_batch, seed=seed, input_mode=t.input_mode,
                                  partners=t.partners, kl_weight=t.kl_weight, colour_cue=t.object_colour == "cue"))
    return parts[0] if len(parts) == 1 else CombinedTerms(parts)
