"""Reproducible feature-map noise σ ~ U[-δ, δ] (paper Eq. 4).

Noise for one sample is a function of ``(seed, layer_index, sample_key)`` only, so results do
not depend on batch size, data order or how samples are sharded across processes, and a naive
per-sample reference loop can draw exactly the same noise.

Why 16-bit: drawing 53-bit doubles per element costs more than the network's tail for a small
CNN (a 10 x 128 x 8 x 8 noise block per sample is as large as the tail's input). Each value is
instead one 16-bit integer k from NumPy's SFC64 stream, mapped to ``(k + 0.5) / 32768 * δ``:
uniform on 65,536 levels, symmetric, mean zero, identical on every device and dtype. The
integers travel to the device at 2 bytes per element and are converted there.

Why threads: at a large map (ResNet-50's last block at 224 px is 2048 x 7 x 7) with J = 10 a
sample needs 10^6 codes, about 0.5-1 ms of one CPU core, while a GPU does the sample's whole
forward in well under that. SFC64 releases the GIL while it fills, so a batch's samples are
drawn by a small thread pool straight into one (pinned, on CUDA) buffer and copied to the device
without blocking; the numbers are the same as drawing them one by one.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["sample_noise", "batch_noise", "noise_from_codes", "noise_codes", "noise_threads"]

_MASK = (1 << 63) - 1
#: below this many codes per batch one thread is faster than handing work to the pool
PARALLEL_MIN_CODES = 1 << 19
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _reset_pool_in_child() -> None:  # a forked child (e.g. a DataLoader worker) has none of the pool's threads
    global _POOL, _POOL_SIZE
    _POOL, _POOL_SIZE = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)


def noise_threads(device: torch.device | str = "cpu") -> int:
    """Threads that draw a batch's noise. On CUDA up to 8, within this process's share of the
    cores (``LOCAL_WORLD_SIZE`` processes per machine under torchrun). On the CPU one: torch's own
    threads do the network's work there and gain nothing from sharing the cores (measured:
    whole ``diagnose()`` ÷ its limit was no lower with 2 threads on a 2-core machine).
    ``MODEL_DOCTOR_NOISE_THREADS`` overrides (1 = draw in the calling thread)."""
    env = os.environ.get("MODEL_DOCTOR_NOISE_THREADS")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"MODEL_DOCTOR_NOISE_THREADS={env!r}; use a positive integer (1 = no threads)")
        return int(env)
    if torch.device(device).type == "cpu":
        return 1
    from .distributed import cores_per_process

    return min(8, cores_per_process())


def _pool(size: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != size:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_SIZE = ThreadPoolExecutor(size, thread_name_prefix="model-doctor-noise"), size
        return _POOL


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
    threads: int | None = None,
) -> torch.Tensor:
    """Noise for a batch, laid out ``[B*draws, *shape]`` sample-major (matches ``repeat_interleave``).

    Each row equals :func:`sample_noise` for its key, whatever ``threads`` (default:
    :func:`noise_threads` for ``device``) and whatever the device.
    """
    keys = [int(k) for k in sample_keys]
    count = draws * int(np.prod(shape))
    device = torch.device(device)
    pinned = device.type == "cuda"
    buf = torch.empty((len(keys), count), dtype=torch.int16, pin_memory=pinned)
    rows = buf.numpy()

    def fill(part: range) -> None:
        for i in part:
            rows[i] = noise_codes(seed, layer_index, keys[i], count)

    n = noise_threads(device) if threads is None else max(1, int(threads))
    n = min(n, len(keys))
    if n > 1 and len(keys) * count >= PARALLEL_MIN_CODES:
        step = -(-len(keys) // n)
        list(_pool(n).map(fill, [range(s, min(s + step, len(keys))) for s in range(0, len(keys), step)]))
    else:
        fill(range(len(keys)))
    codes = buf.to(device, non_blocking=True) if pinned else buf
    return noise_from_codes(codes, delta, dtype).view(len(keys) * draws, *shape)
