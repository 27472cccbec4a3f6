"""Does the reliance figure the user reads track the truth? Reads the shortcut benchmarks' JSON.

For every model a shortcut benchmark trained (original, CE-only control, treated; every seed and
annotation kind), the truth is its shuffled-cue test accuracy and the user's figure is the
background-swap accuracy ``treat`` prints, measured on held-out annotated images. On E6 (two
classes, rows of kind ``waterbirds``) the truth is the mean accuracy of the cue-conflicting test
groups: a swap onto another class's background puts the object on the other class's place, which
is what those groups are (a shuffled cue, with two classes, agrees half the time). Three checks:

1. Spearman correlation between the two over all models of a benchmark (target ≥ 0.8);
2. the swap verdict never says "better beyond noise" where the shuffled-cue test accuracy is not
   better beyond seed noise (same seeds, same rule: |mean| > 2 std; where one set of images served
   every seed (E2, the ablations) and the rows carry per-image values, the swap verdict's noise
   also holds the images' own, as ``treat``'s does: ``model_doctor.study.verdict``);
3. for every treated model, |swap accuracy − shuffled-cue test accuracy| ≤ 25 points.

Also, the other way round (how much the noise rule costs): of the arms whose shuffled-cue test
accuracy is better than the control's beyond seed noise, how many the swap verdict calls better.

Where a row carries ``cells_test_acc`` (E4b and the later E5 runs), the three checks again against
the truth with every (class, cue) test cell weighted equally (``bench_e5_inbox.equal_cells``), and
each false "beyond noise" says whether the cue-conflicting cells' accuracy is better beyond noise.
Where a row carries ``redraw_test_acc`` (E5/E4b rows since 2026-12-03), the truth against itself:
the Spearman correlation, over the same models, of the truth and the truth measured on another draw
of the test split (plain and with equal cells; median and range over the draws), and of the plain
truth and its expectation over the cue (equal cells, same images): what a measure that knew each
model's reliance exactly would score.

Where a row says how many report images its figure rests on (E6), also: is the truth inside the
figure's 95 % Wilson interval, which ``treat`` prints beside it? Where a row also carries the
same swap measure on the benchmark's test images (E6 rule rows and E4b/E5 rows since
2026-12-02: every test image, boxes from the writer): how far that is from the truth, which tells the measure's own bias
from the sampling noise of a small report set. And where a row carries the
backwards sign test (E6 rule rows since 2026-12-02): of the treated models that read the place
backwards on the test set (cue-conflicting groups more accurate than cue-agreeing ones, by more
than twice the standard error of that difference where the row gives it), how many
``treat`` warns about (its sign test at 0.05, one seed per original), and how many warnings fire
on a model that does not.

Rows that name a ``headline`` (E5 runs since 2026-12-05) are checked on the figure ``treat`` put first
(``--object-colour cue``: the colour-matched swap). ``--two-truths`` adds ``benchmarks.object_colour``'s
models under both readings of an object's colour: the same figures against the truth where the tint is
the object's own and where it is a cue.

Usage: python -m benchmarks.reliance_vs_truth docs/results/e5/e5_inbox.json [A.json+B.json ...] [--out docs/results/reliance/reliance_vs_truth.md]
(``A.json+B.json``: one benchmark whose seeds separate runs wrote, checked as one.)
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
from pathlib import Path

from model_doctor.treatment.reliance import wilson_interval


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


#: the calibration bar: a "beyond noise" claim within this many points of the truth's gain
CALIBRATION_PTS = 0.25


def judged(rs: list[dict]) -> dict | None:
    """The headline line ``treat``'s verdict gives these seeds (the library's rule, not restated here)."""
    from benchmarks._common import judge

    chance = 0.5 if rs[0]["kind"].startswith("waterbirds") else 0.1
    said = judge([r["treated"] for r in rs], [r["control"] for r in rs],
                 [r["original_reliance"] for r in rs if r.get("original_reliance")], _images(rs[0]), chance,
                 rs[0].get("headline", "swap_acc"))
    return said[0] if said else None


def beyond_noise(d: list[float]) -> bool:
    """Beyond noise either way, by the study's one rule."""
    from model_doctor.study import beyond_noise as rule

    return rule(d)


def beyond(d: list[float], image_se: float | None = None) -> bool:
    """Better beyond noise, by ``treat``'s rule (:func:`model_doctor.study.verdict`)."""
    from model_doctor.study import verdict

    v = verdict(d, "", image_se=image_se)
    return bool(v["beyond_noise"]) and statistics.mean(d) > 0


def swap_image_se(rows: list[dict], *keys: str) -> float | None:
    """The images' noise of treated − control swap accuracy where every row was measured on the
    same images (``same_images``) and carries per-image values; else None (each seed's own report
    set: the seed spread holds that noise already)."""
    from model_doctor.study import image_se_of

    keys = keys or ("swap_acc", "swap_acc_by_background")
    if not rows or not all(r.get("same_images") and all(k in r[a].get("per_image", {}) for k in keys for a in ("treated", "control"))
                           for r in rows):
        return None
    return image_se_of([r["treated"]["per_image"] for r in rows], [r["control"]["per_image"] for r in rows], keys)


def as_read(row: dict) -> dict:
    """``row`` with the figure the user reads first in ``swap_acc``: a run with ``--object-colour
    cue`` (``headline``: ``matched_swap_acc``) heads with the colour-matched swap, so its models'
    figure, per-image values included, is that one; other rows unchanged."""
    if row.get("headline", "swap_acc") == "swap_acc":
        return row

    def told(rel: dict | None) -> dict | None:
        if rel is None or "matched_swap_acc" not in rel:
            return rel
        per = rel.get("per_image", {})
        moved = {k: per[f"matched_{k}"] for k in ("swap_acc", "swap_acc_by_background") if f"matched_{k}" in per}
        return {**rel, "swap_acc": rel["matched_swap_acc"], **({"per_image": {**per, **moved}} if per else {})}

    return {**row, **{a: told(row.get(a)) for a in ("original_reliance", "control", "treated")}}


def check(rows: list[dict]) -> tuple[list[str], dict]:
    """Table lines for one benchmark's rows and the three checks' outcome."""
    from model_doctor.treatment.verdicts import BACKWARDS_ALPHA

    raw = [r for r in rows if not r["arm"].endswith("norefine")]   # what the library judges: the rows as measured
    rows = [as_read(r) for r in rows]
    pts, lines, worst, worst_cells, worst_matched, inside, sized, on_test = [], [], 0.0, 0.0, 0.0, 0, 0, []
    backwards = {"warned": 0, "reads_backwards": 0, "false_alarms": 0, "measured": 0}
    shown, rows = rows, [r for r in rows if not r["arm"].endswith("norefine")]   # the checks: the default measure
    seen = set()
    for r in rows:
        # one point per model: arms that share an original (and control) measured on the same images count it once
        shared = r.get("shared_models", r["control"] is None)
        cells, again, again_cells = (r.get(k, {}) for k in ("cells_test_acc", "redraw_test_acc", "redraw_cells_test_acc"))
        if not shared or (r["kind"], r["seed"]) not in seen:
            pts.append((r["original_reliance"]["swap_acc"], r["original"], r["original_reliance"].get("test_pool_swap_acc"),
                        cells.get("original"), again.get("original"), again_cells.get("original"),
                        r["original_reliance"].get("matched_swap_acc")))
            if r["control"] is not None:
                pts.append((r["control"]["swap_acc"], r["control"]["test_acc"], r["control"].get("test_pool_swap_acc"),
                            cells.get("control"), again.get("control"), again_cells.get("control"),
                            r["control"].get("matched_swap_acc")))
            seen.add((r["kind"], r["seed"]))
        pts.append((r["treated"]["swap_acc"], r["treated"]["test_acc"], r["treated"].get("test_pool_swap_acc"), cells.get("treated"),
                    again.get("treated"), again_cells.get("treated"), r["treated"].get("matched_swap_acc")))
        worst = max(worst, abs(r["treated"]["swap_acc"] - r["treated"]["test_acc"]))
        if "matched_swap_acc" in r["treated"]:
            worst_matched = max(worst_matched, abs(r["treated"]["matched_swap_acc"] - r["treated"]["test_acc"]))
        if "treated" in cells:
            worst_cells = max(worst_cells, abs(r["treated"]["swap_acc"] - cells["treated"]))
        t = r["treated"]
        if "test_pool_swap_acc" in t:
            on_test.append(abs(t["test_pool_swap_acc"] - t["test_acc"]))
        if "backwards_p" in t and "agreeing_test_acc" in t:
            warned = t["backwards_p"] < BACKWARDS_ALPHA
            from model_doctor.study import exceeds_noise

            se = t.get("backwards_se", t.get("backwards_margin", 0.0) / 2)   # rows written before: twice the s.e.
            truth = exceeds_noise(t["test_acc"] - t["agreeing_test_acc"], se, gain=True)
            backwards["measured"] += 1
            backwards["reads_backwards"] += truth
            backwards["warned"] += warned and truth
            backwards["false_alarms"] += warned and not truth
        if _images(r):
            lo, hi = wilson_interval(r["treated"]["swap_acc"], _images(r))
            sized, inside = sized + 1, inside + int(lo <= r["treated"]["test_acc"] <= hi)
    rho = spearman([p[0] for p in pts], [p[1] for p in pts])
    # the same rank check with the measure on every test image: where it fails too, the ranks the
    # truth gives its near-chance models (cue-matching test images) are what the check cannot follow
    rho_test = spearman([p[2] for p in pts], [p[1] for p in pts]) if all(p[2] is not None for p in pts) else None
    # the colour-matched swap in place of the plain one, where every model of the table carries it
    rho_matched = spearman([p[6] for p in pts], [p[1] for p in pts]) if pts and all(p[6] is not None for p in pts) else None
    # the same check against the truth with every (class, cue) test cell weighted equally: a model that reads only
    # the cue scores exactly 1/K there, whichever share of a seed's test images drew their own class's cue
    rho_cells = spearman([p[0] for p in pts], [p[3] for p in pts]) if all(p[3] is not None for p in pts) else None
    # the truth against itself: the same models on other draws of the test split (rows that carry them), one per draw
    retest = {name: [spearman([p[i] for p in pts], [p[j][d] for p in pts]) for d in range(len(pts[0][j]))]
              if pts and all(p[i] is not None and p[j] is not None for p in pts) else None
              for name, i, j in (("plain", 1, 4), ("cells", 3, 5))}
    # and the plain truth against its own expectation over the cue (equal cells, the same images): what a measure that
    # knew each model's reliance exactly would score on the rank check
    retest["expected"] = spearman([p[3] for p in pts], [p[1] for p in pts]) if rho_cells is not None else None
    extra = any("test_pool_swap_acc" in r["treated"] for r in shown)
    eq = any("cells_test_acc" in r for r in shown)
    lines += ["| cue | annotation | seed | model | shuffled-cue test acc | user's swap acc | |difference| |"
              + (" swap acc on the test images (benchmark only) |" if extra else "")
              + (" shuffled-cue test acc, equal (class, cue) cells |" if eq else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if extra else "") + ("---|" if eq else "")]
    for r in shown:
        models = [("original", r["original_reliance"], r["original"])]
        models += [(a, r[a], r[a]["test_acc"]) for a in ("control", "treated") if r[a] is not None]
        for arm, rel, acc in models:
            lines.append(f"| {r['kind']} | {r['arm']} | {r['seed']} | {arm} | {100 * acc:.1f} | {100 * rel['swap_acc']:.1f} | "
                         f"{100 * abs(rel['swap_acc'] - acc):.1f} |"
                         + (f" {_pct(rel.get('test_pool_swap_acc'))} |" if extra else "")
                         + (f" {_pct(r.get('cells_test_acc', {}).get(arm))} |" if eq else ""))
    false_claims, false_cells, gains = [], [], {"true": 0, "said": 0}
    calibration = {"claims": 0, "backed": 0, "worst": 0.0, "off": [], "figures": set(),
                   "written": _written(raw)}
    groups: dict[tuple, list[dict]] = {}
    for r in raw:
        groups.setdefault((r["kind"], r["arm"]), []).append(r)
    for key, rs in groups.items():
        if any(r["control"] is None for r in rs):
            continue  # no control, no verdict to check
        truth = [r["treated"]["test_acc"] - r["control"]["test_acc"] for r in rs]
        head = judged(rs)
        said, true = bool(head and head["beyond_noise"] and head["mean"] > 0), beyond(truth)
        calibration["figures"] |= set(head.get("figures", ())) if head else set()
        if head and head["beyond_noise"]:   # calibration: every "beyond noise" backed in sign and within 25 points
            calibration["claims"] += 1
            t = statistics.mean(truth)
            gap = abs(head["mean"] - t)
            ok = beyond_noise(truth) and (t > 0) == (head["mean"] > 0) and gap <= CALIBRATION_PTS
            calibration["backed"] += ok
            calibration["worst"] = max(calibration["worst"], gap)
            if not ok:
                calibration["off"].append(f"{' / '.join(map(str, key))} (claims {100 * head['mean']:+.1f}, truth "
                                          f"{100 * t:+.1f}{'' if beyond_noise(truth) else ' within noise'})")
        if said and not true:
            # where the row has it: is the cue-conflicting test accuracy (what a swap stands for) better beyond noise?
            conf = [r["conflicting_test_acc"]["treated"] - r["conflicting_test_acc"]["control"] for r in rs
                    if "conflicting_test_acc" in r]
            false_claims.append(" / ".join(map(str, key)) + (
                f" (cue-conflicting test acc {'better' if beyond(conf) else 'not better'} beyond noise)"
                if len(conf) == len(rs) else ""))
        if all("cells_test_acc" in r for r in rs) and said and not beyond(
                [r["cells_test_acc"]["treated"] - r["cells_test_acc"]["control"] for r in rs]):
            false_cells.append(" / ".join(map(str, key)))
        if true:
            gains["true"] += 1
            gains["said"] += said
    cells_res = "—" if rho_cells is None else (f"{rho_cells:.2f} / {100 * worst_cells:.1f} / "
                                                f"{', '.join(false_cells) or 'never'}")
    return lines, {"spearman": rho, "spearman_test": rho_test, "retest": retest,
                   "matched": "—" if rho_matched is None else f"{rho_matched:.2f} / {100 * worst_matched:.1f}",
                   "models": len(pts), "cells": cells_res, "calibration": calibration, "false_claims": false_claims, "worst_treated_gap": worst,
                   "true_gains": f"{gains['said']} of {gains['true']}" if gains["true"] else "—",
                   "inside": f"{inside} of {sized}" if sized else "—",
                   "on_test": f"{100 * max(on_test):.1f}" if on_test else "—",
                   "backwards": (f"{backwards['warned']} of {backwards['reads_backwards']} warned; "
                                 f"{backwards['false_alarms']} false" if backwards["measured"] else "—")}


def _retest(r: dict) -> str:
    """equal cells against plain, same images / plain re-drawn / equal cells re-drawn: the median (min–max) over
    the re-draws."""
    def one(v: list[float] | None) -> str:
        if not v:
            return "—"
        return f"{statistics.median(v):.2f}" + (f" ({min(v):.2f}–{max(v):.2f})" if len(v) > 1 else "")

    if r.get("expected") is None:
        return "—"
    return f"{r['expected']:.2f} / " + " / ".join(one(r[k]) for k in ("plain", "cells"))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _without(row: dict, figures: list[str]) -> dict:
    """The row with ``figures`` taken out of every model's reliance dict (``--drop``)."""
    if not figures:
        return row
    strip = lambda d: {k: v for k, v in d.items() if k not in figures} if isinstance(d, dict) else d
    return {**row, **{a: strip(row[a]) for a in ("treated", "control", "original_reliance") if a in row}}


def _written(rows: list[dict]) -> set[str]:
    """The swap figures the code that wrote every row knew, measured or not (NaN: the colour-transferred swap on
    grey images), so a grey table of today is not counted with the tables written before a figure existed."""
    from model_doctor.treatment.verdicts import FIGURES

    arms = [r[a] for r in rows for a in ("treated", "control") if r.get(a) is not None]
    return {k for k in FIGURES if arms and all(k in m for m in arms)}


def recorded_command(path: str) -> str | None:
    """The command a benchmark table records in the markdown beside its JSON (``Command: `...` ``), without the
    flags that change where it writes or keeps models, how many threads it uses or whether it trains
    (``--cached-only``: the models a cache holds, measured), so two runs of one setting compare equal."""
    from benchmarks._common import provenance

    command = provenance(Path(path))[0]
    if command is None:
        return None
    words, out = shlex.split(command), []
    for i, w in enumerate(words):
        if w in ("--out", "--threads", "--cache", "--cached-only") or (i and words[i - 1] in ("--out", "--threads", "--cache")):
            continue
        out.append(w)
    return " ".join(out)


def calibration_totals(results: list[tuple[str, dict]]) -> list[str]:
    """The calibration table's bottom line, split by whether a table carried every figure the verdict reads today:
    a table written before a figure existed is judged on fewer, which is not the verdict ``treat`` prints now. An
    older table whose claim is not backed names the tables with every figure that reran its recorded command (its
    ``command``), and what the verdict said there, beside it: the record stays, and so does what replaced it."""
    from model_doctor.treatment.verdicts import FIGURES

    def full(c: dict) -> bool:
        return set(FIGURES) <= c.get("written", c["figures"])

    def rerun(c: dict) -> str:
        again = [(n, d) for n, d in results if full(d) and c.get("command") and d.get("command") == c["command"]]
        said = [f"{n}, " + (f"{d['backed']} of {d['claims']} claims backed" if d["claims"] else "no claim") for n, d in again]
        return f" (the same command with every figure: {'; '.join(said)})" if said else ""

    out = []
    for label, keep in (("with every figure the verdict reads today", True),
                        ("written before a figure existed (judged on the figures they carry)", False)):
        part = [(n, c) for n, c in results if full(c) == keep]
        claims, backed = sum(c["claims"] for _, c in part), sum(c["backed"] for _, c in part)
        off = [f"{n}: {o}{rerun(c)}" for n, c in part for o in c["off"]]
        out.append(f"- Tables {label}: {len(part)}; {backed} of {claims} claims backed"
                   + (f"; not backed: {'; '.join(off)}." if off else "."))
    return out


def _figure_names(keys: set[str]) -> str:
    """The verdict's figures a table's rows carried, by their short names, in the verdict's order."""
    from model_doctor.treatment.verdicts import FIGURES

    return ", ".join(FIGURES[k].removesuffix(" swap") for k in FIGURES if k in keys) or "—"


def _images(r: dict) -> int:
    """The report images a row's figure rests on, where the row says (E5, E6: ``images``, or the
    ``box<N>-`` of its arm name as ``bench_waterbirds.truth_rows`` writes it); else 0."""
    if "images" in r:
        return int(r["images"])
    m = re.match(r"box(\d+)-", r["arm"]) if r["kind"].startswith("waterbirds") else None
    return int(m.group(1)) if m else 0


def as_rows(rows) -> list[dict]:
    """E2's per-seed records (``{"seed", "original", "control", arm: {...}}``) and a ``treat
    --groups`` ``summary.json`` on E6 data as rows of this check (one per arm: original, control
    and the arm); other benchmarks' rows unchanged."""
    if isinstance(rows, dict) and "runs" in rows:  # a `treat --groups` summary.json on E6 data
        return _from_treat(rows)
    if not rows or "kind" in rows[0]:
        return rows
    out = []
    for rec in rows:
        o, c = rec["original"], rec["control"]
        for arm, r in rec.items():
            if arm in ("seed", "original", "control"):
                continue
            per = lambda m: {"per_image": m["report_per_image"]} if "report_per_image" in m else {}
            out.append({"kind": "decoy patch", "arm": arm, "seed": rec["seed"], "original": o["test_shuffled"],
                        "original_reliance": {"swap_acc": o["report_swap_acc"]},
                        "control": {"swap_acc": c["report_swap_acc"], "test_acc": c["test_shuffled"], **per(c)},
                        "treated": {"swap_acc": r["report_swap_acc"], "test_acc": r["test_shuffled"], **per(r)},
                        # one original and one control per seed; one set of validation images for every seed
                        "shared_models": True, "same_images": True})
    return out


def _from_treat(s: dict) -> list[dict]:
    """Rows from a ``treat`` summary on E6 data: the truth is the cue-conflicting test groups' accuracy."""
    from benchmarks.bench_waterbirds import conflicting

    o = s["original"]
    orig = conflicting({"per_group": o["groups"]["per_group"]})
    rule = s["selection"]["select_rule"]
    def arm(rel: dict, groups: dict) -> dict:
        return {"swap_acc": rel["swap_acc"], "test_acc": conflicting(groups),
                **({"shuffled_swap_acc": rel["shuffled_swap_acc"]} if "shuffled_swap_acc" in rel else {}),
                **({"per_image": rel["per_image"]} if "per_image" in rel else {})}

    return [{"kind": "waterbirds (treat CLI)", "arm": f"box{s['masks']['report']}-{rule} rule", "seed": r["seed"],
             "images": s["masks"]["report"], "same_images": True,   # one run: every seed on the same report images
             "original": orig, "original_reliance": {"swap_acc": o["background_reliance"]["swap_acc"]},
             **{a: arm(r[a]["background_reliance"], r[a]["groups"]) for a in ("control", "treated")}} for r in s["runs"]]


def pooled(rows: list[dict]) -> dict[str, tuple[int, float]]:
    """Per cue (row ``kind``) and over all: (models, Spearman) with every distinct model once. Why:
    a table's 9 models hold 6 near chance (originals and controls), whose order on the truth is
    which test images drew their own class's cue; pooled over every setting, the treated models
    spread the truth wide and the check asks whether the figure orders them. A model is the same
    where its cue, seed, role, annotation kind and both figures are (the tables reuse originals and
    controls); ``norefine`` rows, a measure variant, are left out."""
    seen: dict[tuple, tuple[str, float, float]] = {}
    for r in rows:
        if "norefine" in r["arm"] or "swap_acc" not in r.get("original_reliance", {}):
            continue
        told, r = r.get("headline", "swap_acc") != "swap_acc", as_read(r)
        # an original read with another figure (--object-colour cue) is a model its default table counts already
        models = [] if told else [("original", r["original"], r["original_reliance"]["swap_acc"])]
        models += [(a, r[a]["test_acc"], r[a]["swap_acc"]) for a in ("control", "treated") if r[a] is not None]
        for role, truth, figure in models:
            key = (r["kind"], r["seed"], role, r["arm"], round(truth, 4), round(figure, 4))
            seen[key] = (r["kind"], truth, figure)
    out: dict[str, tuple[int, float]] = {}
    for kind in sorted({k for k, _, _ in seen.values()}) + ["all"]:
        m = [(t, f) for k, t, f in seen.values() if kind in ("all", k)]
        if len(m) > 2:
            out[kind] = (len(m), spearman([t for t, _ in m], [f for _, f in m]))
    return out


def two_truths(paths: list[str]) -> list[str]:
    """The same models under two truths (``benchmarks.object_colour``): objects tinted by their
    class's hue, read as the object's own colour (truth: test accuracy on a random class's
    background) or as a cue on the object (truth: with a random class's tint as well). The
    training images, the models and every figure are the same either way, so no figure computed
    from them can be within 25 points of both where the two truths part by more than 50; the
    user's word (``--object-colour own|cue``) names the truth, and the lowest of the figures that
    word leaves on (what the headline reads) is checked against it."""
    from model_doctor.treatment.verdicts import COLOUR_FIGURES, FIGURES

    lines = ["", "## Same models, two truths", "",
             "Objects tinted by their class's hue (`benchmarks.object_colour`, seeds 15-17, originals as E5's). Whether "
             "the tint is the object's own colour (a yellow fruit: the truth is test accuracy on a random class's "
             "background) or a cue on the object (a stain: the truth also gives each test image a random class's tint) "
             "is not in the training images, the models or any figure measured from them; it is the user's. Where "
             "the two truths part by more than 50 points, no figure can be within 25 of both. The last two columns are "
             "the lowest of the figures each word of `--object-colour` leaves on (`own`: the plain and silhouette "
             "swaps; `cue`: all four, the colour-matched first), against the truth that word names; a row written "
             "before a figure existed (—) is judged on those it carries.", "",
             "| variant | seed | truth, tint own | truth, tint a cue | plain swap | colour-matched swap | silhouette swap | "
             "the two truths apart | `own`: |lowest figure − truth own| | `cue`: |lowest figure − truth cue| |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        for r in json.loads(Path(path).read_text()):
            own, cue = r["truth"], r["tint_shuffled"]
            have = [k for k in FIGURES if r.get(k) is not None and r[k] == r[k]]
            low_own = min(r[k] for k in have if k not in COLOUR_FIGURES)
            low_cue = min(r[k] for k in have)
            lines.append(f"| {Path(path).stem} | {r['seed']} | {100 * own:.1f} | {100 * cue:.1f} | "
                         f"{100 * r['swap_acc']:.1f} | {100 * r['matched_swap_acc']:.1f} | "
                         f"{_pct(r.get('silhouette_swap_acc'))} | {100 * abs(own - cue):.1f} | "
                         f"{100 * abs(low_own - own):.1f} | {100 * abs(low_cue - cue):.1f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--two-truths", nargs="*", default=[], metavar="JSON",
                    help="benchmarks.object_colour results: the same models under both readings of an object's colour")
    ap.add_argument("--drop", nargs="*", default=[], metavar="FIGURE",
                    help="judge as if the rows lacked these figures (e.g. silhouette_swap_acc): what the verdict said "
                         "before a figure existed, on the same models")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from benchmarks._common import emit

    out = ["# Reliance measure vs the truth" + (f", judged without {', '.join(args.drop)}" if args.drop else ""), "",
           f"Command: `python -m benchmarks.reliance_vs_truth {' '.join(args.inputs)}"
           + (f" --drop {' '.join(args.drop)}" if args.drop else "") + "`", "",
           "The truth is shuffled-cue test accuracy (E6, two classes: the mean accuracy of the cue-conflicting test "
           "groups, which is what a swap onto another class's background stands for); the user's figure is the "
           "held-out background-swap accuracy "
           "`treat` prints (report images: never trained on, never used to select; foreground refined by GrabCut "
           "unless the arm says `norefine`; E4 scratch, E2 and the ablations (E2's originals) have no report set: their figure is measured on the "
           "validation images, never trained on, which chose each arm's epoch by clean validation accuracy). "
           "The checks cover the defaults (the e5_colour_ep30 tables excepted: 30 epochs); `norefine` rows (the measure before "
           "refinement) are listed to show what it missed. The two columns on the test images (rows that carry it: E6 rule "
           "studies, E4b, the later E5 runs) use the same swap measure on every test image instead of the report images: "
           "no user has it; it shows how much of the user's gap is the measure's bias and how much the noise of a small "
           "report set; its Spearman column (where every model "
           "of a table carries it) says whether a rank miss is the report set's or the truth's own: the truth ranks near-chance "
           "models by how many test images happen to carry their own class's cue, which no background measure can see. The "
           "last column (rows that carry it: E4b and the later E5 runs, whose test folders record each image's cue) checks "
           "the same three things against the truth with every (class, cue) cell of the test set weighted equally: the "
           "expectation the shuffled-cue accuracy estimates, without the share of a seed's test images that drew their own "
           "class's cue (7.3 % to 12.3 % on E5's seeds), which is what a model that reads only the cue scores; there it "
           "scores exactly 1/K (`benchmarks.bench_e5_inbox.cell_truth`). It does not replace the plain truth. Where the swap "
           "verdict says \"beyond noise\" and the truth does not, the claim says in brackets whether the cue-conflicting test "
           "accuracy (the cells whose cue codes another class: what a swap onto another class's background stands for) is "
           "better beyond noise. The verdict checked is the one `treat` prints today: the library's "
           "`model_doctor.treatment.verdicts.judge_reliance` applied to each table's per-seed figures (the lowest of the "
           "plain, colour-matched, colour-transferred and silhouette swaps a row carries; withdrawn where they disagree by more than their "
           "noise, where the random-class swap gains nothing, where the originals' figures say their cue lies on the "
           "object too, or where a treated model reads the background backwards); tables written before a figure "
           "existed are judged on the figures they carry (a figure they lack could only withdraw a claim or move it "
           "towards no change, which these tables cannot show; an unbacked one names, beside it, the tables with "
           "every figure that ran the command it records). The calibration table says, per table, whether every "
           "\"beyond noise\" the verdict gives is backed: the truth moved beyond noise the same way and the claimed "
           "gain is within 25 points of the true one. The "
           "last column gives the rank and distance checks with that figure in place of the plain swap, on the tables "
           "whose every model carries it. The column before it (E5 and E4b rows that carry it) measures "
           "the truth itself again on "
           "other draws of each seed's test split from the same generator (other objects, cues and places; draw i: seed "
           "1000·i + s, `bench_e5_inbox.cell_truth(..., again=i)`) and gives the Spearman correlation of the truth and "
           "each re-drawn truth over the same models, median (min–max) over the draws, for the plain truth and the one "
           "with equal cells; before them, the plain truth against its own expectation over the cue (equal cells, "
           "the same images): the rank check's score for a measure that knew every model's reliance exactly, the "
           "most a measure can be asked for. The re-draws say how much of the truth's order is the benchmark's own "
           "draw. Tables run with `treat --object-colour cue` (`_colourcue`; rows whose `headline` names it) are "
           "checked on the figure that run prints first, the colour-matched swap, for the original, the control and "
           "the treated model alike (`as_read`); the pooled count takes their originals from their default tables. "
           "The section after the pooled table puts `benchmarks.object_colour`'s models under both readings of an "
           "object's colour (`--two-truths`).", ""]
    summary = ["| benchmark | models | Spearman (≥ 0.8) | swap verdict beyond noise where the truth is not | "
               "worst treated |swap − truth| (≤ 25 pts) | treated truth inside the figure's 95 % interval | "
               "treated models reading backwards on test that `treat` warns about | "
               "worst treated |swap − truth| with the measure on the test images (benchmark only) | "
               "Spearman with the measure on the test images (benchmark only) | "
               "arms better beyond seed noise on the truth that the swap verdict also calls better | "
               "against the truth with equal (class, cue) cells: Spearman / worst treated |swap − truth| / "
               "swap verdict beyond noise where that truth is not | "
               "the truth against itself (benchmark only), Spearman: its expectation over the cue (equal cells) against it "
               "on the same images / it on re-drawn test splits / equal cells on re-drawn test splits | "
               "with the colour-matched swap in place of the plain one (tables whose every model carries "
               "it): Spearman (≥ 0.8) / worst treated |figure − truth| (≤ 25 pts) |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    calib = ["", "## Calibration: every \"beyond noise\" the verdict gives, against the truth", "",
             "| benchmark | figures the verdict had (tables written before a figure existed lack it) | claims | "
             "backed (truth beyond noise the same way, within 25 pts) | worst |claim − truth| | claims not backed |",
             "|---|---|---|---|---|---|"]
    body, every, calibrated = [], [], []
    for arg in args.inputs:
        paths = arg.split("+")  # one benchmark's seeds written by separate runs: A.json+B.json
        rows = [_without(row, args.drop) for path in paths for row in as_rows(json.loads(Path(path).read_text()))]
        every += rows
        lines, res = check(rows)
        name = " + ".join(Path(p).stem for p in paths)
        summary.append(f"| {name} | {res['models']} | {res['spearman']:.2f} | "
                       f"{', '.join(res['false_claims']) or 'never'} | {100 * res['worst_treated_gap']:.1f} | "
                       f"{res['inside']} | {res['backwards']} | {res['on_test']} | "
                       f"{'—' if res['spearman_test'] is None else format(res['spearman_test'], '.2f')} | {res['true_gains']} | "
                       f"{res['cells']} | {_retest(res['retest'])} | {res['matched']} |")
        c = dict(res["calibration"], command=recorded_command(paths[0]) if len(paths) == 1 else None)
        calib.append(f"| {name} | {_figure_names(c['figures'])} | {c['claims']} | {c['backed']} | {100 * c['worst']:.1f} | {'; '.join(c['off']) or 'none'} |")
        calibrated.append((name, c))
        body += ["", f"## {name}", ""] + lines
    pool = ["", "Every distinct model of the tables above once, per cue (the rows' kind) and over all "
            "(`pooled`): the rank check over each cue's settings and seeds together, beside the per-table one above, "
            "whose 9 models hold 6 near chance ordered by the test split's own draw.", "",
            "| cue | distinct models | Spearman (≥ 0.8) |", "|---|---|---|"]
    pool += [f"| {k} | {n} | {rho:.2f} |" for k, (n, rho) in pooled(every).items()]
    calib += [""] + calibration_totals(calibrated)
    return emit(out + summary + calib + pool + two_truths(args.two_truths) + body, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
