"""E7's treatment row from the CLI: per seed, ERM's no-label model from ``bench_pretrained``'s cache
treated by ``model-doctor treat --groups`` on the seed's benchmark folder (β 1 3 10 30, 5 epochs at
lr 0.01, every validation image's group choosing), beside the benchmark's counterfactual on the same split of
the boxes, chosen with all 100 validation labels per group.

The benchmark's other counterfactual row holds half the boxes out for its no-label rule, so it
trains on fewer boxes than ``treat --groups`` (which holds a quarter out, only to report).

Usage: python -m benchmarks.e7_cli [--seeds 0 1 2] [--out docs/results/e7/e7_cli.md]
(run ``python -m benchmarks.bench_pretrained`` first: this reads its cache).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import _studies as S
from benchmarks import e7_methods as M
from benchmarks._common import emit, header
from benchmarks.bench_pretrained import BUDGETS, FT_LR, cache_of
from model_doctor.experiment import spread


def treat_command(b: dict, seed: int, cache: Path, out: Path) -> list[str]:
    """The ``model-doctor treat`` command a user would type for this seed."""
    folder = cache / f"data-seed{seed}"
    name, _ = M.pick({c.name: M.records(c) for c in sorted((cache / f"seed{seed}" / "erm").iterdir())}, M.by_average)
    return ["model-doctor", "treat", "--data", f"imagefolder:{folder}", "--image-size", str(b["size"]), "--model", b["arch"],
            "--in-channels", "3", "--num-classes", "2",
            "--weights", str(cache / f"seed{seed}" / "erm" / name / "best.safetensors"), "--masks", str(folder / "masks-box"),
            "--mask-format", "png", "--annotated-per-class", str(b["per_class"]), "--alpha", "0",
            "--beta", *[f"{c['beta']:g}" for c in M.CANDIDATES["counterfactual"]], "--epochs", str(b["ft_epochs"]),
            "--lr", f"{FT_LR:g}", "--seeds", str(seed), "--groups", str(folder / "groups.csv"), "--out", str(out)]


def run(b: dict, seed: int, cache: Path) -> dict:
    out = cache / f"seed{seed}" / "cli-treat"
    if not (out / "summary.json").is_file():
        cmd = treat_command(b, seed, cache, out)
        subprocess.run([sys.executable, "-m", "model_doctor", *cmd[1:], *(["--resume"] if out.is_dir() else [])], check=True)
    s = json.loads((out / "summary.json").read_text())
    bench = json.loads((cache / f"seed{seed}" / "test.json").read_text())[f"counterfactual_groups@{b['n_val'] // 4}"]
    g = s["treated"]["groups"]
    return {"cli": (g["worst"]["mean"], g["average"]["mean"]), "bench": (bench["worst"], bench["average"])}


def main() -> int:
    ap = S.parser(__doc__)
    args = ap.parse_args()
    b = S.with_seeds(BUDGETS[args.budget], args.seeds)
    cache = cache_of(b, args)
    rows = {seed: run(b, seed, cache) for seed in b["seeds"]}
    lines = header("E7: the treatment row from the CLI", "e7_cli.py", args.budget)
    lines += [" ".join(__doc__.split("\n\n")[0].split()), "", "Command per seed: `" + " ".join(
        treat_command(b, b["seeds"][0], cache, Path("OUT"))).replace(str(cache), "<cache>") + "`", "",
        f"| seed | `treat --groups` worst-group | its average | benchmark row ({b['n_val'] // 4} per group: every "
        "validation image) worst-group | its average |",
        "|---|---|---|---|---|"]
    for seed, r in rows.items():
        lines.append(f"| {seed} | {100 * r['cli'][0]:.1f} | {100 * r['cli'][1]:.1f} | {100 * r['bench'][0]:.1f} | "
                     f"{100 * r['bench'][1]:.1f} |")
    cell = lambda xs: (lambda sp: f"**{100 * sp.mean:.1f} ± {100 * sp.std:.1f}**")(spread(xs))
    lines.append(f"| mean ± std | {cell([r['cli'][0] for r in rows.values()])} | {cell([r['cli'][1] for r in rows.values()])} "
                 f"| {cell([r['bench'][0] for r in rows.values()])} | {cell([r['bench'][1] for r in rows.values()])} |")
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
