"""Values no command can use, as one-line errors naming the value and the fix: the one check every
job and library call runs on a :class:`~model_doctor.config.Config` before any work."""

from __future__ import annotations

import dataclasses
import typing

from .config import Config
from .config.options import check_value, declared
from .precision import check_precision

__all__ = ["validate"]


def validate(cfg: Config) -> Config:
    """Values no command can use, as one-line errors (0 is never "use the default"): every field's
    declared choices and range (:func:`~model_doctor.config.options.check_value`), then the few
    rules that tie fields together."""
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        hints = typing.get_type_hints(type(value))
        for name, (_, o) in declared(value).items():
            integer = int in (typing.get_args(hints[name]) or (hints[name],))
            check_value(f"{section.name}.{name}", getattr(value, name), o, integer)
    check_precision(cfg.runtime.precision)
    if len(set(cfg.treat.seeds)) != len(cfg.treat.seeds) or not cfg.treat.seeds:
        raise ValueError(f"treat.seeds={cfg.treat.seeds}; give one or more distinct seeds (e.g. --seeds 0 1 2)")
    if not cfg.select.low_confidence:
        raise ValueError("select.low_confidence=False: only low-confidence selection is implemented; leave it on")
    return cfg
