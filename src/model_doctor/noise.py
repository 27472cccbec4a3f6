"""Reproducible feature-map noise σ ~ U[-δ, δ] (paper Eq. 4).

Noise for one sample is a function of ``(seed, layer_index, sample_key)`` only, so results do
not depend on batch size, data order or how samples are sharded across processes, and a naive
per-sample reference loop can draw exactly the same noise.

Why 16-bit: drawing 53-bit doubles per element costs more than the network's tail for a small
CNN (a 10 x 128 x 8 x 8 noise block per sample is as large as the tail's input). Each value is
instead one 16-bit integer k from NumPy's SFC64 stream, mapped to ``(k + 0.5) / 32768 * δ``:
uniform on 65,536 levels, symmetric, mean zero, identical on every device and dtype. The
integers travel to the device at 2 bytes per element and are converted there.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_noise", "batch_noise", "noise_from_codes", "noise_codes"]

_MASK = (1 << 63) - 1


def _generator_seed(seed: int, layer_index: int, sample_key: int) -> int:
    h = (seed * 0x9E3779B97F4A7C15) ^ (layer_index * 0xBF58476D1CE4E5B9) ^ (sample_key * 0x94D049BB133111EB)
    return h & _MASK


def noise_codes(seed: int, layer_index: int, sample_key: int, count: int) -> np.ndarray:
    """``count`` int16 codes for one sample (little-endian view of SFC64's 64-bit outputs)."""
    raw = np.random.SFC64(_generator_seed(seed, layer_index, sample_key)).random_raw((count + 3) // 4)
    return raw.astype("<u8", copy=False).view("<i2")[:count]


def noise_from_codes(codes: torch.Tensor, delta: float, dtype: torch.dtype) -> torch.Tensor:
    """Map int16 codes to ``(k + 0.5) / 32768 * delta`` in ``dtype`` (on the codes' device)."""
    return codes.to(dtype).add_(0.5).mul_(delta / 32768.0)


def sample_noise(
    seed: int, layer_index: int, sample_key: int, draws: int, shape: tuple[int, ...], delta: float,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``[draws, *shape]`` noise for one sample, uniform in ``[-delta, delta]``."""
    count = draws * int(np.prod(shape))
    codes = torch.from_numpy(noise_codes(seed, layer_index, sample_key, count).copy()).to(device)
    return noise_from_codes(codes, delta, dtype).view(draws, *shape)


def batch_noise(
    seed: int, layer_index: int, sample_keys: torch.Tensor | list[int], draws: int, shape: tuple[int, ...],
    delta: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Noise for a batch, laid out ``[B*draws, *shape]`` sample-major (matches ``repeat_interleave``)."""
    keys = [int(k) for k in sample_keys]
    count = draws * int(np.prod(shape))
    codes = np.concatenate([noise_codes(seed, layer_index, k, count) for k in keys])
    out = noise_from_codes(torch.from_numpy(codes).to(device), delta, dtype)
    return out.view(len(keys) * draws, *shape)
