"""The schema of ``treat``'s ``summary.json``: what the job writes and the report reads.

One dataclass per level, a version number, and one reader that refuses an incomplete or
unknown file with a line that names it (so the report never guesses at string keys).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "ArmSummary", "TreatSummary", "read_treat_summary"]

#: 2: arms as :class:`ArmSummary`, ``schema`` recorded (1: the unversioned files before it)
SCHEMA_VERSION = 2


@dataclass
class ArmSummary:
    """One arm over seeds: test accuracy (mean, sample std), validation accuracy, per-class test
    accuracy (mean) and, with annotated report images, background reliance (mean ± std per measure)."""

    test_acc: float
    val_acc: float
    per_class: list[float]
    test_acc_std: float = 0.0
    background_reliance: dict[str, Any] | None = None
    groups: dict[str, Any] | None = None     # with --groups: worst-group and average accuracy (mean ± std), per group


@dataclass
class TreatSummary:
    """Everything ``treat`` reports; ``runs`` holds each seed's arms, ``verdict`` the plain lines."""

    original: ArmSummary
    treated: ArmSummary
    runs: list[dict[str, Any]]
    verdict: list[dict[str, Any]]
    selection: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str]
    control: ArmSummary | None = None
    delta_treated_minus_control: dict[str, float] | None = None
    masks: dict[str, Any] | None = None
    classes: list[str] | None = None
    diverged: list[dict[str, Any]] = field(default_factory=list)   # arms whose training diverged (study.divergence)
    note: str = "test split evaluated once, after training; epochs and weights chosen without test data"
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def arms(self) -> dict[str, ArmSummary]:
        """original, treated and (when run) control, in that order."""
        return {k: v for k, v in (("original", self.original), ("treated", self.treated), ("control", self.control))
                if v is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**{k: v for k, v in d.items() if v is not None}, **extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "summary.json") -> TreatSummary:
        """Raises ValueError (one line naming ``where``) for a file that is not a complete summary."""
        if not isinstance(d, dict):
            raise ValueError(f"{where!r} does not hold a JSON object; re-run treat there")
        version = d.get("schema", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"{where!r} has summary schema {version!r}, newer than this model-doctor reads "
                             f"({SCHEMA_VERSION}); upgrade model-doctor")
        for key in ("original", "treated", "runs"):
            if not isinstance(d.get(key), (dict, list)):
                raise ValueError(f"{where!r} lacks {key!r}: not a complete `model-doctor treat` summary; re-run treat "
                                 "there, or move the file out of the run folder")
        arm_keys = {f.name for f in fields(ArmSummary)}

        def arm(v: Any) -> ArmSummary | None:
            if v is None:
                return None
            if not isinstance(v, dict) or not {"test_acc", "per_class"} <= set(v):
                raise ValueError(f"{where!r}: an arm lacks test_acc/per_class; re-run treat there")
            return ArmSummary(**{"val_acc": float("nan"), **{k: x for k, x in v.items() if k in arm_keys}})

        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(original=arm(d["original"]), treated=arm(d["treated"]), control=arm(d.get("control")),  # type: ignore[arg-type]  # checked above
                   runs=d["runs"], verdict=d.get("verdict", []), selection=d.get("selection", {}),
                   config=d.get("config", {}), versions=d.get("versions", {}),
                   delta_treated_minus_control=d.get("delta_treated_minus_control"), masks=d.get("masks"),
                   classes=d.get("classes"), diverged=d.get("diverged", []), note=d.get("note", ""), schema=version,
                   extra={k: v for k, v in d.items() if k not in known})


def read_treat_summary(path: str | Path) -> TreatSummary:
    """A ``summary.json`` written by ``treat`` (any schema up to :data:`SCHEMA_VERSION`)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(p)!r} is not readable JSON ({str(exc).splitlines()[0][:80]}); re-run the job that "
                         "wrote it, or move it out of the run folder") from None
    return TreatSummary.from_dict(data, str(p))
