"""E3 — does the diagnosis diagnose? Detecting misclassified test images on E1's models.

For each of E1's originals (same cache and budget; trained here if missing): its diagnosis (the
default layer, from its training part), then ``examine`` on the test split. AUROC for flagging
the wrong predictions by: the deviation score (total-variation distance between the image's
channel profile and its predicted class's), 1 − max-softmax probability (MSP), and the mean of
their ranks (no fitting). Mean ± std over seeds.

Usage: python -m benchmarks.bench_e3_auroc [--budget small|full] [--out docs/results/e3/e3_auroc.md]
"""

from __future__ import annotations

from benchmarks import _studies as S
from benchmarks import bench_e1_channel as E1
from benchmarks._common import emit, header
from model_doctor import examine
from model_doctor.diagnosis.metrics import misclassification_auroc
from model_doctor.experiment import fmt


def run(args, budget: dict) -> list[dict]:
    rows = []
    for arch, seed, _, model, _, diag, (_, _, te) in E1.originals(args, budget):
        ex = examine(model, diag, te, derivative_maps=False)
        wrong = ex.misclassified
        au = misclassification_auroc(ex.deviation, ex.confidence, wrong)
        rows.append({"arch": arch, "seed": seed, "test_acc": 1.0 - float(wrong.float().mean()),
                     "wrong": int(wrong.sum()), **au})
        print(f"{arch} seed {seed}: " + " ".join(f"{k} {v:.3f}" for k, v in au.items() if v is not None), flush=True)
    return rows


def main(argv=None) -> int:
    args = S.parser(__doc__).parse_args(argv)
    S.setup(args)
    b = S.with_seeds(E1.BUDGETS[args.budget], args.seeds)
    rows = run(args, b)
    lines = header("E3: misclassification detection by the deviation score, Fashion-MNIST", "bench_e3_auroc.py", args.budget)
    lines += [f"Models: E1's originals (`bench_e1_channel.py --budget {args.budget}`: {b['n_train']} training images, "
              f"{b['orig_epochs']} epochs, seeds {b['seeds']}), examined on "
              f"{'all 10000' if b['n_test'] is None else b['n_test']} test images at their default layer "
              f"(diagnosis J=10, δ=0.1; the same J and δ when examining). AUROC: 1.0 = every wrong prediction scores "
              f"above every right one, 0.5 = chance.", "", S.SPLIT_NOTE, "",
              "| architecture | test acc (%) | wrong predictions | AUROC deviation | AUROC 1 − MSP | AUROC rank average |",
              "|---|---|---|---|---|---|"]
    for arch in b["archs"]:
        rs = [r for r in rows if r["arch"] == arch]
        lines.append(f"| {arch} | {fmt([r['test_acc'] for r in rs])} | {fmt([r['wrong'] for r in rs], scale=1, digits=0)} | "
                     f"{fmt([r['auroc_deviation'] for r in rs], scale=1, digits=3)} | {fmt([r['auroc_msp'] for r in rs], scale=1, digits=3)} | "
                     f"{fmt([r['auroc_combined'] for r in rs], scale=1, digits=3)} |")
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
