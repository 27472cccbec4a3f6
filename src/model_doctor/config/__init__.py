"""The config: its sections (every option declared once, :mod:`.sections`, :mod:`.treat`), YAML
defaults, CLI overrides, the resolved config saved next to outputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..io import atomic_write_text
from .sections import (
    OBJECT_COLOUR,
    SELECT_RULES,
    SPACE_METHOD_NAMES,
    DataConfig,
    DiagnoseConfig,
    ExamineConfig,
    ModelConfig,
    RuntimeConfig,
    SelectConfig,
    TrainConfig,
)
from .treat import TreatConfig

__all__ = ["ModelConfig", "DataConfig", "DiagnoseConfig", "ExamineConfig", "TrainConfig", "TreatConfig", "SelectConfig",
           "RuntimeConfig", "Config", "load_config", "save_config", "OBJECT_COLOUR", "SELECT_RULES", "SPACE_METHOD_NAMES"]


#: where the runtime settings lived before the runtime section (config.yaml files saved by 0.x runs)
_MOVED = {("device",): "device", ("train", "workers"): "workers", ("train", "precision"): "precision",
          ("train", "resume"): "resume", ("diagnose", "precision"): "precision", ("examine", "precision"): "precision"}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    examine: ExamineConfig = field(default_factory=ExamineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    treat: TreatConfig = field(default_factory=TreatConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    out: str | None = None
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a field's type hint (int, float, bool, str, X | None, list[X], Any)."""
    import types
    import typing

    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    import typing

    names = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"unknown config key {where}{key!r}; valid keys: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{key!r} must be a mapping, got {value!r}")
            _merge(current, value, f"{where}{key}.")
        else:
            if not _type_ok(value, hints[key]):
                want = str(hints[key]).replace("typing.", "")
                raise ValueError(f"config key {where}{key} = {value!r} ({type(value).__name__}); it must be {want}")
            setattr(obj, key, value)


def load_config(path: str | Path | None, base: Config | None = None) -> Config:
    """Defaults, updated from a YAML file (``yaml.safe_load``); unknown keys are an error."""
    cfg = base or Config()
    if path is None:
        return cfg
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist; check --config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"config file {str(p)!r} is not valid YAML{at} ({getattr(exc, 'problem', None) or type(exc).__name__}); "
                         "fix its syntax (only plain YAML types are read)") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at the top level")
    _merge(cfg, _moved_to_runtime(data, p), "")
    return cfg


def _moved_to_runtime(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """An older config.yaml with device, workers, precision or resume in their old sections, read
    into ``runtime`` (the saved file is never rewritten). Of the old per-command precisions the one
    not at the default wins; two different ones are an error."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    found: dict[str, list[Any]] = {}
    for where, key in _MOVED.items():
        holder = data if len(where) == 1 else data.get(where[0])
        if isinstance(holder, dict) and where[-1] in holder:
            found.setdefault(key, []).append(holder.pop(where[-1]))
    moved: dict[str, Any] = {}
    for key, values in found.items():
        distinct = list(dict.fromkeys(v for v in values if not (key == "precision" and v == "fp32"))) or values[:1]
        if len(distinct) > 1:
            raise ValueError(f"config file {str(path)!r} sets {key} to {distinct}; set it once, as runtime.{key}")
        moved[key] = distinct[0]
    if moved and isinstance(data.get("runtime", {}), dict):
        data["runtime"] = {**moved, **data.get("runtime", {})}
    return data


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Set ``{"section.key": value}`` pairs whose value is not ``None`` (CLI flags)."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        target = getattr(cfg, section) if section else cfg
        setattr(target, key, value)
    return cfg


def save_config(cfg: Config, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved config as ``config.yaml`` in ``out_dir`` (atomically)."""
    data = cfg.to_dict()
    if extra:
        data["resolved"] = extra
    path = Path(out_dir) / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path
