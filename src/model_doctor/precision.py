"""Mixed precision: one place that says which precisions exist and opens the autocast context.

bf16 needs no loss scaler (its exponent range is float32's), so gradient penalties and Eq. 4's
gradients stay finite without one; fp16 would need the GradScaler recipe for gradient penalties,
which is not implemented, so it is refused rather than run unscaled.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast"]

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision == "fp16":
        raise ValueError("precision='fp16' needs the GradScaler gradient-penalty recipe, which is not implemented; "
                         "use --precision bf16 (no scaler needed) or fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; use fp32 or bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` for ``"bf16"``; a no-op for ``"fp32"``."""
    check_precision(precision)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
