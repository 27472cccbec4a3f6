"""The verdict's lines on background reliance: the claims (treated − control on each swap figure)
and the cautions that withdraw or qualify them, each a small function of the runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..study import image_se_of, verdict
from .pools import Pools

__all__ = ["reliance_verdicts", "GATES", "Gated", "Seen", "broken_warning", "residual_hint", "both_ways", "colour_split", "BACKWARDS_ALPHA",
           "BOTH_WAYS", "COLOUR_SPLIT", "FEW_RELIANCE_IMAGES", "RESIDUAL_SHARE"]


#: fewer report images than this and the reliance verdicts carry a caution (one image ≥ 5 points)
FEW_RELIANCE_IMAGES = 20


#: family-wise level of the backwards-reading warning (Bonferroni over seeds)
BACKWARDS_ALPHA = 0.05


def _backwards(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The warning when the treated model reads the background backwards on some seed: more report
    images right on another class's background than on their own, beyond a sign test at
    ``BACKWARDS_ALPHA`` / seeds. Why: such a model scores high on background-swap accuracy while it
    still relies on the background (possible with two classes; E6), so that figure cannot say the
    shortcut is gone."""
    level = BACKWARDS_ALPHA / max(len(runs), 1)
    hits = [(r.get("seed", i), r["treated"]["background_reliance"]) for i, r in enumerate(runs)]
    hits = [(s, b) for s, b in hits if b.get("backwards_p", 1.0) < level]
    if not hits:
        return None
    said = "; ".join(f"seed {s}: {b['backwards_images']} of {b['backwards_images'] + b['forwards_images']} images, "
                     f"p = {b['backwards_p']:.2g}" for s, b in hits)
    return {"what": "backwards", "beyond_noise": False, "text": (
        f"warning: the treated model reads the background backwards ({said}; one-sided sign test, level "
        f"{level:.2g}): report images are right more often on another class's background than on their own, so its "
        "background-swap accuracy is high because it still relies on the background, reversed; label the validation "
        "images' groups (--groups) to choose by worst-group accuracy instead (docs/method.md, E6)")}


def broken_warning(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The warning when a treated model lost more than half of the control's validation accuracy on
    some seed. Why: removing a shortcut costs the accuracy it inflated (E4: 99 → 81 %), but a model
    at a fraction of it may have lost the task (E5 photo: 7 % at 10 % chance), and a model that
    guesses gains background-swap accuracy too."""
    hits = [(r.get("seed", i), r["treated"]["val_acc"], r["control"]["val_acc"]) for i, r in enumerate(runs)
            if r.get("treated") and r.get("control") and r["treated"].get("val_acc") is not None
            and r["control"].get("val_acc") is not None and r["treated"]["val_acc"] < 0.5 * r["control"]["val_acc"]]
    if not hits:
        return None
    said = "; ".join(f"seed {s}: {100 * t:.1f} % against {100 * c:.1f} %" for s, t, c in hits)
    return {"what": "broken", "beyond_noise": False, "text": (
        f"warning: the fine-tune broke the treated model ({said} validation accuracy, treated against control): it may "
        "have lost the task rather than moved to the object, and a model that guesses gains background-swap accuracy "
        "too; try --kl-weight 0 with more --epochs (on E5 photo 0 and 30 closed 63 % of the gap where the defaults "
        "closed 5 %), a lower --beta or more annotated images (docs/evidence.md, E5 photo)")}


#: the share of its clean accuracy on the report images under which a treated model's swap accuracy
#: says the shortcut remains (mean over seeds). Set on E5's cached runs (2026-12-03, 16 sets of seeds):
#: on photo backgrounds the defaults and ``--kl-weight 0`` alone (5-21 % of the gap) keep 13-38 %;
#: every set that closed half the gap or more keeps 52-110 % (treated models at near chance excluded)
RESIDUAL_SHARE = 0.4


def residual_hint(runs: Sequence[dict[str, Any]], escalated: bool = False) -> dict[str, Any] | None:
    """What to try when the treated model still reads the background: its swap accuracy (another
    class's background) under :data:`RESIDUAL_SHARE` of its accuracy on the same report images as
    annotated. Why: a model that reads the object keeps most of that accuracy on any background;
    the verdict lines say whether the treatment beat the control, not whether it went far enough,
    and the defaults' worst case (E5 photo, 5 % of the gap) has a known remedy. None where a run
    lacks the figures or the treated model is near chance on its own images (under twice chance, or
    halfway from chance to 100 % where that is lower: ``broken_warning``'s case)."""
    try:
        rel = [r["treated"]["background_reliance"] for r in runs]
        swap = sum(r["swap_acc"] for r in rel) / len(rel)
        clean = sum(r["clean_acc"] for r in rel) / len(rel)
        chance = rel[0]["chance"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    if not clean >= min(2 * chance, (1 + chance) / 2) or not swap < RESIDUAL_SHARE * clean:  # two classes: 75 %
        return None
    try_next = ("the escalated round (--kl-weight 0, more epochs) ran already; more annotated images, or a higher "
                "--escalate-epochs, are left to try" if escalated else
                "Try --kl-weight 0 with --epochs 30 (on E5 photo backgrounds it closed 66 % of the gap on fresh seeds "
                "where the defaults closed 5 %)")
    return {"what": "residual", "beyond_noise": False, "text": (
        f"hint: the shortcut remains: on another class's background the treated model is right on {100 * swap:.0f} % "
        f"of report images against {100 * clean:.0f} % as annotated (mean over seeds; a model that reads the object "
        f"keeps most of it). {try_next}; docs/results/e5/e5_options.md lists every setting tried and where each fails")}


def _image_se(runs: Sequence[dict[str, Any]], *keys: str) -> float | None:
    """The report images' sampling noise of treated − control (:func:`~model_doctor.study.image_se_of`)
    from each run's ``per_image`` values; None where a run lacks them."""
    try:
        treated = [r["treated"]["background_reliance"]["per_image"] for r in runs]
        control = [r["control"]["background_reliance"]["per_image"] for r in runs]
    except (KeyError, TypeError):
        return None
    return image_se_of(treated, control, keys)


#: the original's swap and background-only accuracy at or above which :func:`both_ways` cautions
BOTH_WAYS = 0.5


def both_ways(original: dict[str, Any] | None) -> dict[str, Any] | None:
    """A caution where the original follows the pasted object on at least :data:`BOTH_WAYS` of the
    swaps *and* names the class from the background alone (object removed) on at least as many.
    Why: a cue drawn over the object as well as around it (a watermark, a colour cast over the
    whole image) travels with the foreground in every swap, so the swap figures call a model that
    reads only that cue object-reading (E5 ``watermark`` with boxes: originals at 53-76 % and
    60-75 %, chance 10 %, truth 9.6-11.1 %; treated 95-100 % on swaps, 13-17 % on shuffled cues).
    No mask separates it; a model that reads the object and the background both looks the same, so
    this cautions and does not decide. The 0.5 was set on those runs; every other E5 original
    followed the object on 0-36 %, and the watermark's with exact masks on 38-49 %, which it misses."""
    if not original:
        return None
    swap, bg = original.get("swap_acc", float("nan")), original.get("bg_only_acc", float("nan"))
    if not (swap >= BOTH_WAYS and bg >= BOTH_WAYS):
        return None
    return {"what": "both ways", "beyond_noise": False, "text": (
        f"caution: the original follows the pasted object on {100 * swap:.0f} % of swaps yet names the class from "
        f"the background alone on {100 * bg:.0f} %: its cue may lie on the object as well as around it (a watermark, "
        "a colour cast over the whole image), which every swap moves with the object, so neither swap figure can see "
        "it; or it reads both. The swap figures cannot tell these apart: judge the treated model on images whose "
        "suspected cue you changed (docs/method.md)")}


#: the gap between the plain and the colour-matched swap accuracy at or above which :func:`colour_split` cautions
COLOUR_SPLIT = 0.25


def colour_split(runs: Sequence[dict[str, Any]], original: dict[str, Any] | None) -> dict[str, Any] | None:
    """A caution where the plain swap beats the colour-matched one by :data:`COLOUR_SPLIT` or more
    for the original or the treated model (its mean over seeds): the model reads its object's
    colour, and no figure here tells an object's own colour (a yellow fruit) from a cast over the
    whole image (a scanner, a white balance). Why: with objects tinted by their class's hue
    (``benchmarks/object_colour``) the colour-matched swap read 1-3 % where the models kept 93-100 %
    on a random class's background; on E5 ``cast``/``tone`` the plain swap read 86-100 % where the
    truth was 8-14 %. It names no winner: a hint from the original's background-only accuracy
    (above twice chance, a cast) was right on every run it was set on and wrong on all three
    tinted-object originals that also read a partial background cue (``--shortcut 0.7``)."""
    gaps: dict[str, tuple[float, float]] = {}
    pair = lambda rel: (rel.get("swap_acc", float("nan")), rel.get("matched_swap_acc", float("nan")))
    if original:
        gaps["original"] = pair(original)
    if runs:
        treated = [pair(r["treated"]["background_reliance"]) for r in runs]
        gaps["treated"] = (sum(t[0] for t in treated) / len(treated), sum(t[1] for t in treated) / len(treated))
    wide = {a: g for a, g in gaps.items() if g[0] - g[1] >= COLOUR_SPLIT}   # nan compares False: not measured
    if not wide:
        return None
    said = ", ".join(f"{a} {100 * g[0]:.0f} % plain against {100 * g[1]:.0f} % colour-matched" for a, g in wide.items())
    return {"what": "colour split", "beyond_noise": False, "split": said, "text": (
        f"caution: the swap figures split on colour ({said}): the model reads its object's colour. Where that colour "
        "is the object's own (a yellow fruit) the plain figure holds and the colour-matched one reads background "
        "reliance that is not there; where a cast covers the whole image, object included (a scanner, a white "
        "balance), the colour-matched figure holds and the plain one misses the cue. No figure here tells the two "
        "apart: judge it on images whose colour you changed (docs/method.md)")}


def reliance_verdicts(runs: Sequence[dict[str, Any]], pools: Pools,
                      original: dict[str, Any] | None = None, object_colour: str = "unknown") -> list[dict[str, Any]]:
    """The verdict lines on background reliance, honest by construction.

    Measured on ``pools.report`` (never trained on, never used to select) when there is one, else
    on the selection set and marked optimistic, with no "beyond noise". Says when part of the
    report images had no refined foreground (a cue inside their annotation is invisible), when
    the treated model still predicts its class from the background alone, and when ``original``
    (the original's :func:`~model_doctor.treatment.reliance.background_reliance` on the report
    images) reads the class both ways (:func:`both_ways`): then no swap gain is called a sign
    that the shortcut is gone. Nor is one where the colour-matched swap (``matched_swap_acc``) is not
    better beyond noise: a cue over the whole image rides on the object in every plain swap. The
    plain swap stays the headline: the colour-matched one misreads an object whose colour is its
    own (``benchmarks/object_colour``: 94-98 points low), as the plain one misreads a cast over the
    whole image (E5 ``cast``, ``tone``: 86-100 points high); :func:`colour_split` says when they part.

    ``object_colour`` is the user's word (``--object-colour``): ``own`` takes the colour-matched
    line out of the verdict (it neither claims nor vetoes: it reads the object's own colour as
    background); ``cue`` puts it first, as the headline, and keeps it as the gate on the plain
    line. Either way the colour-split caution becomes a line that says which figure the word picks."""
    where = pools.report if pools.report is not None else pools.select
    if where is None:
        return []
    claim = pools.report is not None
    out, figures = _claims(runs, len(where), claim, object_colour)
    out += _gates(out, Seen(runs, figures, original, object_colour, claim))
    return out + _cautions(runs, pools, where)


def _rel(run: dict[str, Any], arm: str) -> dict[str, Any]:
    return run[arm]["background_reliance"]


def _claims(runs: Sequence[dict[str, Any]], n: int, claim: bool,
            object_colour: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """The figure lines (treated − control on each reliance measure), in the order they print, and
    the swap, colour-matched and random-class lines by name (None where not measured)."""
    tag = (f"{n} held-out annotated images (not trained on, not used to select)" if claim else
           f"{n} held-out annotated images that also chose the epochs (no report set: too few per class)")
    diff = lambda k: [_rel(r, "treated")[k] - _rel(r, "control")[k] for r in runs]
    swap = verdict(diff("swap_acc"), f"background-swap accuracy on {tag}", claim=claim,
                   image_se=_image_se(runs, "swap_acc", "swap_acc_by_background"), images=n)
    out = [swap, verdict(diff("bg_only_acc"), "background-only accuracy (object removed; lower is better)",
                         lower_is_better=True, claim=claim, image_se=_image_se(runs, "bg_only_acc"), images=n)]
    measured = lambda k: bool(runs) and all(_rel(r, a).get(k, float("nan")) == _rel(r, a).get(k, float("nan"))
                                            for r in runs for a in ("treated", "control"))   # nan: not measured
    matched = shuffled = None
    if measured("matched_swap_acc"):
        matched = verdict(diff("matched_swap_acc"),
                          "background-swap accuracy with the object's colour matched to the background image's object "
                          "(a cue over the whole image then moves with the background)", claim=claim,
                          image_se=_image_se(runs, "matched_swap_acc", "matched_swap_acc_by_background"), images=n)
        out.insert(0 if object_colour == "cue" else 1, matched)
    if measured("shuffled_swap_acc"):
        shuffled = verdict(diff("shuffled_swap_acc"),
                           "background-swap accuracy on a random class's background, own class included (what a shuffled "
                           "cue does)", claim=claim, image_se=_image_se(runs, "shuffled_swap_acc"), images=n)
        out.insert(out.index(swap) + 1, shuffled)
    return out, {"swap": swap, "matched": matched, "shuffled": shuffled}


def _demote(lines: list[dict[str, Any]], why: str) -> None:
    """The claim stays readable, its "beyond noise" goes."""
    for line in lines:
        line |= {"beyond_noise": False, "text": line["text"] + "; not a sign the shortcut is gone: " + why}


class Seen(NamedTuple):
    """What a check reads: the runs, the claim lines by name, the original's reliance, the user's word."""

    runs: Sequence[dict[str, Any]]
    figures: dict[str, dict[str, Any] | None]
    original: dict[str, Any] | None
    object_colour: str
    claim: bool


class Gated(NamedTuple):
    """A check that fired: the line it prints (None: none), which swap claims it withdraws, and why."""

    line: dict[str, Any] | None
    withdraws: Callable[[dict[str, Any]], bool]
    why: str = ""


def _random_class(seen: Seen) -> Gated | None:
    shuffled = seen.figures["shuffled"]
    if shuffled is None or (shuffled["beyond_noise"] and shuffled["mean"] > 0):
        return None
    return Gated(None, lambda line: line is not shuffled,
                 "on a random class's background the treated model is not better beyond noise (the random-class line), "
                 "so what it gained on other classes' backgrounds it lost on its own: a model that guesses gains there too")


def _colour_matched(seen: Seen) -> Gated | None:
    matched = seen.figures["matched"]
    if matched is None:
        return None
    if seen.object_colour == "own":
        return Gated(None, lambda line: line is matched, "you said an object's colour is its own (--object-colour own), "
                     "and this figure takes it away")
    if matched["beyond_noise"] and matched["mean"] > 0:
        return None
    return Gated(None, lambda line: True, "with the object's colour matched to the partner's the treated model is not "
                 "better beyond noise (the colour-matched line), so it may read a cue over the whole image, object included")


def _colour_word(seen: Seen) -> Gated | None:
    split = colour_split(seen.runs, seen.original)
    if split and seen.object_colour != "unknown":
        word = seen.object_colour
        held = "plain" if word == "own" else "colour-matched"
        split = {"what": "colour word", "beyond_noise": False, "split": split["split"], "text": (
            f"note: the swap figures split on colour ({split['split']}): the model reads its object's colour, and you "
            f"said that colour is {'its own' if word == 'own' else 'possibly a cue'} (--object-colour {word}), so the "
            f"{held} figure is the one to read")}
    return Gated(split, lambda line: False) if split else None


def _both(seen: Seen) -> Gated | None:
    line = both_ways(seen.original) if seen.claim else None
    return Gated(line, lambda _: True, "see the caution on a cue over the object") if line else None


def _reads_backwards(seen: Seen) -> Gated | None:
    line = _backwards(seen.runs)
    return Gated(line, lambda _: True, "see the warning on reading the background backwards") if line else None


#: the checks that may withdraw a swap claim, in the order they print; a new one is a function and a line here
GATES: dict[str, Callable[[Seen], Gated | None]] = {
    "random class": _random_class, "colour matched": _colour_matched, "colour word": _colour_word,
    "both ways": _both, "backwards": _reads_backwards}


def _gates(out: list[dict[str, Any]], seen: Seen) -> list[dict[str, Any]]:
    """Run :data:`GATES`: withdraw the swap claims each one does not back (in place); return their lines."""
    said = []
    for gate in GATES.values():
        fired = gate(seen)
        if fired is None:
            continue
        withdrawn = [line for line in out if line["what"].startswith("background-swap accuracy") and line["beyond_noise"]
                     and fired.withdraws(line)]
        if fired.why:
            _demote(withdrawn, fired.why)
        if fired.line is not None:
            said.append(fired.line)
    return said


def _cautions(runs: Sequence[dict[str, Any]], pools: Pools, where: Any) -> list[dict[str, Any]]:
    """Size, coverage, the blind spot, and the background-only warning."""
    out = []
    if len(where) < FEW_RELIANCE_IMAGES:
        chose = (f"{len(pools.select)} chose the epochs and weights" if pools.select is not None else
                 "none chose the epochs and weights")
        out.append({"what": "size", "beyond_noise": False, "text": (
            f"caution: these figures rest on {len(where)} images ({chose}); one image moves them by up to "
            f"{100 / len(where):.0f} points" + (", and a choice made on so few is as noisy" if pools.select is not None else "")
            + ": annotate more images per class or raise --holdout (docs/method.md, E6)")})
    missing = len(where) - int(where.refined.sum())
    if missing:
        why = ", ".join(f"{v} {k}" for k, v in where.refine_report()["not_refined"].items())
        out.append({"what": "coverage", "beyond_noise": False, "text": (
            f"coverage: {missing} of {len(where)} report images have no refined foreground ({why}): a cue inside their "
            "annotation would be invisible to both measures there")})
    out.append({"what": "blind spot", "beyond_noise": False, "text": (
        "blind spot: every swap moves the object's own pixels with it, so a cue drawn over the object (a watermark, "
        "colour noise) is invisible to the figures above (a colour cast over the whole image excepted: the "
        "colour-matched figure moves it with the background): judge such a cue on images where you changed it; so is a "
        "cue hugging the object's outline (a glow, a shadow, a mount) wherever the mask keeps it "
        "with the object: look at the refined masks in the report, and where they keep a rim, draw exact masks or "
        "erode it with --erode N (docs/method.md)")})
    bg = [_rel(r, "treated")["bg_only_acc"] for r in runs]
    chance = _rel(runs[0], "treated")["chance"] if runs else 0.0
    if bg and sum(bg) / len(bg) > 2 * chance:
        out.append({"what": "background only", "beyond_noise": False, "text": (
            f"warning: the treated model still predicts the class from the background alone on "
            f"{100 * sum(bg) / len(bg):.0f} % of report images (chance {100 * chance:.0f} %)")})
    return out
