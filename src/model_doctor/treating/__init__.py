"""``model_doctor.treat``: the whole treatment as one library call, beside ``diagnose``.

A CE-only control and the treated arms (one per weight) fine-tune copies of your model over
seeds with the identical schedule; each arm's epoch and the weight are chosen on held-out
annotated images or validation data (never the test split); the test split is read once, at
the end; the verdict compares treated with control over the seeds. The CLI's ``treat`` is a
thin adapter onto this call (it loads the model and data from files).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..config import Config
from ..data.base import class_names_of, sized
from ..data.groups import load_groups
from ..diagnosis import Diagnosis
from ..distributed import is_main
from ..io import load_state_dict
from ..report.artifacts import save_treatment_maps
from ..runtime import Log, check_resume, out_dir, write_json
from ..study import diverged_arms
from ..summary import TreatSummary, read_treat_summary
from ..training import split_train_val
from .rounds import arm_names, escalate, run_seed
from .setup import Masked, annotated_pools, prepare
from .summarize import diverged_line, say, summarize

__all__ = ["treat", "TreatResult", "Masked", "annotated_pools"]


@dataclass
class TreatResult:
    """What :func:`treat` returns, and what ``TreatResult.load(folder)`` reads back: the pooled and
    per-seed figures, the chosen settings and the verdict (``summary``, as ``summary.json``), and
    the models of the reported round (in memory after a run; from ``out`` after a load)."""

    summary: TreatSummary
    out: Path
    models: dict[tuple[int, str], nn.Module] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> list[str]:
        """The verdict's lines, as printed."""
        return [v["text"] for v in self.summary.verdict]

    @property
    def chosen(self) -> dict[str, Any]:
        """The chosen settings: selection rule, weight per seed, floor, escalation."""
        return self.summary.selection

    @property
    def diverged(self) -> list[dict[str, Any]]:
        """The reported arms whose training diverged (empty when none did)."""
        return self.summary.diverged

    def weights_path(self, seed: int, arm: str = "treated") -> Path:
        """The file of ``arm`` (``treated`` = the chosen weight's arm, or ``control``) for ``seed``."""
        row = next((r for r in self.summary.runs if r["seed"] == seed), None)
        if row is None:
            raise ValueError(f"seed {seed} is not in this result (seeds: {[r['seed'] for r in self.summary.runs]})")
        name = arm
        if arm == "treated" and len(self.summary.selection.get("weights") or row.get("selection_scores") or [0]) > 1:
            name = f"treated-beta{float(row['chosen_beta']):g}"
        return self.out / (row.get("dir") or f"seed{seed}") / name / "model.safetensors"   # no "dir": before escalation

    def history(self, seed: int, weight: float | None = None, arm: str = "treated") -> list[dict[str, Any]]:
        """Per epoch, what ``arm`` logged for ``seed`` (losses, validation and selection figures); with
        several weights, ``weight`` names the treated arm (default: the chosen one)."""
        path = self.weights_path(seed, arm).parent
        if weight is not None and arm == "treated":
            path = path.parent / f"treated-beta{float(weight):g}"
        return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]

    def model(self, seed: int, arm: str = "treated", like: nn.Module | None = None) -> nn.Module:
        """The model of ``arm`` for ``seed``: in memory after a run, else its weights loaded into a copy of ``like``."""
        path = self.weights_path(seed, arm)
        if (seed, path.parent.name) in self.models:
            return self.models[(seed, path.parent.name)]
        if like is None:
            raise ValueError(f"{path} is on disk only; pass like=<a model of the same architecture> to load it")
        model = copy.deepcopy(like)
        model.load_state_dict(load_state_dict(path))
        return model

    def to_dict(self) -> dict[str, Any]:
        return self.summary.to_dict()

    def save(self, folder: str | Path | None = None) -> Path:
        """``summary.json`` (and, for another folder, the reported models' weights) into ``folder`` (default ``out``)."""
        dest = Path(folder) if folder is not None else self.out
        dest.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != self.out.resolve():
            for row in self.summary.runs:
                for arm in ("treated", "control"):
                    src = self.weights_path(row["seed"], arm)
                    if src.is_file():
                        target = dest / src.relative_to(self.out)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(src, target)
        write_json(dest / "summary.json", self.summary.to_dict())
        return dest

    @classmethod
    def load(cls, folder: str | Path) -> TreatResult:
        """A finished treatment's folder (``summary.json``; models load on demand with :meth:`model`)."""
        return cls(read_treat_summary(Path(folder) / "summary.json"), Path(folder))


def treat(model: nn.Module, train: Dataset, test: Dataset | Callable[[], Dataset], *, out: str | Path,
          masks: Mapping[int, torch.Tensor] | Masked | None = None, val: Dataset | None = None,
          diagnosis: Diagnosis | str | Path | None = None, config: Config | None = None,
          meta: dict[str, Any] | None = None, log: Log = print, **options: Any) -> TreatResult:
    """Treat ``model`` against a CE-only control over seeds and say whether it helped.

    Args:
        model: the trained original (left unchanged; every arm fine-tunes a copy).
        train: the training set of ``(image, label)``; validation is carved from it with a fixed
            seed unless ``val`` is given. Items that carry ``(image, label, mask, has_mask)`` are
            their own annotations.
        test: the test set, or a function that loads it: read once, after every arm has finished.
        out: the run folder (each arm's checkpoints, weights and ``metrics.jsonl``, ``summary.json``);
            one that holds a treatment is refused unless ``resume=True`` or ``overwrite=True``.
        masks: foreground masks ``{index into train: bool [H, W]}`` of a few annotated images per
            class (boxes are refined by GrabCut unless ``refine="none"``), or ``px -> dataset``.
        diagnosis: the original's :class:`~model_doctor.Diagnosis` (or its folder) for the channel
            term; made on the training part when ``alpha > 0`` and none is given.
        config: a full :class:`~model_doctor.config.Config` (optimiser, diagnosis, runtime); options win.
        meta: the model's description (``num_classes``, ``classes``, ``default_layers``, ...), when known.
        options: ``treat`` settings by name (``alpha``, ``beta``, ``seeds``, ``epochs``, ``lr``,
            ``space_method``, ...: the fields of ``TreatConfig``), and ``resume`` / ``overwrite``.

    Returns:
        A :class:`TreatResult` (also written as ``out/summary.json``).
    """
    cfg = _config(config, out, options)
    out = out_dir(cfg, "treat")
    meta = meta or _meta_of(model, train)
    if cfg.treat.lr is None:
        cfg.treat.lr = 0.01
        log("fine-tuning at learning rate 0.01 (lr= to change)")
    tr, va = (Subset(train, range(sized(train))), val) if val is not None else \
        split_train_val(train, cfg.train.val_fraction, cfg.train.split_seed)
    check_resume(cfg, out)
    test_set = _once(test)
    s = prepare(cfg, out, log, model, meta, train, tr, va, _masked(train, masks), diagnosis,
                test_set() if cfg.treat.groups else None)
    arms = arm_names(cfg, s)
    first = {seed: run_seed(cfg, s, arms, seed, out / f"seed{seed}", log) for seed in cfg.treat.seeds}
    cfg, studies, s.escalation = escalate(cfg, s, arms, first, out, log)
    data = test_set()  # the test split is read here, once, after every arm has finished
    summary = summarize(cfg, s, studies, data, load_groups(cfg.treat.groups, data, "test") if cfg.treat.groups else None)
    summary.diverged = [{"round": "escalated" if studies is not first else "first", **d}
                        for d in diverged_arms(studies, ["treated", "control"], s.ceiling)]
    if summary.diverged:
        summary.verdict.insert(0, diverged_line(cfg, summary.diverged))
    if is_main():
        shown = studies[next(iter(studies))]
        report_arms = ["treated"] + (["control"] if cfg.treat.control else [])
        save_treatment_maps(out, s.original, {a: shown.arm(a).model for a in report_arms}, data, s.layers[-1])
    write_json(out / "summary.json", summary.to_dict())
    say(cfg, summary, studies, out, log)
    summary = TreatSummary.from_dict(json.loads(json.dumps(summary.to_dict())))  # as TreatResult.load reads it back
    return TreatResult(summary, out, {(seed, name): run.model for seed, st in studies.items() for name, run in st.arms.items()})


def _config(config: Config | None, out: str | Path, options: dict[str, Any]) -> Config:
    """``config`` (a copy) with ``options`` set: treat fields by name, ``resume`` / ``overwrite`` on runtime."""
    from ..config import _merge

    cfg = copy.deepcopy(config) if config is not None else Config()
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    runtime = {k: values.pop(k) for k in ("resume", "overwrite") if k in values}
    _merge(cfg, {"treat": values, "runtime": runtime}, "")   # type-checked; an unknown name is a one-line error
    cfg.out = str(out)
    return cfg


def _once(test: Dataset | Callable[[], Dataset]) -> Callable[[], Dataset]:
    """The test set, loaded on first use and kept (a function that loads it is called once)."""
    loaded: list[Dataset] = []

    def get() -> Dataset:
        if not loaded:
            loaded.append(test() if callable(test) and not isinstance(test, Dataset) else test)
        return loaded[0]

    return get


def _masked(train: Dataset, masks: Mapping[int, torch.Tensor] | Masked | None) -> Masked | None:
    """Annotations as ``px -> dataset``: a mapping of masks by index is paired with ``train``."""
    if masks is None or callable(masks):
        return masks
    from ..data.masks import MaskedDataset

    return lambda px: MaskedDataset(train, masks, expand=px)


def _meta_of(model: nn.Module, train: Dataset) -> dict[str, Any]:
    """What the treatment needs to know of a model it was handed: classes (from one forward pass), channels, device."""
    x = train[0][0]
    p = next(model.parameters())
    was = model.training
    model.eval()
    with torch.no_grad():
        n = int(model(x[None].to(p.device, p.dtype)).shape[-1])
    model.train(was)
    return {"model": None, "in_channels": int(x.shape[0]), "num_classes": n, "image_size": int(x.shape[-1]), "small": None,
            "classes": class_names_of(train, n), "default_layers": "auto", "device": str(p.device)}
