"""A command's output folder, read before anything is written: which run is there, and what to do.

Why: a rerun into a used folder once retrained from epoch 1 over an hour of finished work. timm
writes each run to a new folder and Hugging Face's Trainer refuses a non-empty one; here a folder
that holds a run is refused with one line that says what is there (finished, or interrupted and
where), unless the user says ``--resume`` (continue it) or ``--overwrite`` (start over). Overwrite
removes only the files that command writes, never another file in the folder, and never a LabelMe
file that holds the user's shapes. Nothing here runs code or unpickles: files are read as YAML
(``safe_load``), JSON and text.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import lock_holder

__all__ = ["COMMANDS", "FoundRun", "found_run", "claim", "annotated"]

COMMANDS = ("train", "diagnose", "examine", "treat", "select", "reproduce")

#: the file a command writes last: its presence means the run finished
_FINAL = {"train": "summary.json", "diagnose": "diagnosis.json", "examine": "examine_summary.json",
          "treat": "summary.json", "select": "index.csv", "reproduce": "cells.json"}

#: what each command writes into its folder (files and folders); ``--overwrite`` removes these only
_OWN = {"train": ("checkpoint.pt", "best.safetensors", "model.safetensors", "model.json", "metrics.jsonl", "summary.json"),
        "diagnose": ("diagnosis.json", "diagnosis.safetensors", "estimate.json"),
        "examine": ("examination.json", "examination.safetensors", "examine_summary.json"),
        "treat": ("summary.json", "annotations.safetensors", "maps.safetensors", "diagnosis", "escalated"),
        "select": ("index.csv",),
        "reproduce": ("grid.yaml", "cells.json", "table.md")}
_COMMON = ("config.yaml", "tensorboard", "report.html")
_SEED_DIR = re.compile(r"seed\d+")


@dataclass(frozen=True)
class FoundRun:
    """The run a folder holds: which command wrote it (``None``: an older run that does not say),
    whether it finished, and where it stopped, in words."""

    command: str | None
    finished: bool
    where: str

    def describe(self) -> str:
        """``a finished treat run (summary.json)``, ``an interrupted train run (after epoch 3 of 15)``."""
        if self.command is None:
            return f"an earlier model-doctor run ({self.where})"
        return f"a finished {self.command} run ({self.where})" if self.finished else \
            f"an interrupted {self.command} run ({self.where})"


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError):
        return 0


def _command_of(out: Path, cfg: dict[str, Any]) -> str | None:
    """The command from ``config.yaml`` (``resolved.command``), else from the files only it writes."""
    told = (cfg.get("resolved") or {}).get("command") if isinstance(cfg.get("resolved"), dict) else None
    if told in COMMANDS:
        return told
    has = lambda name: (out / name).exists()
    if has("grid.yaml"):
        return "reproduce"
    if has("diagnosis.json") or has("estimate.json"):
        return "diagnose"
    if has("examine_summary.json") or has("examination.json"):
        return "examine"
    if has("index.csv"):
        return "select"
    if has("escalated") or any(_SEED_DIR.fullmatch(p.name) for p in out.iterdir() if p.is_dir()):
        return "treat"
    if has("checkpoint.pt") or has("model.safetensors") or has("summary.json"):
        return "train"
    return None


def found_run(out: str | os.PathLike) -> FoundRun | None:
    """The model-doctor run ``out`` holds, or ``None`` (no folder, or none of our files in it)."""
    out = Path(out)
    if not out.is_dir():
        return None
    cfg = _yaml(out / "config.yaml")
    command = _command_of(out, cfg)
    if command is None:
        return FoundRun(None, False, "config.yaml") if (out / "config.yaml").is_file() else None
    if (out / _FINAL[command]).is_file():
        return FoundRun(command, True, _FINAL[command])
    if command == "treat":
        return FoundRun(command, False, _treat_where(out, cfg))
    if command == "train":
        epochs = (cfg.get("train") or {}).get("epochs", "?")
        done = _lines(out / "metrics.jsonl")
        return FoundRun(command, False, f"stopped after epoch {done} of {epochs}" if done else
                        "stopped before its first epoch ended")
    if command == "reproduce":
        cells = sum(1 for _ in out.rglob("result.json"))
        return FoundRun(command, False, f"stopped with {cells} finished cell{'s' * (cells != 1)}")
    return FoundRun(command, False, f"no {_FINAL[command]} yet")


def _treat_where(out: Path, cfg: dict[str, Any]) -> str:
    """Where an interrupted ``treat`` stopped: the round, seed, arm and epoch of the arm it was training."""
    rounds = [("the first round", out, cfg)]
    if (out / "escalated").is_dir():
        rounds.append(("the escalated round", out / "escalated", _yaml(out / "escalated" / "config.yaml") or cfg))
    name, base, rcfg = rounds[-1]
    treat = rcfg.get("treat") or {}
    seeds = treat.get("seeds") or sorted(int(p.name[4:]) for p in base.iterdir() if _SEED_DIR.fullmatch(p.name))
    finished, last = 0, None
    for seed in seeds:
        seed_dir = base / f"seed{seed}"
        for arm in (seed_dir / a for a in _arm_order(treat, seed_dir)):
            if (arm / "result.json").is_file():
                finished, last = finished + 1, f"seed {seed}, arm {arm.name}"
                continue
            done = _lines(arm / "metrics.jsonl")
            return (f"stopped in {name} at seed {seed}, arm {arm.name}, after epoch {done} of "
                    f"{treat.get('epochs', '?')}; {finished} arm{'s' * (finished != 1)} of that round finished")
    if last is None:
        return f"stopped in {name} before any arm finished"
    return f"stopped in {name} after {finished} finished arm{'s' * (finished != 1)} (last: {last})"


def _arm_order(treat: dict[str, Any], seed_dir: Path) -> list[str]:
    """The arms of a seed in the order ``treat`` trains them (treated per weight, then the control),
    as far as they were started."""
    betas = treat.get("beta", 0.0)
    betas = betas if isinstance(betas, list) else [betas]
    names = [f"treated-beta{float(b):g}" for b in betas] if len(betas) > 1 else ["treated"]
    names += ["control"] if treat.get("control", True) else []
    return [n for n in names if (seed_dir / n).is_dir()]


def claim(out: str | os.PathLike, command: str, resume: bool = False, overwrite: bool = False,
          flag: str = "--out") -> FoundRun | None:
    """Check ``out`` before ``command`` writes into it; return the run found there (if any).

    No run there: go on. A run of ``command``: with ``resume`` go on (the command continues it);
    with ``overwrite`` remove that run's files (:data:`_OWN`) and go on; with neither, a one-line
    error and the folder left byte-identical. A run of another command: always an error (its files
    may be this run's inputs). Raises ``ValueError`` with the line."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite were both given; pass --resume to continue the run in "
                         f"{flag}, or --overwrite to start it over")
    out = Path(out)
    holder = lock_holder(out) if out.is_dir() else None
    if holder:
        raise ValueError(f"output folder {str(out)!r} is in use by {holder}; wait for it or choose another {flag}")
    run = found_run(out)
    if run is None:
        return None
    if run.command is not None and run.command != command:
        raise ValueError(f"{flag} {str(out)!r} holds {run.describe()}, not a {command} run; choose another {flag} "
                         "(its files may be this run's inputs)")
    if resume:
        return run
    if overwrite:
        _remove_own(out, command)
        return run
    raise ValueError(f"{flag} {str(out)!r} already holds {run.describe()}; pass --resume to continue it, or --overwrite "
                     f"to start over (removes that run's files), or choose another {flag}")


def _remove_own(out: Path, command: str) -> None:
    """Remove what ``command`` wrote into ``out`` (and a stale lock), nothing else."""
    names = list(_COMMON) + list(_OWN[command])
    if command == "treat":
        names += [p.name for p in out.iterdir() if p.is_dir() and _SEED_DIR.fullmatch(p.name)]
    if command == "select":
        names += _select_files(out)
    if command == "reproduce":
        names += [d for d in ((_yaml(out / "grid.yaml").get("datasets")) or []) if isinstance(d, str) and "/" not in d]
    for name in dict.fromkeys(names):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    lock = out / ".model-doctor.lock"
    if lock.exists() and lock_holder(out) is None:
        lock.unlink(missing_ok=True)


def annotated(stub: Path) -> bool:
    """Whether a LabelMe JSON holds shapes: the user's work, which no command overwrites."""
    try:
        data = json.loads(stub.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return stub.exists()  # unreadable: not ours to judge, so kept
    return bool(isinstance(data, dict) and data.get("shapes"))


def _select_files(out: Path) -> list[str]:
    """The images and empty LabelMe stubs ``select`` wrote (from its ``index.csv``); an image whose
    JSON holds shapes is kept with it."""
    try:
        rows = list(csv.DictReader((out / "index.csv").read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    files = []
    for row in rows:
        rel = (row.get("file") or "").strip()
        if not rel or rel.startswith(("/", "..")) or ".." in Path(rel).parts:
            continue
        stub = (out / rel).with_suffix(".json")
        if annotated(stub):
            continue
        files += [rel, str(Path(rel).with_suffix(".json"))]
    return files
