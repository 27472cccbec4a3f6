"""Collect the speed and memory ratios of the diagnosis and treatment benchmarks into one table.

Reads the tables that ``bench_diagnose.py`` and ``bench_treat.py`` wrote under docs/results/
(each keeps its own command, machine and date, repeated here); with ``--rerun small|full`` it
runs both first. Nothing here is measured or typed by hand.

Usage: python -m benchmarks.collect_performance [--rerun small|full] [--out docs/results/performance/performance.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks._common import emit

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "performance"
SOURCES = {"diagnosis": ("bench_diagnose.py", "diagnosis.md"), "treatment": ("bench_treat.py", "treatment.md"),
           "counterfactual treatment": ("bench_counterfactual.py", "counterfactual_cost.md")}


def tables(text: str) -> list[list[str]]:
    """The markdown tables of ``text``, each as its lines."""
    out, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def fits(text: str) -> list[str]:
    """The scaling section's cost-model fits, each prefixed with its model's ``### name``."""
    out, model = [], ""
    for line in text.splitlines():
        if line.startswith("### "):
            model = line[4:].strip()
        elif line.startswith("Fit: "):
            out.append(f"- {model}: {line.strip()}")
    return out


def provenance(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.startswith(("Command:", "Machine:", "Date:"))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rerun", choices=["small", "full"], default=None, help="run both benchmarks first")
    ap.add_argument("--results", default=str(RESULTS), help="folder holding diagnosis.md and treatment.md")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    folder = Path(args.results)
    if args.rerun:
        for script, md in SOURCES.values():
            subprocess.run([sys.executable, "-m", f"benchmarks.{Path(script).stem}", "--budget", args.rerun,
                            "--out", str(folder / md)], check=True, cwd=Path(__file__).resolve().parents[1])
    lines = ["# Performance: diagnosis and treatment cost, as ratios measured side by side", "",
             "Collected by `python -m benchmarks.collect_performance` from the files below; rerun them with "
             "`--rerun full`. Ratios only: absolute times on this shared 2-core machine are noise.", ""]
    for name, (script, md) in SOURCES.items():
        path = folder / md
        if not path.is_file():
            sys.exit(f"error: {path} is missing; run `python benchmarks/{script} --out {path}` or pass --rerun full")
        text = path.read_text()
        found = tables(text)
        if not found:
            sys.exit(f"error: no table in {path}; rerun `python benchmarks/{script}`")
        lines += [f"## {name[0].upper() + name[1:]} ([{md}]({md}))", ""] + [f"{p}  " for p in provenance(text)] + [""]
        lines += found[0] + [""]
        if fits(text):
            lines += ["Cost model fitted on the scaling table (seconds ≈ a + FLOPs / rate + copy elements · c):", ""]
            lines += fits(text) + [""]
    lines += ["Targets (issue 13): the whole `diagnose()` ≤ 1.5× the limit (selection forward + prefix + batched "
              "tail over the J copies) for both models; a treatment step at J=1 ≤ 1.5× a plain step for the "
              "small-image ResNet-18. The tables show where each is met and where not (the small CNN at J=10: "
              "its tail is most of the network, so the J copies cost J tail passes). Issue 18: a counterfactual step "
              "≤ 2.2× a plain step at the defaults (it trains on the batch plus twice the pool batch). A default `treat` "
              "costs one of the two whole-run rows: one round, or, where the first round's treated models keep under "
              "half the original's accuracy on another class's background (selection set), the escalated run, which "
              "trains 4 × one round's epochs."]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
