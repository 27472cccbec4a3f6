"""The treatment constraints as a drop-in loss (paper Eq. 5-7); the RRR baseline is the input-gradient term (``space.py``).

Usage in any training loop::

    doctor = ModelDoctorLoss(diagnosis, alpha=1.0, beta=0.0)
    with doctor.attach(model):
        for x, y, *rest in loader:
            logits = model(x)                                   # the same forward the CE uses
            terms = doctor(logits, y, (x, y, *rest), step)      # {"channel": ..., "space": ...}
            (F.cross_entropy(logits, y) + sum(terms.values())).backward()

Gradients are taken w.r.t. feature maps only (``autograd.grad(..., create_graph=True)``), so
the caller does one ``backward()`` of CE + terms (also the pattern that works under DDP).

**Normalisation** (``normalize=True``, default): each term is the mean over samples, noise draws,
channels and positions of the paper's summand, so α and β mean the same for any batch size, J,
width and feature-map size. ``normalize=False`` gives the paper's sums (Σ_j Σ_k Σ_hw), averaged
over the batch.

**BatchNorm after layer r** (``tail_bn``). Default ``"train"``: the constraint passes use the
same train-mode forward as the CE loss (batch statistics; with J = 0 literally the CE forward's
graph), as the official code does. ``"eval"``: the layers after r are re-run with running
statistics, giving exact per-image derivatives at a lower cost. Why the default matters: in a
network that is piecewise linear after r (ReLU, max-pool, eval-mode BatchNorm, linear),
``∂y/∂m`` does not depend on any parameter *before* r, so with ``"eval"`` the constraints can only
retrain the layers after r. Train-mode batch statistics (or smooth ops such as SE gates or SiLU)
are what carries the constraint's gradient into earlier layers. Running statistics are never
changed by the constraint passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..diagnosis.artifact import Diagnosis
from ..distributed import rank_world
from ..gradients import _reduce_fn
from ..noise import batch_noise
from .instrument import Instrument
from .terms import LossTerm, MaskedBatch

__all__ = ["ModelDoctorLoss", "channel_term", "space_term", "masked_channel_sum", "resize_background"]

Variant = Literal["paper", "official"]


def resize_background(fg_masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Foreground masks ``[B, 1|-, H, W]`` at image size -> background share ``[B, h, w]`` per cell.

    Area interpolation: a feature-map cell's background weight is the fraction of its image
    pixels outside the (already expanded) foreground.
    """
    fg = fg_masks.float()
    if fg.dim() == 3:
        fg = fg[:, None]
    fg = F.adaptive_avg_pool2d(fg, (int(size[0]), int(size[1])))
    return (1.0 - fg[:, 0]).clamp_(0.0, 1.0)


def masked_channel_sum(g: torch.Tensor, weights: torch.Tensor, reduce: str, draws: int) -> torch.Tensor:
    """``Σ_j Σ_k w_k Σ_hw r(g)`` per sample: gradients ``[B*J, K, h, w]``, weights ``[B, K]`` -> ``[B]``."""
    j = max(draws, 1)
    b, k = weights.shape
    per_channel = _reduce_fn(reduce)(g).flatten(2).sum(2).view(b, j, k)
    return (per_channel * weights[:, None, :]).sum((1, 2))


def _finish(total: torch.Tensor, g: torch.Tensor, normalize: bool, draws: int) -> torch.Tensor:
    """Batch mean; with ``normalize`` also divided by J x K x h x w (per-element mean)."""
    return total.mean() / (max(draws, 1) * g[0].numel()) if normalize else total.mean()


def channel_term(g_n: torch.Tensor, g_s: torch.Tensor, off_channels: torch.Tensor, reduce: str,
                 normalize: bool, draws: int) -> torch.Tensor:
    """Eq. 5 from gradients ``[B*J, K, h, w]`` of the predicted (n) and second (s) class logits.

    ``off_channels`` ``[B, K]`` is ``1[ā^{n_b} < v]`` per sample.
    """
    total = masked_channel_sum(g_n, off_channels, reduce, draws) + \
        masked_channel_sum(g_s, torch.ones_like(off_channels), reduce, draws)
    return _finish(total, g_n, normalize, draws)


def space_term(g_n: torch.Tensor, background: torch.Tensor, has_mask: torch.Tensor, reduce: str,
               normalize: bool, draws: int) -> torch.Tensor:
    """Eq. 6: ``Σ_hw Σ_k Σ_j I_bg ⊙ |∂y_n/∂(m_k + σ_j)|``; images without a mask contribute 0."""
    j = max(draws, 1)
    b = background.shape[0]
    r = _reduce_fn(reduce)(g_n).sum(1)                                       # Σ_k -> [B*J, h, w]
    r = r.view(b, j, *r.shape[1:]) * (background * has_mask.view(b, 1, 1).to(background))[:, None]
    return _finish(r.sum((1, 2, 3)), g_n, normalize, draws)                # Σ_j Σ_hw


class ModelDoctorLoss(LossTerm):
    """Channel-wise (α, Eq. 5) and space-wise (β, Eq. 6) constraints at the diagnosed layers.

    Args:
        diagnosis: the original model's :class:`Diagnosis` (gives ā, and the layers by default).
        layers: subset of the diagnosis's layers to constrain (default: all of them).
        alpha: channel-wise weight (0 disables); beta: space-wise weight (0 disables).
        v: threshold of Eq. 5's ``1[ā < v]`` on the per-class min-max normalised ā
            (default: the diagnosis's θ = 0.2).
        noise_draws: J (0 = no noise, the same forward's graph is used directly); noise: δ.
        variant: ``"paper"`` (Eq. 5) or ``"official"`` (official code: correct prediction ->
            the rank-2 class on its own relevant channels, wrong -> the rank-1 class on its
            relevant channels, plus the true class on its non-relevant channels).
        reduce: ``"abs"`` (paper) or ``"relu"`` (official code).
        normalize: per-element means (default) or the paper's raw sums.
        every: lazy regularisation: compute the terms every k-th step with weight x k.
        warmup_steps: linear ramp of α and β from 0 over this many steps.
        seed: noise seed (noise is keyed by step and position in the batch).
        tail_bn: ``"train"`` (default: BatchNorm after layer r as in the training forward) or
            ``"eval"`` (running statistics: exact per-image derivatives, cheaper, but no gradient
            into layers before r for piecewise-linear tails; see the module docstring).

    Raises:
        ValueError: negative weights, unknown layers, bad v / J / δ / every.
    """

    def __init__(self, diagnosis: Diagnosis, layers: Sequence[str] | None = None, *, alpha: float = 1.0,
                 beta: float = 0.0, v: float | None = None, noise_draws: int = 0, noise: float | None = None,
                 variant: Variant = "paper", reduce: str = "abs", normalize: bool = True, every: int = 1,
                 warmup_steps: int = 0, seed: int = 0, tail_bn: str = "train"):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha={alpha}, beta={beta}; constraint weights must be >= 0")
        super().__init__(1.0)  # alpha and beta weigh the two terms; the base holds the model
        if variant not in ("paper", "official"):
            raise ValueError(f"variant={variant!r}; use 'paper' (Eq. 5) or 'official'")
        if reduce not in ("abs", "relu"):
            raise ValueError(f"reduce={reduce!r}; use 'abs' (paper) or 'relu' (official code)")
        if tail_bn not in ("eval", "train"):
            raise ValueError(f"tail_bn={tail_bn!r}; use 'train' (batch statistics, default) or 'eval' (running statistics)")
        if every < 1 or noise_draws < 0 or warmup_steps < 0:
            raise ValueError(f"every={every}, noise_draws={noise_draws}, warmup_steps={warmup_steps}; use every >= 1 and the others >= 0")
        self.diagnosis = diagnosis
        self.layers = list(layers) if layers is not None else list(diagnosis.layers)
        for layer in self.layers:
            diagnosis.correlation(layer)  # raises for a layer that was not diagnosed
        self.alpha, self.beta = float(alpha), float(beta)
        self.v = diagnosis.settings.get("theta", 0.2) if v is None else float(v)
        if not 0.0 <= self.v <= 1.0:
            raise ValueError(f"v={v}; it is a fraction of each class's min-max range, use 0 <= v <= 1")
        self.draws = int(noise_draws)
        self.delta = float(diagnosis.settings.get("noise", 0.1) if noise is None else noise)
        self.variant, self.reduce, self.normalize = variant, reduce, normalize
        self.every, self.warmup_steps, self.seed, self.tail_bn = every, warmup_steps, seed, tail_bn
        self._normalized = {name: diagnosis.normalized(name).float() for name in self.layers}
        self._inst: Instrument | None = None

    # -- hooks -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        """Capture the constrained layers during forward passes inside the block."""
        self.diagnosis.check_compatible(model)
        with self.instrumented(model, self.layers, need_tail=self.draws > 0 or self.tail_bn == "eval"):
            yield

    # -- the loss --------------------------------------------------------------------------
    def weight_scale(self, step: int) -> float:
        if step % self.every:
            return 0.0
        ramp = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return ramp * self.every

    def _grads(self, layer: str, logits: torch.Tensor, classes: list[torch.Tensor], step: int) -> list[torch.Tensor]:
        """∂y_c/∂(m + σ_j) with graph, ``[B*J, K, h, w]`` for each class vector in ``classes``."""
        assert self._inst is not None
        m, extras = self._inst.feature(layer)
        if self.draws == 0 and self.tail_bn == "train":
            z, out = m, logits
        elif self.draws == 0:
            z = m
            out = self._inst.tail(layer, z, extras, 1, bn_eval=True)
        else:
            b = m.shape[0]
            rank, world = rank_world()  # global position in the global batch (sampler: rank::world)
            keys = rank + world * torch.arange(b) + step * 1_000_003
            noise = batch_noise(self.seed, self.layers.index(layer), keys, self.draws, tuple(m.shape[1:]),
                                self.delta, m.dtype, m.device)
            z = (noise.view(b, self.draws, *m.shape[1:]) + m[:, None]).view(b * self.draws, *m.shape[1:])
            out = self._inst.tail(layer, z, extras, self.draws, bn_eval=self.tail_bn == "eval")
        reps = max(self.draws, 1)
        grads = []
        for c in classes:
            y = out.gather(1, c.repeat_interleave(reps)[:, None]).sum()
            (g,) = torch.autograd.grad(y, z, create_graph=True, retain_graph=True)
            grads.append(g)
        return grads

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any] = (),
                 step: int = 0) -> dict[str, torch.Tensor]:
        """Named constraint terms (already weighted) for this batch.

        ``batch`` may carry ``(x, y, fg_mask [B,1,H,W], has_mask [B])`` for the space-wise term.
        """
        self.need_model()
        zero = logits.sum() * 0.0
        out: dict[str, torch.Tensor] = {}
        scale = self.weight_scale(step)
        if scale == 0.0:
            if self.alpha:
                out["channel"] = zero
            if self.beta:
                out["space"] = zero
            return out
        top2 = logits.detach().topk(2, dim=1).indices
        n, s = top2[:, 0], top2[:, 1]
        masks = None
        if self.beta:
            b = MaskedBatch.of(batch, "beta > 0", logits.device)
            masks = (b.foreground, b.has_mask)
        ch_total, sp_total = zero, zero
        for layer in self.layers:
            norm = self._normalized[layer].to(logits.device)
            if self.alpha and self.variant == "paper":
                g_n, g_s = self._grads(layer, logits, [n, s], step)
                ch_total = ch_total + channel_term(g_n, g_s, (norm[n] < self.v).to(g_n.dtype), self.reduce,
                                                   self.normalize, self.draws)
            elif self.alpha:
                correct = n == labels
                target = torch.where(correct, s, n)  # rank-2 when right, rank-1 when wrong
                g_t, g_y = self._grads(layer, logits, [target, labels], step)
                relevant = (norm > self.v).to(g_t.dtype)
                total = masked_channel_sum(g_t, relevant[target], self.reduce, self.draws) + \
                    masked_channel_sum(g_y, 1.0 - relevant[labels], self.reduce, self.draws)
                ch_total = ch_total + _finish(total, g_t, self.normalize, self.draws)
                g_n = None
            else:
                g_n = None
            if masks is not None:
                if g_n is None or self.variant != "paper" or not self.alpha:
                    (g_n,) = self._grads(layer, logits, [n], step)
                bg = resize_background(masks[0], g_n.shape[-2:])
                sp_total = sp_total + space_term(g_n, bg, masks[1], self.reduce, self.normalize, self.draws)
        if self.alpha:
            out["channel"] = self.alpha * scale * ch_total
        if self.beta:
            out["space"] = self.beta * scale * sp_total
        return out
