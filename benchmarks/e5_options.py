"""Every E5 setting in one table: where the treatment meets issue 18's bar and where it fails.

Reads ``bench_e5_inbox`` tables: the JSON beside each ``.md`` gives the per-seed accuracies, the
``.md``'s Command and Date lines give the setting and the day the code ran. One row per (table,
cue, annotation): the options the command passed to ``treat`` (everything but the budget, cues,
annotation kinds, seeds and the ceiling's epochs; none = the CLI defaults of that date; "before the
floor": run before ``treat --min-val-share`` existed, its rows carry no ``val_floor``; "escalated on
k of n seeds" / "not escalated": run since ``treat --escalate-below`` existed, on how many seeds
the second round at ``--kl-weight 0`` and 3× the epochs was the one reported), its seeds,
the share of the original→ceiling gap closed on shuffled-cue test accuracy (mean over seeds of
each seed's share, as ``bench_e5_inbox`` computes it, against the row's own ceiling), treated −
control, and the bar: at least half of the gap, treated − control beyond 2 std of the seed spread,
3 seeds or more. Where a row fails, the column says which part.

A passing row is evidence for its setting only where the setting was fixed before its seeds ran;
``docs/evidence.md`` says which tables chose a setting and which judged it afterwards.

Usage: python -m benchmarks.e5_options docs/results/e5/e5_inbox.json [...] [--out docs/results/e5/e5_options.md]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from benchmarks._common import provenance
from model_doctor.study import beyond_noise

#: command flags that pick what a table covers rather than how ``treat`` runs: (flag, values it takes)
SCOPE = {"--budget": 1, "--kinds": -1, "--arms": -1, "--seeds": -1, "--ceiling-epochs": 1, "--out": 1,
         "--cache": 1, "--root": 1, "--threads": 1, "--cached-only": 0}


def options(command: str) -> str:
    """The ``treat`` options of a ``bench_e5_inbox`` command line ("" where it ran the defaults)."""
    words = shlex.split(command)
    words = words[words.index("benchmarks.bench_e5_inbox") + 1:] if "benchmarks.bench_e5_inbox" in words else words
    kept, i = [], 0
    while i < len(words):
        n = SCOPE.get(words[i])
        if n is None:
            kept.append(words[i])
            i += 1
            continue
        i += 1
        if n < 0:
            while i < len(words) and not words[i].startswith("--"):
                i += 1
        else:
            i += n
    return " ".join(kept)


def read_table(path: Path) -> tuple[str, str, list[dict]]:
    """(command, date, rows) of one ``bench_e5_inbox`` table; its ``.md`` must sit beside the JSON."""
    md = path.with_suffix(".md")
    if not md.is_file():
        raise SystemExit(f"{md}: no table beside {path.name}; pass a bench_e5_inbox JSON whose .md is next to it")
    command, date = (x or "" for x in provenance(path))
    if "benchmarks.bench_e5_inbox" not in command:
        raise SystemExit(f"{md}: its Command line is not a bench_e5_inbox run ({command or 'none'}); "
                         "pass the tables bench_e5_inbox wrote")
    return command, date, json.loads(path.read_text())


def judge(rows: list[dict]) -> dict:
    """Gap closed, treated − control and the bar's verdict for one (cue, annotation) cell's seeds."""
    gap = [(r["treated"]["test_acc"] - r["original"]) / max(r["ceiling"] - r["original"], 1e-9) for r in rows]
    diff = [r["treated"]["test_acc"] - r["control"]["test_acc"] for r in rows]
    mean, sd = statistics.mean(diff), (statistics.stdev(diff) if len(diff) > 1 else float("nan"))
    beyond = beyond_noise(diff, gain=True)
    short = [why for why, bad in (("gap < ½", statistics.mean(gap) < 0.5), ("not beyond 2σ", not beyond),
                                  (f"{len(rows)} seed{'s' * (len(rows) != 1)}", len(rows) < 3)) if bad]
    return {"gap": statistics.mean(gap), "gaps": gap, "diff": mean, "sd": sd, "beyond": beyond,
            "treated": statistics.mean(r["treated"]["test_acc"] for r in rows),
            "original": statistics.mean(r["original"] for r in rows), "ceiling": rows[0]["ceiling"],
            "verdict": "**passes**" if not short else "fails: " + ", ".join(short)}


def lines_for(paths: list[Path]) -> list[str]:
    out = ["| table | date | cue | annotation | treat options | seeds | original → treated (ceiling) | gap closed "
           "(per seed) | treated − control | the bar (≥ ½, > 2σ, 3 seeds) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    passes: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        command, date, rows = read_table(path)
        opts = options(command)
        for kind, arm in dict.fromkeys((r["kind"], r["arm"]) for r in rows):
            cell = sorted((r for r in rows if (r["kind"], r["arm"]) == (kind, arm)), key=lambda r: r["seed"])
            j = judge(cell)
            sd = "" if len(cell) < 2 else f" ± {100 * j['sd']:.1f}"
            said = (f"`{opts}`" if opts else "defaults") + ("" if all("val_floor" in r for r in cell) else ", before the floor")
            if all("escalated" in r for r in cell):  # run since treat escalates: on how many seeds it did
                n_esc = sum(r["escalated"] for r in cell)
                said += f", escalated on {n_esc} of {len(cell)} seeds" if n_esc else ", not escalated"
            out.append(f"| [{path.stem}]({path.stem}.md) | {date} | {kind} | {arm} | {said} | "
                       f"{' '.join(str(r['seed']) for r in cell)} | {100 * j['original']:.1f} → {100 * j['treated']:.1f} "
                       f"({100 * j['ceiling']:.1f}) | {100 * j['gap']:.0f} % ({' / '.join(f'{100 * g:.0f}' for g in j['gaps'])}) | "
                       f"{100 * j['diff']:+.1f}{sd} | {j['verdict']} |")
            passes.setdefault((kind, arm), []).append(
                f"{path.stem} ({said.replace('`', '')}): {'passes' if j['verdict'] == '**passes**' else j['verdict']}")
    out += ["", "Per cue and annotation kind, every table in the order given:", ""]
    for (kind, arm), said in passes.items():
        out.append(f"- {kind} / {arm}: " + "; ".join(said))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", type=Path, help="bench_e5_inbox JSON files, each with its .md beside it")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown here (atomically) as well as to stdout")
    args = ap.parse_args()
    for p in args.tables:
        if not p.is_file():
            ap.error(f"{p}: no such file; pass the JSON a bench_e5_inbox --out wrote")
    text = "\n".join(["# E5: every setting against the bar", "",
                      "Command: `python -m benchmarks.e5_options " + " ".join(str(p) for p in args.tables) + "`", "",
                      " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "), "", *lines_for(args.tables)]) + "\n"
    print(text, end="")
    if args.out:
        from model_doctor.io import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
