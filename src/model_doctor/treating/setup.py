"""What every seed of a treatment shares, built from objects: the original, the split, the annotated
pools, the constrained layers, the diagnosis, the selection floor and the guessing ceiling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset, Subset

from ..config import Config
from ..data.groups import load_groups
from ..diagnosis import Diagnosis, diagnose
from ..distributed import barrier, is_main
from ..report.artifacts import save_annotations
from ..runtime import Log, check_diagnosis, save_run_config, versions, workers
from ..study import guess_ceiling
from ..training import evaluate
from ..treatment.arms import needs_diagnosis, weights_of
from ..treatment.pools import Pools, make_pools
from ..treatment.selection import resolve_rule

__all__ = ["Setup", "prepare", "Masked"]

#: annotations as a function of the expansion in pixels: ``px -> dataset of (image, label, fg, has_mask)``
Masked = Callable[[int], Dataset]


@dataclass
class Setup:
    """What every seed of a treat run shares."""

    original: nn.Module
    meta: dict[str, Any]
    train_full: Any
    train: Any
    val: Any
    betas: list[float]
    pools: Pools | None
    expand: int
    layers: list[str]
    diag: Diagnosis | None
    rule: str = "swap"
    val_groups: tuple[Any, list[str]] | None = None
    floor: float = 0.0  # validation accuracy under which an epoch is chosen last (min_val_share × the original's)
    orig_val: float = float("nan")  # the original's validation accuracy: the floor's base and the summary's figure
    escalation: dict[str, Any] | None = None  # what decided the escalated round (treat.escalate_below), once measured
    ceiling: float | None = None  # validation accuracy no better than guessing (None when the original is no better)

    @property
    def classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def report(self) -> Any:
        """The annotated images the reliance figures are measured on (report set, else selection set)."""
        if self.pools is None:
            return None
        return self.pools.report if self.pools.report is not None else self.pools.select


def prepare(cfg: Config, out: Path, log: Log, original: nn.Module, meta: dict[str, Any], train_full: Any, tr: Any,
            va: Any, masked: Masked | None, diagnosis: Diagnosis | str | Path | None, test_groups: Any = None) -> Setup:
    """Pools, layers and diagnosis; writes config.yaml (and the annotations' figure data)."""
    t = cfg.treat
    betas = weights_of(t.beta)
    if t.groups and test_groups is not None:  # a bad CSV fails now, not after training (file names only)
        load_groups(t.groups, test_groups, "test")
    val_groups = _val_groups(cfg, va, log)
    rule = resolve_rule(t.select_rule, val_groups is not None)
    pools, expand = None, 0
    if any(betas) or t.rrr:
        tr, pools, expand = annotated_pools(cfg, train_full, tr, masked, log, select=rule != "groups")
    save_run_config(cfg, out, {"command": "treat", "versions": versions(), "model": meta, "train_size": len(tr),
                               "val_size": len(va), **({"masks": pools.summary(), "expand": expand} if pools else {})})
    if pools is not None and is_main():
        save_annotations(out, pools)
    layers = _layers(original, meta, t.layers or cfg.diagnose.layers, train_full[0][0])
    diag = None
    if needs_diagnosis(t, betas):  # a given one (object or folder), OUT/diagnosis, or one made now
        where = str(diagnosis) if isinstance(diagnosis, (str, Path)) else str(out / "diagnosis")
        diag = Diagnosis.load(diagnosis) if isinstance(diagnosis, (str, Path)) else diagnosis
        diag = diag or _diagnosis(cfg, original, meta, tr, out, log)
        check_diagnosis(diag, original, meta["num_classes"], where)
        if not t.layers:
            layers = list(diag.layers)
    n_cls = meta["num_classes"]
    orig_eval = evaluate(original, va, n_cls)
    floor, orig_val, ceiling = 0.0, orig_eval["acc"], guess_ceiling(orig_eval["counts"])
    if t.min_val_share and pools is not None and pools.select is not None and rule != "groups":
        floor = t.min_val_share * orig_val
        log(f"selection floor: validation accuracy {100 * floor:.1f} % ({t.min_val_share:g} × the original's "
            f"{100 * orig_val:.1f} %); an epoch under it is chosen only when every epoch is (--min-val-share)")
    return Setup(original, meta, train_full, tr, va, betas, pools, expand, layers, diag, rule, val_groups, floor, orig_val,
                 ceiling=ceiling if orig_val > ceiling else None)


def _val_groups(cfg: Config, val: Any, log: Log) -> tuple[Any, list[str]] | None:
    """The validation images' groups from ``--groups``; None (said once) where it does not label them all."""
    if not cfg.treat.groups:
        return None
    split = "train" if isinstance(val, Subset) else "val"  # carved from train/ when the folder has no val/
    try:
        return load_groups(cfg.treat.groups, val, split)
    except ValueError as exc:
        if cfg.treat.select_rule == "groups":
            raise
        log(f"groups: not used to select ({exc}); choosing by --select-rule swap")
        return None


def _layers(model: nn.Module, meta: dict[str, Any], spec: Any, example: Any) -> list[str]:
    """Layer names from a spec (or the architecture's default; "auto" = the last conv in execution order)."""
    from ..layers import resolve_layers

    return [n for n, _ in resolve_layers(model, spec or meta["default_layers"], example[None])]


def _diagnosis(cfg: Config, original: nn.Module, meta: dict[str, Any], tr: Any, out: Path, log: Log) -> Diagnosis:
    """OUT/diagnosis when a run there saved one, else one made now on the training part."""
    d = cfg.diagnose
    diag_dir = out / "diagnosis"
    if (diag_dir / "diagnosis.json").is_file():
        return Diagnosis.load(diag_dir)
    # diagnosis samples come from the training part only, never from validation
    diag = diagnose(original, tr, layers=d.layers or meta["default_layers"], num_classes=meta["num_classes"],
                    samples_per_class=d.samples_per_class, min_confidence=d.min_confidence, noise=d.noise,
                    noise_draws=d.noise_draws, batch_size=d.batch_size, seed=d.seed, reduce=d.reduce,  # type: ignore[arg-type]  # validated by config
                    theta=d.theta, allow_empty_classes=d.allow_empty_classes, class_names=meta.get("classes"),
                    precision=cfg.runtime.precision, num_workers=workers(cfg, meta["device"]))
    if is_main():
        diag.save(diag_dir)
    barrier()
    log(f"diagnosed the original at {', '.join(diag.layers)} -> {diag_dir}")
    return diag


def annotated_pools(cfg: Config, train_full: Any, tr: Any, masked: Masked | None, log: Log,
                    select: bool = True) -> tuple[Any, Pools, int]:
    """(training part with expanded masks, pools, expansion) for a run that uses masks: ``masked``
    gives the training set with its annotations at an expansion; without it, a dataset whose items
    carry their own masks (``decoy-*``) serves."""
    from ..data.masks import ExpandedMasks, scaled_expansion

    t = cfg.treat
    expand = t.expand if t.expand is not None else scaled_expansion(30, int(train_full[0][0].shape[-1]))
    if masked is not None:
        raw_full, exp_full = masked(0), masked(expand)
    elif len(train_full[0]) >= 4:  # a dataset with its own masks (decoy-*)
        raw_full, exp_full = train_full, ExpandedMasks(train_full, expand)
    else:
        raise ValueError("beta/rrr need foreground masks; pass --masks DIR (see `model-doctor select`) or use a "
                         "dataset with masks (decoy-digits, decoy-fashion-mnist)")
    raw_tr, exp_tr = Subset(raw_full, tr.indices), Subset(exp_full, tr.indices)
    pools = make_pools(raw_tr, exp_tr, t.holdout, t.annotated_per_class, cfg.train.split_seed, t.refine, t.erode, select)
    pools.skipped_report = raw_full.skip_report() if hasattr(raw_full, "skip_report") else "skipped: none"
    log(f"masks: {pools.describe()} (expansion {expand} px for the gradient penalties); annotations {pools.skipped_report}")
    return pools.masked_train, pools, expand
