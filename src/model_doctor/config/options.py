"""Each option declared once: a config field's default, help, choices and range (:func:`opt`),
from which the CLI's flags (:mod:`model_doctor.cli.parser`), the checks every command runs
(:mod:`model_doctor.validation`) and ``--help``'s defaults come."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Opt", "opt", "declared", "flag_of", "check_value"]


@dataclass(frozen=True)
class Opt:
    """What the CLI and the checks need to know of one field beyond its type and default.

    ``flag``: the option string (default ``--field-name``); ``const``: a flag that takes no value
    sets this; ``choices``: the values allowed; ``lo`` / ``hi``: the range (``lo_open`` /
    ``hi_open``: bound excluded); ``fix``: the end of the one-line error (default: from the range
    or the choices); ``nargs`` / ``kind``: for a field typed ``Any`` (one value or a list), how the
    CLI reads it."""

    help: str
    flag: str | None = None
    const: Any = None
    choices: tuple[Any, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    fix: str | None = None
    nargs: str | None = None
    kind: Any = None


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **kw: Any) -> Any:
    """A dataclass field with its :class:`Opt` (``factory``: a default factory, for lists)."""
    meta = {"opt": Opt(help, **kw)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(section: Any) -> dict[str, tuple[dataclasses.Field, Opt]]:
    """The fields of a config section (class or instance) that declare an :class:`Opt`, by name."""
    return {f.name: (f, f.metadata["opt"]) for f in dataclasses.fields(section) if "opt" in f.metadata}


def flag_of(name: str, o: Opt) -> str:
    return o.flag or "--" + name.replace("_", "-")


def _range_words(o: Opt, integer: bool) -> str:
    if integer and o.lo == 1 and o.hi is None:
        return "use a positive integer"
    if integer and o.lo == 0 and o.hi is None:
        return "use a whole number >= 0"
    lo = "" if o.lo is None else ("(" if o.lo_open else "[") + f"{o.lo:g}"
    hi = "" if o.hi is None else f"{o.hi:g}" + (")" if o.hi_open else "]")
    if lo and hi:
        return f"use a value in {lo}, {hi}"
    return f"use a finite value {'>' if o.lo_open else '>='} {o.lo:g}" if lo else f"use a value <= {o.hi:g}"


def check_value(dotted: str, value: Any, o: Opt, integer: bool) -> None:
    """One-line ``ValueError`` when ``value`` is outside ``o``'s choices or range (None: unset, allowed)."""
    if value is None:
        return
    if o.choices is not None:
        items = value if isinstance(value, list) else [value]
        if any(v not in o.choices for v in items):
            raise ValueError(f"{dotted}={value!r}; {o.fix or 'use one of ' + ', '.join(map(repr, o.choices))}")
    if o.lo is None and o.hi is None:
        return
    for v in value if isinstance(value, list) else [value]:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int))
        if not bad:
            bad = (not math.isfinite(v) or (o.lo is not None and (v <= o.lo if o.lo_open else v < o.lo))
                   or (o.hi is not None and (v >= o.hi if o.hi_open else v > o.hi)))
        if bad:
            raise ValueError(f"{dotted}={value!r}; {o.fix or _range_words(o, integer)}")
