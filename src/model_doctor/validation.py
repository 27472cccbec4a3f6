"""Values no command can use, as one-line errors naming the value and the fix: the one check every
job and library call runs on a :class:`~model_doctor.config.Config` before any work."""

from __future__ import annotations

from .config import OBJECT_COLOUR, SELECT_RULES, Config
from .precision import check_precision

__all__ = ["validate"]


def validate(cfg: Config) -> Config:
    """Values no command can use, as one-line errors (0 is never "use the default")."""
    checks = [("diagnose.batch_size", cfg.diagnose.batch_size), ("examine.batch_size", cfg.examine.batch_size),
              ("train.batch_size", cfg.train.batch_size), ("treat.batch_size", cfg.treat.batch_size),
              ("train.epochs", cfg.train.epochs), ("treat.epochs", cfg.treat.epochs),
              ("treat.pool_batch", cfg.treat.pool_batch)]
    for name, value in checks:
        if value < 1:
            raise ValueError(f"{name}={value}; use a positive integer")
    for name, optional in (("data.image_size", cfg.data.image_size), ("model.in_channels", cfg.model.in_channels),
                        ("model.num_classes", cfg.model.num_classes), ("treat.annotated_per_class", cfg.treat.annotated_per_class)):
        if optional is not None and optional < 1:
            raise ValueError(f"{name}={optional}; use a positive integer (or leave it unset for the default)")
    if cfg.examine.limit is not None and cfg.examine.limit < 1:
        raise ValueError(f"examine.limit={cfg.examine.limit}; use a positive number of samples (or leave it unset for all)")
    _check_ranges(cfg)
    check_precision(cfg.runtime.precision)
    if cfg.treat.tail_bn not in ("train", "eval"):
        raise ValueError(f"treat.tail_bn={cfg.treat.tail_bn!r}; use 'train' (default) or 'eval' (docs/method.md)")
    for name, px in (("treat.erode", cfg.treat.erode), ("examine.erode", cfg.examine.erode)):
        if not isinstance(px, int) or isinstance(px, bool) or px < 0:
            raise ValueError(f"{name}={px!r}; use a whole number of pixels >= 0 (0 = no erosion)")
    if cfg.treat.object_colour not in OBJECT_COLOUR:
        raise ValueError(f"treat.object_colour={cfg.treat.object_colour!r}; use 'unknown' (default), 'own' (an object's "
                         "colour is part of its class) or 'cue' (a colour over the object may be a shortcut)")
    if cfg.treat.partners not in ("other", "any"):
        raise ValueError(f"treat.partners={cfg.treat.partners!r}; use 'other' (another class's background) or 'any' "
                         "(any other annotated image's)")
    if not isinstance(cfg.treat.kl_weight, (int, float)) or isinstance(cfg.treat.kl_weight, bool) or not cfg.treat.kl_weight >= 0:
        raise ValueError(f"treat.kl_weight={cfg.treat.kl_weight!r}; use a number >= 0 (1 = default, 0 = no KL term)")
    share = cfg.treat.min_val_share
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
        raise ValueError(f"treat.min_val_share={share!r}; use a number in [0, 1] (0.5 = default, 0 = no floor)")
    below = cfg.treat.escalate_below
    if not isinstance(below, (int, float)) or isinstance(below, bool) or not 0 <= below <= 1:
        raise ValueError(f"treat.escalate_below={below!r}; use a number in [0, 1] (0.5 = default, 0 = never escalate)")
    more = cfg.treat.escalate_epochs
    if more is not None and (not isinstance(more, int) or isinstance(more, bool) or more < 1):
        raise ValueError(f"treat.escalate_epochs={more!r}; use a whole number >= 1 (default: 3 × treat.epochs)")
    if cfg.treat.select_rule not in SELECT_RULES:
        raise ValueError(f"treat.select_rule={cfg.treat.select_rule!r}; use 'auto' (default), 'swap', 'balanced', 'mean' "
                         "or 'groups'")
    for name, method in (("treat.refine", cfg.treat.refine), ("examine.refine", cfg.examine.refine)):
        if method not in ("grabcut", "none"):
            raise ValueError(f"{name}={method!r}; use 'grabcut' (default) or 'none'")
    if len(set(cfg.treat.seeds)) != len(cfg.treat.seeds) or not cfg.treat.seeds:
        raise ValueError(f"treat.seeds={cfg.treat.seeds}; give one or more distinct seeds (e.g. --seeds 0 1 2)")
    if not cfg.select.low_confidence:
        raise ValueError("select.low_confidence=False: only low-confidence selection is implemented; leave it on")
    return cfg


def _check_ranges(cfg: Config) -> None:
    """Numbers outside the range their meaning allows, as one-line errors."""
    import math

    d, t, tr, ex = cfg.diagnose, cfg.treat, cfg.train, cfg.examine
    unit = [("diagnose.theta", d.theta), ("diagnose.min_confidence", d.min_confidence)] + \
        ([("treat.v", t.v)] if t.v is not None else [])
    for name, value in unit:
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name}={value}; it is a fraction, use a value in [0, 1]")
    for name, value in (("train.val_fraction", tr.val_fraction),):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}={value}; use a fraction in (0, 1), e.g. 0.1")
    if not 0.0 <= t.holdout < 1.0:
        raise ValueError(f"treat.holdout={t.holdout}; use a fraction in [0, 1), e.g. 0.25")
    positive = [("train.lr", tr.lr)] + ([("treat.lr", t.lr)] if t.lr is not None else [])
    non_negative = [("diagnose.noise", d.noise), ("diagnose.noise_draws", d.noise_draws), ("treat.noise_draws", t.noise_draws),
                    ("treat.alpha", t.alpha), ("treat.rrr", t.rrr), ("train.weight_decay", tr.weight_decay),
                    ("train.momentum", tr.momentum), ("treat.warmup_steps", t.warmup_steps)] + \
        ([("treat.noise", t.noise)] if t.noise is not None else [])
    for name, value in positive:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value}; use a finite positive learning rate (e.g. 0.01)")
    for name, value in non_negative:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value}; use a finite value >= 0")
    for name, value in (("diagnose.samples_per_class", d.samples_per_class), ("examine.top_k", ex.top_k),
                        ("treat.every", t.every), ("select.per_class", cfg.select.per_class)):
        if value < 1:
            raise ValueError(f"{name}={value}; use a positive integer")
    if cfg.runtime.workers is not None and cfg.runtime.workers < 0:
        raise ValueError(f"runtime.workers={cfg.runtime.workers}; use 0 (load in the main process) or more")
