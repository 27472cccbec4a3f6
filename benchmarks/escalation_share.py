"""What ``treat``'s escalation reads, on every cached E5 and E4b treat run: is the default share right?

``treat`` trains every arm again at ``--kl-weight 0`` for 3× the epochs where the first round's
treated model, on the held-out *selection* images pasted on another class's background, keeps under
``--escalate-below`` (0.5) × the original's accuracy on those images as annotated
(:func:`model_doctor.study.escalation`). Per cached run (one seed each) this prints that
share: from the run's summary where the run already escalated or not, else measured again from its
saved first-round models and its own selection set (``escalation.json`` beside the run, so a second
call only reads). No test image and no report image is read.

The first default, 0.3, was chosen on the E5 runs of seeds 3-11 (photo, colour, dots, pattern,
texture) and ran on photo and colour seeds 12-14 (cache name ``esc0.3``). Colour seed 13 kept 44 %
there, did not escalate, and closed 38 % of the gap; no share separates colour's seeds, so today's
0.5 (half the original's accuracy) was chosen on seeds 3-14 and E4b's runs (which keep 65-90 %).
Colour's, texture's, pattern's and dots' seeds 15-17 ran after it was fixed, and so did every run of
``gradient``, a cue written after it.

Usage: python -m benchmarks.escalation_share [--cache runs/bench] [--budget full]
       [--out docs/results/e5/escalation_share.md]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from benchmarks._common import emit, header
from benchmarks._studies import ROOT

BENCHES = ("e5-inbox", "e4-newdecoys")
RUN = re.compile(r"treat-(box|exact|box-norefine)(-.*)?-seed(\d+)$")


def share_of(run_dir: Path, folder: Path, arm: str, seed: int) -> dict:
    """{"swap", "clean", "share", "escalated"} of one run (``escalated``: None before treat escalated)."""
    s = json.loads((run_dir / "summary.json").read_text())
    esc = s["selection"].get("escalation")
    if esc:  # the run decided itself: its own figures
        swap = esc.get("swap_acc", sum(esc["swap_acc_per_seed"]) / len(esc["swap_acc_per_seed"]))  # older runs: no mean
        return {"swap": swap, "clean": esc["original_clean_acc"], "share": swap / esc["original_clean_acc"],
                "escalated": esc["fired"]}
    path = run_dir / "escalation.json"
    if path.is_file():
        return json.loads(path.read_text())
    from benchmarks.bench_e5_inbox import _models, run_pools
    from model_doctor.io import atomic_write_text
    from model_doctor.treatment.reliance import background_reliance

    _, cfg, original, _, pools = run_pools(run_dir, folder, arm)
    models = dict(_models(run_dir, seed, original))
    swap = background_reliance(models["treated"], pools.select, seed=cfg.train.split_seed)["swap_acc"]
    clean = background_reliance(original, pools.select, seed=cfg.train.split_seed)["clean_acc"]
    out = {"swap": swap, "clean": clean, "share": swap / clean if clean else float("nan"), "escalated": None}
    atomic_write_text(path, json.dumps(out))
    return out


def collect(cache: Path, budget: str) -> dict[tuple[str, str, str, str], dict[int, dict]]:
    """{(bench, cue, annotation, setting): {seed: share_of(...)}} over every finished cached run."""
    cells: dict[tuple[str, str, str, str], dict[int, dict]] = {}
    for bench in BENCHES:
        for kind_dir in sorted((cache / bench / budget).glob("*/runs")):
            kind = kind_dir.parent.name
            for run_dir in sorted(kind_dir.glob("treat-*")):
                m = RUN.match(run_dir.name)
                if not m or not (run_dir / "summary.json").is_file():
                    continue
                arm, setting, seed = m.group(1), (m.group(2) or "")[1:] or "defaults", int(m.group(3))
                folder = kind_dir.parent / f"data-seed{seed}"
                cells.setdefault((bench, kind, arm, setting), {})[seed] = {**share_of(run_dir, folder, arm, seed),
                                                                           "report": report_swap(run_dir)}
    return cells


def report_swap(run_dir: Path) -> float | None:
    """The first round's treated swap accuracy on the report images (``bench_e5_inbox.remeasure``'s
    ``reliance.json``), beside the selection set's: how optimistic the figure the trigger reads is.
    None where the run escalated (its reliance.json is the escalated round's) or was not remeasured."""
    path = run_dir / "reliance.json"
    if not path.is_file() or (run_dir / "escalated").is_dir():
        return None
    return json.loads(path.read_text())["treated"]["swap_acc"]


def table(cells: dict[tuple[str, str, str, str], dict[int, dict]], below: float) -> list[str]:
    out = ["| benchmark | cue | annotation | setting (cache name) | share kept per seed (seed: swap ÷ original) | "
           f"under {below:g} (would escalate) | escalated (runs since treat escalates) | selection − report swap acc, "
           "first round (points) |", "|---|---|---|---|---|---|---|---|"]
    for (bench, kind, arm, setting), seeds in sorted(cells.items()):
        per = " ".join(f"{s}: {v['share']:.2f}" for s, v in sorted(seeds.items()))
        under = sum(v["share"] < below for v in seeds.values())
        ran = [v["escalated"] for v in seeds.values() if v["escalated"] is not None]
        said = f"{sum(ran)} of {len(ran)}" if ran else "— (ran before)"
        diff = " ".join(f"{100 * (v['swap'] - v['report']):+.0f}" for _, v in sorted(seeds.items()) if v["report"] is not None)
        out.append(f"| {bench} | {kind} | {arm} | {setting} | {per} | {under} of {len(seeds)} | {said} | {diff or '—'} |")
    diffs = sorted(100 * (v["swap"] - v["report"]) for seeds in cells.values() for v in seeds.values() if v["report"] is not None)
    if diffs:
        out += ["", f"The selection set's figure is the one that chose the epoch and the weight: over {len(diffs)} first rounds "
                f"it differs from the same model's swap accuracy on the report images by a median of "
                f"{statistics.median(diffs):+.0f} points ({diffs[0]:+.0f} to {diffs[-1]:+.0f}); runs that escalated have "
                "no first-round report figure (their report set measured the escalated round)."]
    return out


def main() -> int:
    from model_doctor.config import TreatConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=str(ROOT / "runs" / "bench"), help="the benchmarks' trained runs")
    ap.add_argument("--budget", default="full", choices=["small", "full"])
    ap.add_argument("--out", default="docs/results/e5/escalation_share.md")
    args = ap.parse_args()
    below = TreatConfig().escalate_below
    cells = collect(Path(args.cache), args.budget)
    if not cells:
        raise SystemExit(f"no finished treat runs under {args.cache}/{{{','.join(BENCHES)}}}/{args.budget}; run "
                         "bench_e5_inbox or bench_e4_newdecoys first (or pass --cache)")
    lines = header("What treat's escalation reads: the selection set's swap share per cached run", "escalation_share.py",
                   args.budget)
    first, second = (p.replace("\n", " ") for p in __doc__.split("\n\n")[1:3])
    lines += [first, "", second, "", *table(cells, below), "",
              "Gap closed per setting: [e5_options.md](e5_options.md), [e4_newdecoys.md](../e4/e4_newdecoys.md)."]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
