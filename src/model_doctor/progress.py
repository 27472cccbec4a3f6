"""Progress bars (tqdm), silenced with MODEL_DOCTOR_QUIET=1 or when stderr is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    if os.environ.get("MODEL_DOCTOR_QUIET") == "1":
        return False
    return os.environ.get("MODEL_DOCTOR_PROGRESS") == "1" or sys.stderr.isatty()


def progress(it: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False) -> Iterable[T]:
    if not enabled():
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=leave, dynamic_ncols=True)
