"""The verdict on background reliance, calibrated by construction.

One headline claim: treated − control on the *least favourable* of the swap figures that fail in
different ways (:data:`FIGURES`). Each figure pastes the object with the mask the treatment trained
with, so whatever that mask keeps with the object (a rim, an in-box texture, a colour over the whole
image) moves with it and is scored as object; the plain swap moves the object's colour with it, the
colour-matched one does not, and the silhouette swap moves only the object's outline and mean
colour, not what is drawn inside it. Where they agree, the claim stands at the smaller size; where they
disagree by more than their noise, no figure can say how much of the gain is the object, and the
verdict says so in one line. Then a few registered :data:`CHECKS`, each a short function of what it
reads (:class:`Seen`) that returns one line or nothing and says whether it withdraws the claim.
No check carries a constant set on a benchmark table: each is the study's one significance rule
(:func:`~model_doctor.study.beyond_noise`) applied to a figure that should agree.

What no figure here can see (a cue that looks like part of the object and moves with it, such as
a tag attached to it or a change of its outline; a colour cast under ``--object-colour own``) is
said in the README once, not on every run; group-labelled or
cue-shuffled images (``--groups``) are the check no cue can fool.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from ..study import beyond_noise, image_se_of, spread, verdict
from .pools import Pools

__all__ = ["reliance_verdicts", "judge_reliance", "CHECKS", "Check", "Seen", "FIGURES", "broken_warning",
           "residual_hint", "both_ways", "BACKWARDS_ALPHA", "FEW_RELIANCE_IMAGES", "RESIDUAL_SHARE"]

#: the swap figures that fail in different ways, in the order they are named
FIGURES = {"swap_acc": "plain swap", "matched_swap_acc": "colour-matched swap",
           "transfer_swap_acc": "colour-transferred swap", "silhouette_swap_acc": "silhouette swap"}
#: the figures that take the object's colour away (``--object-colour own`` turns them off)
COLOUR_FIGURES = ("matched_swap_acc", "transfer_swap_acc")

#: fewer report images than this (or exactly this many) and a caution says one image moves the figures ≥ 5 points
FEW_RELIANCE_IMAGES = 20

#: family-wise level of the backwards-reading warning (Bonferroni over seeds)
BACKWARDS_ALPHA = 0.05


class Seen(NamedTuple):
    """What a check reads: per seed the treated and control models' reliance on the report images,
    the original's, the headline line, the user's word, whether the figures may claim at all, and
    how many images they rest on."""

    treated: Sequence[dict[str, Any]]
    control: Sequence[dict[str, Any]]
    original: dict[str, Any] | None
    headline: dict[str, Any]
    object_colour: str
    claim: bool
    images: int
    seeds: Sequence[Any] = ()


class Check(NamedTuple):
    """A check that fired: the line it prints (None: none), whether it withdraws the headline's
    claim of a gain (``either_sign``: of a loss too), and why (appended to the withdrawn headline)."""

    line: dict[str, Any] | None
    withdraws: bool = False
    why: str = ""
    either_sign: bool = False


def _measured(seen_t: Sequence[dict[str, Any]], seen_c: Sequence[dict[str, Any]], key: str) -> bool:
    ok = lambda r: r.get(key) is not None and r.get(key) == r.get(key)   # nan: not measured
    return bool(seen_t) and all(ok(t) and ok(c) for t, c in zip(seen_t, seen_c))


def _figures(treated: Sequence[dict[str, Any]], control: Sequence[dict[str, Any]], object_colour: str) -> list[str]:
    """The figures the headline takes its minimum over: the plain and the silhouette swap, and the
    colour-matched and colour-transferred ones where they were measured and the user did not say the
    object's colour is its own (``cue``: they come first). The silhouette keeps the object's own mean
    colour, so ``own`` leaves it on."""
    keys = [k for k in FIGURES if _measured(treated, control, k)]
    if object_colour == "own":
        keys = [k for k in keys if k not in COLOUR_FIGURES]
    return sorted(keys, key=lambda k: k not in COLOUR_FIGURES) if object_colour == "cue" else keys


def _diff(seen_t: Sequence[dict[str, Any]], seen_c: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(t[key]) - float(c[key]) for t, c in zip(seen_t, seen_c)]


def _image_se(treated: Sequence[dict[str, Any]], control: Sequence[dict[str, Any]], *keys: str) -> float | None:
    try:
        return image_se_of([t["per_image"] for t in treated], [c["per_image"] for c in control], keys)
    except (KeyError, TypeError):
        return None


def _headline(treated: Sequence[dict[str, Any]], control: Sequence[dict[str, Any]], keys: list[str], images: int,
              claim: bool, object_colour: str) -> dict[str, Any]:
    """treated − control on the least favourable figure per seed (the one nearest no change: the
    lowest gain, or the smallest loss), with every figure's own spread."""
    per_seed = list(zip(*(_diff(treated, control, k) for k in keys)))
    lo, hi = [min(v) for v in per_seed], [max(v) for v in per_seed]
    mean = lambda xs: sum(xs) / len(xs)
    least = lo if mean(lo) > 0 or (mean(hi) >= 0 and abs(mean(lo)) <= abs(mean(hi))) else hi
    ses = [se for k in keys if (se := _image_se(treated, control, k, k + "_by_background")) is not None]
    names = ", ".join(FIGURES[k] for k in keys[:-1]) + (" and " if len(keys) > 1 else "") + FIGURES[keys[-1]]
    where = (f"{images} held-out annotated images (not trained on, not used to select)" if claim else
             f"{images} held-out annotated images that also chose the epochs (no report set: too few per class)")
    what = (f"background reliance on {where}, the lowest of the {names}" if len(keys) > 2 else
            f"background reliance on {where}, the lower of the {names}" if len(keys) > 1 else
            f"background reliance on {where}, {names}")
    if object_colour == "own":
        what += " (colour checks off: --object-colour own; a colour over the whole image would go unseen)"
    line = verdict(least, what, claim=claim, image_se=max(ses) if ses else None, images=images)
    line["figures"] = {k: spread(_diff(treated, control, k)).as_dict() for k in keys}
    line["what"] = "background reliance"
    return line


def _withdraw(line: dict[str, Any], why: str) -> None:
    """The claim's figure stays; its judgement becomes "no claim" and why (never "beyond noise")."""
    head, _, _ = line["text"].rpartition("; ")
    line |= {"beyond_noise": False, "withdrawn": why, "text": f"{head}; no claim: {why}"}


def _disagree(seen: Seen) -> Check | None:
    """The figures differ by more than their noise: none of them can say how much of the gain is the object."""
    figs = seen.headline.get("figures", {})
    keys = list(figs)
    split = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]
             if beyond_noise([x - y for x, y in zip(_diff(seen.treated, seen.control, a), _diff(seen.treated, seen.control, b))])]
    if not split:
        return None
    said = ", ".join(f"{FIGURES[k]} {100 * figs[k]['mean']:+.1f}" for k in keys)
    return Check({"what": "figures disagree", "beyond_noise": False, "text": (
        f"the figures disagree by more than their noise ({said} pts, treated − control): whatever the mask keeps with the "
        "object moves with it in one and not the other, so they cannot tell how much of the gain is the object; judge it "
        "on group-labelled or cue-shuffled images (--groups), or draw exact masks or shrink them (--erode N)")},
        True, "the figures disagree (next line)", either_sign=True)


def _random_class(seen: Seen) -> Check | None:
    """On a random class's background (own included) the treated model is not better: a model that guesses gains on
    other classes' backgrounds too."""
    if not _measured(seen.treated, seen.control, "shuffled_swap_acc"):
        return None
    if beyond_noise(_diff(seen.treated, seen.control, "shuffled_swap_acc"), gain=True):
        return None
    return Check(None, True, "on a random class's background (own included) the treated model gains no more than the "
                             "noise, so what it gained on other classes' backgrounds it lost on its own, as a guessing model does")


def both_ways(original: dict[str, Any] | None, images: int = 0) -> dict[str, Any] | None:
    """The original follows the pasted object on its swaps *and* names the class from the background
    alone, together beyond what one cue allows: a model that reads only the background scores
    ``swap + bg-only ≈ 1`` (0 and 1), one that reads only the object ``≈ 1 + chance``; above that by
    more than twice the binomial noise over ``images``, its cue lies on the object as well as around
    it (a watermark), which every swap moves with the object."""
    if not original:
        return None
    swap, bg = original.get("swap_acc", math.nan), original.get("bg_only_acc", math.nan)
    chance, n = original.get("chance", 0.0), images or int(original.get("images", 0))
    if not n or not (swap == swap and bg == bg):
        return None
    noise = math.sqrt((swap * (1 - swap) + bg * (1 - bg)) / n)
    if swap + bg - (1 + chance) <= 2 * noise:
        return None
    return {"what": "both ways", "beyond_noise": False, "text": (
        f"caution: the original follows the pasted object on {100 * swap:.0f} % of swaps yet names the class from the "
        f"background alone on {100 * bg:.0f} %: its cue lies on the object as well as around it (a watermark, a stain), "
        "which every swap moves with the object; judge the treated model on images whose suspected cue you changed "
        "(--groups)")}


def _both(seen: Seen) -> Check | None:
    line = both_ways(seen.original, seen.images) if seen.claim else None
    return Check(line, True, "the original's figures say its cue lies on the object too (next line)") if line else None


def _reads_backwards(seen: Seen) -> Check | None:
    """Some seed's treated model is right more often on another class's background than on its own, beyond a sign test
    at ``BACKWARDS_ALPHA`` / seeds: it still relies on the background, reversed (possible with two classes; E6)."""
    level = BACKWARDS_ALPHA / max(len(seen.treated), 1)
    seeds = list(seen.seeds) or list(range(len(seen.treated)))
    hits = [(s, b) for s, b in zip(seeds, seen.treated) if b.get("backwards_p", 1.0) < level]
    if not hits:
        return None
    count = lambda b: (f"{b['backwards_images']} of {b['backwards_images'] + b['forwards_images']} images, "
                       if "backwards_images" in b and "forwards_images" in b else "")
    said = "; ".join(f"seed {s}: {count(b)}p = {b['backwards_p']:.2g}" for s, b in hits)
    return Check({"what": "backwards", "beyond_noise": False, "text": (
        f"warning: the treated model reads the background backwards ({said}; sign test at {level:.2g}): it is right more "
        "often on another class's background than on its own, so its swap accuracy is high because it still relies on "
        "the background; label the validation images' groups (--groups) to choose by worst-group accuracy")},
        True, "the treated model reads the background backwards (next line)")


def _background_only(seen: Seen) -> Check | None:
    """The treated model still names the class from the background alone beyond chance (binomial noise)."""
    bg = [t.get("bg_only_acc", math.nan) for t in seen.treated]
    if not bg or any(v != v for v in bg) or not seen.images:
        return None
    chance, mean = seen.treated[0].get("chance", 0.0), statistics.mean(bg)
    if mean - chance <= 2 * math.sqrt(chance * (1 - chance) / (seen.images * len(bg))):
        return None
    return Check({"what": "background only", "beyond_noise": False, "text": (
        f"warning: the treated model still names the class from the background alone on {100 * mean:.0f} % of report "
        f"images (chance {100 * chance:.0f} %)")})


def _size(seen: Seen) -> Check | None:
    if seen.images > FEW_RELIANCE_IMAGES:
        return None
    return Check({"what": "size", "beyond_noise": False, "text": (
        f"caution: these figures rest on {seen.images} images; one image moves them by {100 / max(seen.images, 1):.0f} "
        "points: annotate more images per class or raise --holdout")})


#: the checks, in the order their lines print; a new one is a function and a line here
CHECKS: dict[str, Callable[[Seen], Check | None]] = {
    "figures disagree": _disagree, "random class": _random_class, "both ways": _both, "backwards": _reads_backwards,
    "background only": _background_only, "size": _size}


def judge_reliance(treated: Sequence[dict[str, Any]], control: Sequence[dict[str, Any]], images: int,
                   original: dict[str, Any] | None = None, object_colour: str = "unknown", claim: bool = True,
                   seeds: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The headline and the lines of the :data:`CHECKS` that fired, from per-seed reliance dicts
    (:func:`~model_doctor.treatment.reliance.background_reliance`) of the treated and the control
    model on ``images`` report images. What ``treat`` prints and every benchmark judges with."""
    keys = _figures(treated, control, object_colour)
    if not keys:
        return []
    head = _headline(treated, control, keys, images, claim, object_colour)
    seen = Seen(treated, control, original, head, object_colour, claim, images, seeds)
    lines, why = [head], []
    for check in CHECKS.values():
        fired = check(seen)
        if fired is None:
            continue
        if fired.withdraws and head["beyond_noise"] and (head["mean"] > 0 or fired.either_sign):
            why.append(fired.why)
        if fired.line is not None:
            lines.append(fired.line)
    if why:
        _withdraw(head, "; ".join(why))
    return lines


def reliance_verdicts(runs: Sequence[dict[str, Any]], pools: Pools, original: dict[str, Any] | None = None,
                      object_colour: str = "unknown") -> list[dict[str, Any]]:
    """``treat``'s reliance lines: :func:`judge_reliance` on the report set (the selection set, marked
    optimistic and never "beyond noise", where there is none), then what refinement kept of each box."""
    where = pools.report if pools.report is not None else pools.select
    if where is None or not runs:
        return []
    rel = lambda arm: [r[arm]["background_reliance"] for r in runs]
    out = judge_reliance(rel("treated"), rel("control"), len(where), original, object_colour,
                         claim=pools.report is not None, seeds=[r.get("seed", i) for i, r in enumerate(runs)])
    masks = _masks_line(where)
    return out + ([masks] if masks else [])


def _masks_line(where: Any) -> dict[str, Any] | None:
    """What refinement kept inside each box as the object (it moves with the object in every figure), and how many
    boxes it could not refine; None where the masks were used as given (nothing to report)."""
    refined = where.refined.bool()
    if not bool(refined.any()) and not where.refine_report().get("not_refined"):
        return None
    kept = (where.foreground.flatten(1).sum(1) / where.coarse.flatten(1).sum(1).clamp(min=1))[refined]
    text = ""
    if len(kept):
        q = torch.quantile(kept.double(), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)).tolist()
        text = (f"masks: refinement kept {100 * q[1]:.0f} % of each box as the object (median over {len(kept)} report "
                f"images; {100 * q[0]:.0f}–{100 * q[2]:.0f} %): whatever it kept moves with the object in every figure")
    missing = len(where) - int(refined.sum())
    if missing:
        why = ", ".join(f"{v} {k}" for k, v in where.refine_report()["not_refined"].items())
        text += ("; " if text else "masks: ") + (f"{missing} of {len(where)} report images have no refined foreground "
                                                  f"({why}): a cue inside their box is invisible there")
    return {"what": "masks", "beyond_noise": False, "kept_share": [float(v) for v in kept], "text": text}


def broken_warning(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """A treated model lost more than half of the control's validation accuracy on some seed: it may
    have lost the task, and a model that guesses gains background-swap accuracy too."""
    hits = [(r.get("seed", i), r["treated"]["val_acc"], r["control"]["val_acc"]) for i, r in enumerate(runs)
            if r.get("treated") and r.get("control") and r["treated"].get("val_acc") is not None
            and r["control"].get("val_acc") is not None and r["treated"]["val_acc"] < 0.5 * r["control"]["val_acc"]]
    if not hits:
        return None
    said = "; ".join(f"seed {s}: {100 * t:.1f} % against {100 * c:.1f} %" for s, t, c in hits)
    return {"what": "broken", "beyond_noise": False, "text": (
        f"warning: the fine-tune broke the treated model ({said} validation accuracy, treated against control): it may "
        "have lost the task rather than moved to the object; try --kl-weight 0 with more --epochs, a lower --beta or "
        "more annotated images (docs/evidence.md, E5 photo)")}


#: the share of its clean accuracy on the report images under which a treated model's swap accuracy
#: says the shortcut remains (a hint of what to try, not a claim; set on E5's cached runs, 2026-12-03)
RESIDUAL_SHARE = 0.4


def residual_hint(runs: Sequence[dict[str, Any]], escalated: bool = False) -> dict[str, Any] | None:
    """What to try when the treated model still reads the background: its swap accuracy under
    :data:`RESIDUAL_SHARE` of its accuracy on the same report images as annotated. None where a run
    lacks the figures or the treated model is near chance on its own images."""
    try:
        rel = [r["treated"]["background_reliance"] for r in runs]
        swap = sum(r["swap_acc"] for r in rel) / len(rel)
        clean = sum(r["clean_acc"] for r in rel) / len(rel)
        chance = rel[0]["chance"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    if not clean >= min(2 * chance, (1 + chance) / 2) or not swap < RESIDUAL_SHARE * clean:
        return None
    try_next = ("the escalated round (--kl-weight 0, more epochs) ran already; more annotated images or a higher "
                "--escalate-epochs are left to try" if escalated else "try --kl-weight 0 with --epochs 30")
    return {"what": "residual", "beyond_noise": False, "text": (
        f"hint: the shortcut remains: on another class's background the treated model is right on {100 * swap:.0f} % "
        f"of report images against {100 * clean:.0f} % as annotated; {try_next} (docs/results/e5/e5_options.md)")}
