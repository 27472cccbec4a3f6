"""Reproducible feature-map noise σ ~ U[-δ, δ] (paper Eq. 4).

Noise for one sample is a function of ``(seed, layer_index, sample_key)`` only, so results do
not depend on batch size, data order or how samples are sharded across processes, and a naive
per-sample reference loop can draw exactly the same noise.
"""

from __future__ import annotations

import torch

__all__ = ["sample_noise", "batch_noise"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby seeds apart
_MASK = (1 << 63) - 1


def _generator_seed(seed: int, layer_index: int, sample_key: int) -> int:
    h = (seed * _MIX) ^ (layer_index * 0xBF58476D1CE4E5B9) ^ (sample_key * 0x94D049BB133111EB)
    return h & _MASK


def sample_noise(
    seed: int, layer_index: int, sample_key: int, draws: int, shape: tuple[int, ...], delta: float,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``draws`` noise tensors of ``shape`` for one sample: uniform in ``[-delta, delta]``.

    Drawn in float64 on the CPU then cast, so every dtype and device sees the same values.
    """
    g = torch.Generator().manual_seed(_generator_seed(seed, layer_index, sample_key))
    u = torch.rand((draws, *shape), generator=g, dtype=torch.float64)
    return ((u * 2.0 - 1.0) * delta).to(dtype=dtype, device=device)


def batch_noise(
    seed: int, layer_index: int, sample_keys: torch.Tensor | list[int], draws: int, shape: tuple[int, ...],
    delta: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Noise for a batch, laid out ``[B*draws, *shape]`` sample-major (matches ``repeat_interleave``)."""
    keys = [int(k) for k in sample_keys]
    parts = [sample_noise(seed, layer_index, k, draws, shape, delta) for k in keys]
    return torch.cat(parts, 0).to(dtype=dtype, device=device)
