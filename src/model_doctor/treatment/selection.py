"""The no-test-data selection rules, written once: what picks each arm's epoch and, among the
weights tried, the arm. ``treat``, ``reproduce`` and every benchmark build their rule with
:func:`selector`; a new rule is one entry in :data:`RULES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..config import SELECT_RULES
from ..data.groups import group_accuracy
from ..training import evaluate
from .pool import AnnotatedPool
from .reliance import as_told, background_reliance

__all__ = ["RULES", "selector", "selection_score", "group_selection_score", "resolve_rule"]

Score = Callable[[float, dict[str, Any]], float]
Select = Callable[[nn.Module], dict[str, Any]]

#: the rules on held-out annotated images: score(validation accuracy, background reliance). The
#: ``groups`` rule reads group-labelled validation images instead (:func:`group_selection_score`).
RULES: dict[str, Score] = {
    # the held-out background-swap accuracy; validation accuracy breaks ties
    "swap": lambda val, rel: float(rel["swap_acc"]) + 1e-3 * val,
    # the lower of the swap accuracy on another class's and on the own class's backgrounds
    "balanced": lambda val, rel: float(rel["balanced_swap_acc"]) + 1e-3 * val,
    # ½ (validation + swap accuracy): the rule before; the validation split carries the shortcut
    "mean": lambda val, rel: 0.5 * (val + float(rel["swap_acc"])),
}


def resolve_rule(rule: str, val_groups: bool) -> str:
    """The rule a run uses: ``auto`` is ``groups`` when the validation images carry group labels
    (the field's model selection, as JTT and DFR use it), else ``swap``.

    Raises:
        ValueError: an unknown rule, or ``groups`` without validation group labels.
    """
    if rule not in SELECT_RULES:
        raise ValueError(f"select rule {rule!r}; use one of {', '.join(SELECT_RULES)}")
    if rule == "groups" and not val_groups:
        raise ValueError("--select-rule groups needs group labels for the validation images; pass --groups CSV with a "
                         "file,group row for each of them, or use --select-rule swap")
    return ("groups" if val_groups else "swap") if rule == "auto" else rule


def group_selection_score(groups: dict[str, Any]) -> float:
    """``groups`` rule: worst-group validation accuracy, average validation accuracy breaking ties
    (+ 0.001 · average). Why: with group labels on the validation images the worst group is what
    the field selects on; no annotated image is spent on selection, so all held-out ones report."""
    return float(groups["worst"]) + 1e-3 * float(groups["average"])


def selection_score(val_acc: float, reliance: dict[str, Any] | None, rule: str = "swap", floor: float = 0.0) -> float:
    """The score of one epoch under a :data:`RULES` rule (``auto`` here is ``swap``).

    Why ``swap`` is the default: the validation split carries the training distribution's
    shortcut, so validation accuracy rewards relying on it (E5's first run chose the weaker weight
    in all 18 runs by ``mean``, docs/results/e5_first_run.md). ``balanced`` does not reward reading
    the background backwards. Validation accuracy alone when there is no held-out annotated image.

    ``floor``: a validation accuracy under it scores ``val_acc − 1``, below every epoch that kept
    it, so such an epoch is chosen only when no epoch of any weight kept it (then the least broken).
    Why: a model that lost the task guesses, and guessing earns background-swap accuracy that a
    model still reading the background does not (E5 photo: the rule chose models at 7-36 %).
    """
    rule = "swap" if rule == "auto" else rule
    if rule not in RULES:
        raise ValueError(f"select rule {rule!r}; use one of {', '.join(SELECT_RULES)}")
    if val_acc < floor:
        return float(val_acc) - 1.0
    if not reliance or reliance.get("swap_acc") is None or reliance["swap_acc"] != reliance["swap_acc"]:
        return float(val_acc)
    return RULES[rule](float(val_acc), reliance)


def selector(val: Any, num_classes: int, rule: str, *, held: AnnotatedPool | None = None,
             val_groups: tuple[Any, list[str]] | None = None, floor: float = 0.0, seed: int = 0,
             object_colour: str = "unknown") -> Select | None:
    """The ``select`` of :func:`model_doctor.study.run_study` under ``rule``: per epoch, the
    worst-group validation accuracy (``groups``, needs ``val_groups``), else the validation
    accuracy and the background reliance on the held-out annotated images ``held`` (None: no
    rule, the epoch with the best validation accuracy). Test data is never read."""
    if rule == "groups":
        if val_groups is None:
            raise ValueError("the groups rule needs group labels for the validation images (val_groups)")

        def by_groups(model: nn.Module) -> dict[str, Any]:
            g = group_accuracy(model, val, *val_groups)
            return {"val_worst_group": g["worst"], "select_score": group_selection_score(g)}

        return by_groups
    if held is None:
        return None
    cue = object_colour == "cue"

    def by_swap(model: nn.Module) -> dict[str, Any]:
        acc = evaluate(model, val, num_classes)["acc"]
        rel = as_told(background_reliance(model, held, seed=seed, matched=cue, pastes=("matched",)), object_colour)
        return {"held_swap_acc": rel["swap_acc"], "held_bg_grad_share": rel["bg_grad_share"],
                "select_score": selection_score(acc, rel, rule, floor)}

    return by_swap
