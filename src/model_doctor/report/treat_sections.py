"""The report's treatment sections: the verdict, the accuracy and group tables, and the
background-reliance tables of a ``treat`` run's summary (every string escaped by the template)."""

from __future__ import annotations

from typing import Any

from ..summary import TreatSummary
from ..treatment.reliance import wilson_interval

__all__ = ["pct_cell", "verdict_section", "group_table", "reliance_tables"]


def pct_cell(x: float | None, std: float | None = None, n: int = 1, signed: bool = False, unit: str = " %") -> str:
    """``91.23 %``, ``91.23 ± 0.40 %`` over seeds, ``91.23 % (1 seed)``; never a 16-digit float."""
    if x is None:
        return "–"
    v = f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"
    if n > 1 and std is not None:
        return f"{v} ± {100 * std:.2f}{unit}"
    return f"{v}{unit}" + (" (1 seed)" if n == 1 and std is not None else "")


def verdict_section(sec: dict[str, Any], s: TreatSummary, name: str) -> None:
    """The plain verdict of one treat run, and background reliance of original / control / treated."""
    texts = [v["text"] for v in s.verdict]
    if not texts and s.delta_treated_minus_control is None:
        texts = ["no CE-only control was run (--no-control): the treatment cannot be judged against fine-tuning alone"]
    sec["tables"].append({"header": ["run", "verdict"], "rows": [[name, t] for t in texts] or [[name, "–"]]})
    sel = s.selection
    if sel.get("space_method"):
        sec["tables"].append({"header": ["space method", "weights tried", "chosen per seed", "selection rule"],
                              "rows": [[sel["space_method"], ", ".join(f"{w:g}" for w in sel.get("weights", [])),
                                        ", ".join(f"seed {k}: {v:g}" for k, v in sel.get("chosen_beta", {}).items()),
                                        sel.get("rule", "")]]})
    esc = sel.get("escalation")
    if esc:  # what decided whether every arm trained again at kl_weight 0 (treat.escalate_below)
        sec["tables"].append({"header": ["escalated round", "first round's swap accuracy (selection set, mean over seeds)",
                                         "the original's as annotated", "escalates under", "reported round"],
                              "rows": [["yes" if esc["fired"] else "no", pct_cell(esc["swap_acc"]), pct_cell(esc["original_clean_acc"]),
                                        f"{esc['below']:g} ×",
                                        f"{esc['epochs']} epochs, KL weight 0" if esc["fired"] else "the first"]]})
    if s.original.background_reliance is not None:
        reliance_tables(sec, s)
    sec["note"] = ("Treated − control is the effect of the constraint itself: both arms fine-tune the same original "
                   "with the same schedule, seed and data order. Background reliance is measured on annotated "
                   "training images held out from every kind of training and from selection: swap = the label kept when "
                   "everything outside the (refined) foreground comes from another image, inside the box too; bg-only = "
                   "the label still predicted with the object removed (lower is better). The test split was read once, "
                   "at the end." + _colour_word(s))


def _colour_word(s: TreatSummary) -> str:
    """What ``--object-colour`` made of the two swap figures, for the section's note."""
    word = (s.selection or {}).get("object_colour", "unknown")
    if word == "cue":
        return (" You said an object's colour may be a cue (--object-colour cue): the colour-matched swap is the "
                "figure to read; it chose the epochs and weights, and the counterfactuals pasted colour-matched objects.")
    if word == "own":
        return (" You said an object's colour is its own (--object-colour own): the plain swap is the figure to read; "
                "the colour-matched one takes that colour away and is shown only beside it, so a colour cast over the "
                "whole image would go unseen.")
    return ""


def group_table(sec: dict[str, Any], s: TreatSummary, n: int) -> None:
    """Worst-group and average test accuracy per arm, each group's accuracy (``--groups``), and
    what random guessing's worst group scores at these group sizes (± its std over guessers)."""
    arms = {a: v.groups for a, v in s.arms().items() if v.groups is not None}
    names = list(next(iter(arms.values()))["per_group"])
    rows = [[a, pct_cell(g["worst"]["mean"], g["worst"]["std"], n if a != "original" else 1),
             pct_cell(g["average"]["mean"], g["average"]["std"], n if a != "original" else 1),
             *[pct_cell(g["per_group"][k]) for k in names]] for a, g in arms.items()]
    chance = next(iter(arms.values())).get("chance")
    if chance:
        rows.append(["random guessing (expected)", pct_cell(chance["mean"], chance["std"], 2), "", *[""] * len(names)])
    sec["tables"].append({"header": ["arm", "worst-group accuracy", "average accuracy", *names], "rows": rows})


def reliance_tables(sec: dict[str, Any], s: TreatSummary) -> None:
    """Background reliance of original / control / treated: overall, then per class."""
    n = len(s.runs) or 1
    orig = s.original.background_reliance or {}
    keys = ("swap_acc", "same_swap_acc", "shuffled_swap_acc", "matched_swap_acc", "bg_only_acc", "bg_grad_share")
    images = int(orig.get("images") or 0)

    def interval(p: Any) -> str:
        lo, hi = wilson_interval(float(p), images) if p is not None else (float("nan"),) * 2
        return "–" if lo != lo else f"{100 * lo:.0f}–{100 * hi:.0f} %"

    rows = [["original"] + [pct_cell(orig.get(k)) for k in keys] + [interval(orig.get("swap_acc"))]]
    arms = {"original": orig}
    for arm in ("control", "treated"):
        a = s.arms().get(arm)
        r = a.background_reliance if a is not None else None
        if r:
            arms[arm] = r
            rows.append([arm] + [pct_cell(r[k]["mean"], r[k]["std"], n) if k in r else "–" for k in keys]
                        + [interval(r["swap_acc"]["mean"])])
    m = s.masks or {}
    held = m.get("report") or m.get("held_out", "?")
    ref = m.get("refine", {})
    sec["tables"].append({"header": ["model", f"background-swap accuracy, another class's background ({held} report images)",
                                     "background-swap accuracy, own class's background",
                                     "background-swap accuracy, a random class's background (own included: "
                                     "what a shuffled cue does)",
                                     "background-swap accuracy, the object's colour matched to the other image's object "
                                     "(a cast over the whole image moves with the background)",
                                     f"background-only accuracy (chance {pct_cell(orig.get('chance'))})",
                                     "input-gradient share outside the masks",
                                     f"95 % interval of the swap accuracy over the {images} images (Wilson)"], "rows": rows})
    if ref:
        sec["tables"].append({"header": ["refinement", "annotated images", "refined", "not refined (why)"],
                              "rows": [[ref.get("method"), ref.get("images"), ref.get("refined"),
                                        "; ".join(f"{v} {k}" for k, v in ref.get("not_refined", {}).items()) or "–"]]})
    classes = s.classes or []
    per = {a: r.get("per_class", {}) for a, r in arms.items()}
    if per.get("original"):
        names = list(per)
        rows = [[classes[int(c)] if int(c) < len(classes) else c]
                + [pct_cell(per[a].get(c, {}).get(k)) for a in names
                   for k in ("swap_acc", "same_swap_acc", "matched_swap_acc", "bg_only_acc")]
                for c in per["original"]]
        sec["tables"].append({"header": ["class"] + [f"{a} {k}" for a in names
                                                     for k in ("swap", "own-class swap", "colour-matched swap", "bg-only")],
                              "rows": rows})
