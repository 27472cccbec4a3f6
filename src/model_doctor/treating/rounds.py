"""The rounds of a treatment: per seed one study (treated arms per weight, then the control), and
the escalated round where the first one left the treated models reading the background."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..config import Config
from ..runtime import Log, fit_config, save_model, save_run_config, versions, warn_skipped
from ..study import ArmSpec, StudyResult, escalation, run_study
from ..treatment.arms import build_terms
from ..treatment.reliance import background_reliance, headline_key
from ..treatment.selection import selector
from .setup import Setup

__all__ = ["arm_names", "run_seed", "escalate"]


def arm_names(cfg: Config, s: Setup) -> list[tuple[str, float | None]]:
    """(name, weight) of every arm: one treated arm per β (group "treated"), then the control."""
    arms: list[tuple[str, float | None]] = [(f"treated-beta{b:g}" if len(s.betas) > 1 else "treated", b) for b in s.betas]
    return arms + ([("control", None)] if cfg.treat.control else [])


def run_seed(cfg: Config, s: Setup, arms: list[tuple[str, float | None]], seed: int, seed_dir: Path,
              log: Log) -> StudyResult:
    t = cfg.treat
    held = s.pools.select if s.pools is not None else None
    select = selector(s.val, s.classes, s.rule, held=held, val_groups=s.val_groups, floor=s.floor,
                      seed=cfg.train.split_seed, object_colour=t.object_colour)

    def terms(beta: float):
        return lambda: build_terms(t, s.diag, seed, beta, s.pools, s.expand, s.layers)

    specs = [ArmSpec(name, terms(w), group="treated", weight=w) if w is not None else ArmSpec(name)
             for name, w in arms]
    assert t.lr is not None  # set from the original's config in _setup
    fcfg = fit_config(cfg, s.meta["device"], epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=seed,
                      freeze_bn=t.freeze_bn)
    study = run_study(s.original, s.train, s.val, specs, fcfg, s.classes, seed_dir,
                      select=select, resume=cfg.runtime.resume, log=log,
                      on_epoch=lambda arm, r: log(_epoch_line(seed, arm, r)))
    for name, run in study.arms.items():
        warn_skipped(run.result, f"seed {seed} {name}", log)
        save_model(run.model, seed_dir / name, s.meta)
    return study


def escalate(cfg: Config, s: Setup, arms: list[tuple[str, float | None]], studies: dict[int, StudyResult],
              out: Path, log: Log) -> tuple[Config, dict[int, StudyResult], dict[str, Any] | None]:
    """(config, studies, what decided) after :func:`~model_doctor.study.escalation`: where
    the treated models still read the background on the selection set, every arm (control included,
    so the schedules stay equal) trains again from the original at ``kl_weight`` 0 for
    ``escalate_epochs`` under ``OUT/escalated``, and that round is the one reported. Only the
    counterfactual space method with a selection set escalates: the others have no KL term."""
    t = cfg.treat
    if (not t.escalate_below or s.pools is None or s.pools.select is None or s.rule == "groups"
            or t.space_method != "counterfactual" or not any(s.betas)):
        return cfg, studies, None
    seed_ = cfg.train.split_seed
    cue = t.object_colour == "cue"
    swaps = [background_reliance(st.arm("treated").model, s.pools.select, seed=seed_, matched=cue,
                                   pastes=("matched",))[headline_key(t.object_colour)]
             for st in studies.values()]
    clean = background_reliance(s.original, s.pools.select, seed=seed_, matched=False)["clean_acc"]
    due = escalation(swaps, clean, t.escalate_below)
    decided = {"fired": due is not None, "swap_acc": sum(swaps) / len(swaps), "swap_acc_per_seed": swaps,
               "original_clean_acc": clean, "below": t.escalate_below,
               "selection_images": len(s.pools.select),
               "chosen_beta_per_seed": [st.arm("treated").spec.weight for st in studies.values()]}
    if due is None:
        return cfg, studies, decided
    esc = copy.deepcopy(cfg)
    esc.treat.kl_weight, esc.treat.epochs = 0.0, t.escalate_epochs or 3 * t.epochs
    decided.update(epochs=esc.treat.epochs, kl_weight=0.0, first_round_epochs=t.epochs, first_round_kl_weight=t.kl_weight)
    log(f"escalating: on the selection set's {len(s.pools.select)} held-out images the treated models are right on "
        f"{100 * due['swap_acc']:.0f} % on another class's background{' (colour-matched: --object-colour cue)' if cue else ''} "
        f"against the original's {100 * clean:.0f} % as "
        f"annotated (under {t.escalate_below:g} ×): every arm trains again at --kl-weight 0 for {esc.treat.epochs} "
        f"epochs -> {out / 'escalated'} (--escalate-below 0 turns this off)")
    save_run_config(esc, out / "escalated", {"command": "treat", "versions": versions(), "escalation": decided})
    return esc, {seed: run_seed(esc, s, arms, seed, out / "escalated" / f"seed{seed}", log) for seed in studies}, decided


def _epoch_line(seed: int, arm: str, r: dict[str, Any]) -> str:
    return (f"seed {seed} {arm} epoch {r['epoch']}: " + " ".join(f"{k[5:]} {v:.4f}" for k, v in r.items()
                                                                  if k.startswith("loss_"))
            + f" val_acc {r['val_acc']:.4f}"
            + (f" held-out swap acc {r['held_swap_acc']:.4f}" if r.get("held_swap_acc") is not None else "")
            + (f" val worst group {r['val_worst_group']:.4f}" if r.get("val_worst_group") is not None else ""))
