"""``model-doctor reproduce GRID.yaml``: the paper's Table 1 as a resumable grid.

models × datasets × variants × seeds. Per (model, dataset, seed) the original ("base") is
trained once and diagnosed on its training part; every other variant fine-tunes a copy of it with
the same schedule, seed and data order: ``control`` (CE only — the comparison the paper lacks),
``channel`` (+Channel, Eq. 5), ``space`` (+Space, Eq. 6) and ``all`` (both). Validation comes from
the training split; the test split is read once per finished cell. Every cell is a cached run
(``result.json`` last), so ``--resume`` skips finished cells and resumes an interrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .experiment import RUN_FILE, fmt, subset
from .io import atomic_write_text

__all__ = ["GridConfig", "load_grid", "plan", "run_grid", "grid_table", "VARIANTS"]

BUILTIN_GRIDS = ("cpu-small", "paper")
VARIANTS = ("base", "control", "channel", "space", "all")
_LABELS = {"base": "base", "control": "control (CE)", "channel": "+Channel", "space": "+Space", "all": "+All"}
_GREY = ("digits", "mnist", "fashion-mnist", "decoy-digits", "decoy-fashion-mnist")


#: the grid's defaults where they are not the commands' (the paper's Table-1 setting sized for a CPU:
#: the channel term at α 10 with per-element-mean normalisation, the space term at β 100, J = 1 in the
#: constraint passes, 20 annotated images per class); every other option and its meaning is the
#: command's own (:mod:`model_doctor.config.sections`), so a grid restates nothing
GRID_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"epochs": 15, "lr": 0.05},
    "treat": {"epochs": 5, "lr": 0.01, "alpha": 10.0, "beta": 100.0, "noise_draws": 1, "annotated_per_class": 20},
    "diagnose": {},
}


def _section(name: str) -> Callable[[], Any]:
    """A grid section: the command's config section with the grid's defaults."""
    from .config import DiagnoseConfig, TrainConfig, TreatConfig

    cls = {"train": TrainConfig, "treat": TreatConfig, "diagnose": DiagnoseConfig}[name]
    return lambda: dataclasses.replace(cls(), **GRID_DEFAULTS[name])


@dataclass
class GridConfig:
    models: list[str] = field(default_factory=lambda: ["smallcnn"])
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    root: str | None = None          # torchvision dataset root
    download: bool = False
    image_size: dict[str, int] = field(default_factory=dict)   # per dataset (default per dataset)
    train_subset: int | None = None  # first N of a seeded permutation of the training split (None: all)
    test_subset: int | None = None
    masks: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset -> {path, format} (decoy-* have their own)
    train: Any = field(default_factory=_section("train"))       # TrainConfig
    treat: Any = field(default_factory=_section("treat"))       # TreatConfig
    diagnose: Any = field(default_factory=_section("diagnose"))  # DiagnoseConfig
    out: str = "runs/reproduce"
    source: str | None = None        # the grid file or shipped name it was read from (set by load_grid)


def _build(cls: Any, values: dict[str, Any], where: str, base: Any = None) -> Any:
    """``cls(**values)`` (or ``base`` with ``values`` set), unknown keys a one-line error."""
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'the grid'} must be a mapping, got {values!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ValueError(f"unknown grid key {where}{unknown[0]!r}; valid keys: {', '.join(names)}")
    kwargs = {}
    for k, v in values.items():
        if cls is GridConfig and k in GRID_DEFAULTS:
            first = _section(k)()
            kwargs[k] = _build(type(first), v, f"{k}.", first)
        else:
            kwargs[k] = v
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def load_grid(path: str | Path) -> GridConfig:
    """Read a grid YAML (``yaml.safe_load``); unknown keys and variants are one-line errors."""
    p = Path(path)
    if not p.is_file() and str(path) in BUILTIN_GRIDS:
        p = Path(__file__).parent / "grids" / f"{path}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"grid file {str(path)!r} not found; pass a YAML grid path or one of "
                                f"{', '.join(BUILTIN_GRIDS)} (the shipped grids)")
    grid = _build(GridConfig, yaml.safe_load(p.read_text()) or {}, "")
    grid.source = str(path)
    bad = [v for v in grid.variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant {bad[0]!r}; use some of {', '.join(VARIANTS)}")
    from .models import model_names

    unknown = [m for m in grid.models if m not in model_names() and not m.startswith(("torchvision:", "timm:", "file:"))]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r} in the grid; use one of {', '.join(model_names())} "
                         "or torchvision:NAME / timm:NAME / file:path.py:factory")
    if not grid.models or not grid.datasets or not grid.seeds:
        raise ValueError("the grid needs at least one model, one dataset and one seed")
    return grid


def plan(grid: GridConfig) -> str:
    """What the grid will run: its size, and which cells are already finished under ``grid.out``."""
    out = Path(grid.out)
    total = done = 0
    for ds in grid.datasets:
        for m in grid.models:
            for s in grid.seeds:
                for v in grid.variants:
                    total += 1
                    done += (out / ds / m / f"seed{s}" / v / RUN_FILE).is_file()
    return (f"{len(grid.models)} models x {len(grid.datasets)} datasets x {len(grid.variants)} variants x "
            f"{len(grid.seeds)} seeds = {total} cells; {done} finished under {out}")


def _data(grid: GridConfig, name: str):
    from .data.datasets import load_dataset
    from .training import split_train_val

    kw: dict[str, Any] = dict(root=grid.root, image_size=grid.image_size.get(name), in_channels=1 if name in _GREY else 3,
                              download=grid.download)
    train_full = subset(load_dataset(name, "train", **kw), grid.train_subset, seed=0)
    test = subset(load_dataset(name, "test", **kw), grid.test_subset, seed=0)
    masked = None
    if name.startswith("decoy-") or name in grid.masks:
        from .data.masks import ExpandedMasks, scaled_expansion

        size = int(train_full[0][0].shape[-1])
        expand = grid.treat.expand if grid.treat.expand is not None else scaled_expansion(30, size)
        if name in grid.masks:
            from .data.annotations import load_masks
            from .data.workflow import with_masks

            spec = grid.masks[name]
            masked = with_masks(train_full, load_masks(spec.get("format", "labelme"), spec["path"],
                                                       dataset_root=spec["path"]), expand)
        else:
            masked = ExpandedMasks(train_full, expand)
    tr, va = split_train_val(train_full, 0.1, seed=0)
    tr_masked: Any = torch.utils.data.Subset(masked, tr.indices) if masked is not None else None
    if tr_masked is not None and grid.treat.annotated_per_class is not None:
        from .data.masks import LimitedMasks

        tr_masked = LimitedMasks(tr_masked, grid.treat.annotated_per_class, seed=0)  # annotations in the training part
    n_cls = len(getattr(test.dataset if isinstance(test, torch.utils.data.Subset) else test, "classes", [])) or \
        int(max(int(tr[i][1]) for i in range(len(tr)))) + 1
    return tr, va, test, tr_masked, int(train_full[0][0].shape[0]), int(train_full[0][0].shape[-1]), n_cls


def run_grid(grid: GridConfig, log: Callable[[str], None] = print, resume: bool = False,
             overwrite: bool = False) -> dict[str, Any]:
    """Run every cell; returns ``{"cells": [...], "skipped": [...]}`` and writes ``table.md`` and
    ``cells.json`` under ``grid.out``. A folder that holds a grid is refused unless ``resume``
    (finished cells load, an interrupted one resumes) or ``overwrite`` (its files removed first)."""
    from .io import atomic_write_json
    from .rundir import claim

    out = Path(grid.out)
    claim(out, "reproduce", resume, overwrite, flag="--out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "grid.yaml", yaml.safe_dump(dataclasses.asdict(grid), sort_keys=False))
    cells: list[dict[str, Any]] = []
    skipped: list[str] = []
    for ds in grid.datasets:
        data = _data(grid, ds)
        for model_name in grid.models:
            for seed in grid.seeds:
                _run_cell(grid, data, ds, model_name, seed, cells, skipped, log)
    result = {"cells": cells, "skipped": skipped}
    atomic_write_json(out / "cells.json", result)
    atomic_write_text(out / "table.md", grid_table(grid, result))
    log(f"{len(cells)} cells, {len(skipped)} skipped -> {out / 'table.md'}")
    return result


def _run_cell(grid: GridConfig, data: tuple, ds: str, model_name: str, seed: int, cells: list[dict[str, Any]],
              skipped: list[str], log: Callable[[str], None]) -> None:
    """One (dataset, model, seed): the base trained from scratch, then every variant as one study."""
    from .diagnosis import Diagnosis, diagnose
    from .models import build_model, default_layers
    from .study import from_scratch, run_study
    from .training import FitConfig, evaluate

    tr, va, te, tr_masked, in_ch, size, n_cls = data
    layer = grid.treat.layers or default_layers(model_name)
    layers = [layer] if isinstance(layer, str) else list(layer)
    cell_dir = Path(grid.out) / ds / model_name / f"seed{seed}"
    where = f"{ds} {model_name} seed {seed}"

    def fresh():
        torch.manual_seed(seed)
        return build_model(model_name, in_channels=in_ch, num_classes=n_cls, image_size=size)

    was_done = (cell_dir / "base" / RUN_FILE).is_file()
    run = from_scratch(cell_dir / "base", fresh, tr, va, FitConfig(
        epochs=grid.train.epochs, lr=grid.train.lr, batch_size=grid.train.batch_size, seed=seed), n_cls)
    base, res = run.model, {**run.result, "test_acc": evaluate(run.model, te, n_cls)["acc"]}
    log(f"{where} base: test {res['test_acc']:.4f}" + (" (cached)" if was_done else ""))
    cells.append({"dataset": ds, "model": model_name, "seed": seed, "variant": "base", **res})
    rest = [v for v in grid.variants if v != "base"]
    if not rest:
        return
    diag_dir = cell_dir / "diagnosis"
    if (diag_dir / "diagnosis.json").is_file():
        diag = Diagnosis.load(diag_dir)
    else:
        d = grid.diagnose
        try:
            diag = diagnose(base, tr, layers=layers, num_classes=n_cls, samples_per_class=d.samples_per_class,
                            min_confidence=d.min_confidence, noise_draws=d.noise_draws, allow_empty_classes=True)
        except ValueError as exc:  # e.g. an untrained base with no confident sample: skip, reported
            skipped.append(f"{where} {', '.join(rest)}: cannot diagnose the base ({exc})")
            return
        diag.save(diag_dir)
    arms = _variant_arms(grid, rest, diag, layers, seed, tr_masked, where, skipped)
    t = grid.treat
    study = run_study(base, tr, va, arms, FitConfig(epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=seed),
                      n_cls, cell_dir)
    for name, run in study.arms.items():  # the test split, read once per finished variant
        r = {**run.result, "test_acc": evaluate(run.model, te, n_cls)["acc"]}
        log(f"{where} {name}: test {r['test_acc']:.4f}" + (" (cached)" if run.cached else ""))
        cells.append({"dataset": ds, "model": model_name, "seed": seed, "variant": name, **r})


def _variant_arms(grid: GridConfig, variants: list[str], diag: Any, layers: list[str], seed: int, tr_masked: Any,
                  where: str, skipped: list[str]) -> list[Any]:
    """control (CE only), channel (Eq. 5), space (Eq. 6) and all (both) as study arms; a space
    variant without masks is skipped and reported."""
    from .study import ArmSpec
    from .treatment import ModelDoctorLoss

    t = grid.treat
    arms = []
    for variant in variants:
        alpha = t.alpha if variant in ("channel", "all") else 0.0
        beta = t.beta if variant in ("space", "all") else 0.0
        if beta and tr_masked is None:
            skipped.append(f"{where} {variant}: no masks for {where.split()[0]} (set masks.{where.split()[0]}: "
                           "{path, format} in the grid)")
            continue
        terms = None if variant == "control" else (
            lambda a=alpha, b=beta: ModelDoctorLoss(diag, layers, alpha=a, beta=b, noise_draws=t.noise_draws,
                                                    variant=t.variant, seed=seed))
        arms.append(ArmSpec(variant, terms, train=tr_masked if beta else None))
    return arms


def grid_table(grid: GridConfig, result: dict[str, Any]) -> str:
    """Table-1-style markdown: test accuracy (%) mean ± std over seeds, and Δ of each treated
    variant against the CE-only control (paired by seed)."""
    import datetime
    import os
    import platform

    cells = result["cells"]
    variants = [v for v in VARIANTS if v in grid.variants]
    treated = [v for v in ("channel", "space", "all") if v in variants]
    t = grid.treat
    lines = [f"# Table-1 grid ({grid.out})", "",
             f"Command: `model-doctor reproduce {grid.source or 'GRID.yaml'}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
             f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}  ", f"Date: {datetime.date.today().isoformat()}", "",
             f"Base: {grid.train.epochs} epochs, SGD lr {grid.train.lr}, cosine, best epoch on a 10 % validation split "
             f"of the training data. Variants fine-tune the base for {t.epochs} epochs at lr {t.lr} with the same seed and "
             f"data order: α={t.alpha:g} (+Channel), β={t.beta:g} (+Space), J={t.noise_draws}, layers "
             f"{t.layers or 'per-architecture default'}, {t.annotated_per_class} annotated images per class. Training "
             f"subset: {grid.train_subset or 'all'}; test subset: {grid.test_subset or 'all'}.", "",
             "Test accuracy (%), mean ± std over seeds " + ", ".join(map(str, grid.seeds)) + "."]
    if "control" in variants:
        lines[-1] += " Δ = variant − CE-only control with the same schedule and seed."
    for ds in grid.datasets:
        head = ["model"] + [_LABELS[v] for v in variants] + ([f"Δ {_LABELS[v]}" for v in treated] if "control" in variants else [])
        note = " (test split with shuffled decoys: accuracy there measures the shortcut)" if ds.startswith("decoy-") else ""
        lines += ["", f"### {ds}{note}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in grid.models:
            acc = {v: {c["seed"]: c["test_acc"] for c in cells if (c["dataset"], c["model"], c["variant"]) == (ds, m, v)}
                   for v in variants}
            row = [m] + [fmt(list(acc[v].values())) for v in variants]
            if "control" in variants:
                for v in treated:
                    paired = [acc[v][s] - acc["control"][s] for s in acc[v] if s in acc["control"]]
                    row.append(fmt(paired, signed=True))
            lines.append("| " + " | ".join(row) + " |")
    if result.get("skipped"):
        lines += ["", f"Skipped ({len(result['skipped'])}):"] + [f"- {s}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"
