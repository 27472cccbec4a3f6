"""The one gradient computation every part of the method shares (paper Eq. 2-4).

For a feature map ``m`` at layer r and a target class ``n`` per sample, compute
``|∂y_n / ∂(m + σ_j)|`` for J noise draws, batched as ``[B*J, ...]`` through the tail only,
and reduce it to a per-channel vector (``Σ_{h,w}``, then mean over j) and a spatial map
(``Σ_k``, then mean over j). ``y_n`` is the class *logit* (the paper's ȳ_n), not a probability.

One backward pass per batch is exact here: in eval mode samples do not interact, so the
gradient of ``Σ_b y_{n_b}`` w.r.t. the stacked ``z`` holds every sample's own derivative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .noise import batch_noise
from .split import LayerSplit

Reduce = Literal["abs", "relu"]

__all__ = ["Reduce", "GradientResult", "noisy_logits", "reduce_gradients", "feature_gradients"]


@dataclass
class GradientResult:
    channel: torch.Tensor  # [B, K]   (1/J) Σ_j Σ_hw r(∂y_n/∂(m_k+σ_j))
    spatial: torch.Tensor | None  # [B, *HW] (1/J) Σ_j Σ_k r(∂y_n/∂(m_k+σ_j)); None when not asked for
    logits: torch.Tensor   # [B, N]   logits of the clean feature map when J=0, else mean over draws


def _reduce_fn(reduce: str):
    if reduce == "abs":
        return torch.abs
    if reduce == "relu":
        return torch.relu
    raise ValueError(f"reduce={reduce!r}; use 'abs' (paper Eq. 3) or 'relu' (official code)")


def noisy_logits(
    split: LayerSplit, m: torch.Tensor, extras: tuple, *, draws: int, delta: float, seed: int,
    layer_index: int, sample_keys: torch.Tensor | list[int], noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(z, logits)`` with ``z = repeat(m, J) + σ`` (``z = m`` when ``draws == 0``).

    When ``m`` carries no graph (diagnosis), ``z`` is made a leaf that requires grad; when it
    does (treatment), ``z`` stays attached so ``create_graph`` reaches the parameters.
    """
    repeats = max(draws, 1)
    if draws == 0:
        z = m
    else:
        if noise is None:
            noise = batch_noise(seed, layer_index, sample_keys, draws, tuple(m.shape[1:]), delta, m.dtype, m.device)
        # noise [B*J, ...] viewed as [B, J, ...]: add m in place (one pass, no repeated copy of m)
        b = m.shape[0]
        if noise.requires_grad or m.requires_grad:
            z = (noise.view(b, draws, *m.shape[1:]) + m[:, None]).view(b * draws, *m.shape[1:])
        else:
            z = noise.view(b, draws, *m.shape[1:]).add_(m[:, None]).view(b * draws, *m.shape[1:])
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    return z, split.tail(z, extras, repeats)


def reduce_gradients(grad: torch.Tensor, batch: int, draws: int, reduce: Reduce,
                     spatial: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B*J, K, *HW]`` gradients -> per-channel ``[B, K]`` and spatial ``[B, *HW]`` (mean over J)."""
    r = grad.abs_() if reduce == "abs" else _reduce_fn(reduce)(grad)  # grad is ours to overwrite
    repeats = max(draws, 1)
    spatial_dims = tuple(range(2, r.dim()))
    channel = r.sum(spatial_dims) if spatial_dims else r
    channel = channel.view(batch, repeats, *channel.shape[1:]).mean(1)
    if not spatial:
        return channel, None
    smap = r.sum(1)
    return channel, smap.view(batch, repeats, *smap.shape[1:]).mean(1)


def feature_gradients(
    split: LayerSplit, x: torch.Tensor, targets: torch.Tensor, *, draws: int, delta: float, seed: int,
    layer_index: int, sample_keys: torch.Tensor | list[int], reduce: Reduce = "abs", spatial: bool = True,
) -> GradientResult:
    """Eq. 4 for one batch, without a graph to the parameters (diagnosis and examination)."""
    with torch.no_grad():
        m, extras = split.prefix(x)
    own = next(split.model.parameters(), m).dtype
    if m.dtype != own and m.dtype in (torch.bfloat16, torch.float16):  # autocast lowered it: noise and
        m = m.to(own)  # gradients in the model's own dtype; the tail's convolutions still autocast to bf16
    with torch.enable_grad():
        z, logits = noisy_logits(split, m, extras, draws=draws, delta=delta, seed=seed,
                                 layer_index=layer_index, sample_keys=sample_keys)
        repeats = max(draws, 1)
        idx = targets.to(logits.device).repeat_interleave(repeats)[:, None]
        y = logits.gather(1, idx).sum()
        (grad,) = torch.autograd.grad(y, z)
    channel, smap = reduce_gradients(grad.detach(), x.shape[0], draws, reduce, spatial)
    mean_logits = logits.detach().view(x.shape[0], repeats, -1).mean(1)
    return GradientResult(channel=channel, spatial=smap, logits=mean_logits)
