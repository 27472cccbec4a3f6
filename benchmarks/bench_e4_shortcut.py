"""E4 — which space-wise constraint removes a shortcut, chosen without test data? Decoy Fashion-MNIST.

Study ``finetune`` (the practical setting): a decoy-trained original (10 epochs) is fine-tuned
4 epochs with N annotated training images per class (default 20; also 5, 100 and all), picked,
refined (GrabCut, the default) and split by the library's :func:`model_doctor.treatment.pools.make_pools`
as ``treat`` does: a quarter per class is held out from every kind of training (CE included), half
of it choosing each arm's epoch and the method and weight by the no-test-data rule
:func:`model_doctor.treatment.reliance.selection_score` (the default ``swap`` rule), the other half
(the report set) measuring the background reliance the user reads. Arms: the CE-only control,
Eq. 6 (``paper``), ``attribution``, ``input`` (share and RRR) and ``counterfactual``, several
weights each, all with the same seed, schedule and data order. The ceiling is trained from scratch on shuffled
(uninformative) decoys. The shuffled-decoy test set is read once per finished run, to report.

Study ``scratch`` (harness sanity): every method trained from scratch with masks on every
training image, one seed per benchmark (Fashion-MNIST and digits, patch and bar decoys).

Usage: python -m benchmarks.bench_e4_shortcut [--study finetune|scratch] [--budget small|full] [--kinds patch bar]
       [--kl-weight W] [--out docs/results/e4/e4_shortcut.md]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import _studies as S
from benchmarks._common import emit, header
from benchmarks.bench_e2_space import decoy_data
from model_doctor import diagnose
from model_doctor.config import Config
from model_doctor.experiment import fmt, spread
from model_doctor.models import build_model
from model_doctor.study import ArmSpec, beyond_noise, choose, from_scratch, run_study
from model_doctor.training import FitConfig, evaluate
from model_doctor.treatment import ModelDoctorLoss
from model_doctor.treatment.pool import AnnotatedPool
from model_doctor.treatment.pools import make_pools
from model_doctor.treatment.reliance import background_reliance
from model_doctor.treatment.selection import resolve_rule, selector
from model_doctor.treatment.space import SPACE_METHODS

LAYER = "features.8"        # smallcnn's default (last conv) layer
HOLDOUT = 0.25              # share of each class's annotated images held out to measure reliance
POOL_BATCH = 32             # annotated images drawn per step by the pool-based methods

#: (arm name, method, weight, option)
ARMS_FULL = [("attribution λ=10", "attribution", 10.0, None),
             ("counterfactual λ=0.3", "counterfactual", 0.3, None), ("counterfactual λ=1", "counterfactual", 1.0, None)]
#: run for seed 0 only (time): Eq. 6 and RRR (E2 has them on 3 seeds with every mask) and the rest of each
#: weight range; reported in their own table, not offered to the rule
ARMS_SEED0 = [("paper β=100", "paper", 100.0, None), ("paper β=1000", "paper", 1000.0, None),
              ("input rrr λ=10", "input", 10.0, "rrr"), ("attribution λ=1", "attribution", 1.0, None),
              ("input share λ=1", "input", 1.0, "share"), ("input share λ=10", "input", 10.0, "share"),
              ("counterfactual λ=0.1", "counterfactual", 0.1, None), ("counterfactual λ=3", "counterfactual", 3.0, None),
              ("counterfactual λ=10", "counterfactual", 10.0, None)]
#: arms run at the other annotation budgets (N = 5, 100, all per class): one fixed weight, so that the budgets compare
#: (λ=0.3, which the earlier `mean` rule chose at N=20 on every seed; not re-chosen per budget)
EXTRA_ARMS = ["counterfactual λ=0.3"]
ARMS_SMALL = [("paper β=100", "paper", 100.0, None), ("attribution λ=10", "attribution", 10.0, None),
              ("input share λ=10", "input", 10.0, "share"), ("counterfactual λ=1", "counterfactual", 1.0, None)]
BUDGETS = {
    "small": dict(arch="smallcnn", seeds=[0], n_train=1000, n_test=200, orig_epochs=6, ft_epochs=1, per_class=[10],
                  extra_per_class=[], arms=ARMS_SMALL, bases=["digits"],
                  ft_base="digits", scratch_n_train=1000, scratch_epochs=6),
    "full": dict(arch="smallcnn", seeds=[0, 1, 2], n_train=4000, n_test=None, orig_epochs=10, ft_epochs=4,
                 per_class=[20], extra_per_class=[5, 100, None], seed0_per_class=[5, 100, None], arms=ARMS_FULL, seed0_arms=ARMS_SEED0,
                 bases=["fashion-mnist", "digits"],
                 ft_base="fashion-mnist", scratch_n_train=2000, scratch_epochs=8),
}
#: from scratch: RRR at λ=1000 (our per-pixel-mean normalisation makes the λ=10 of E2 tiny next to Ross
#: et al.'s summed λ=1000), Eq. 6 and the counterfactual
SCRATCH_ARMS = [("rrr λ=1000", "input", 1000.0, "rrr"),
                ("paper β=100", "paper", 100.0, None), ("counterfactual λ=1", "counterfactual", 1.0, None)]


def make_terms(method: str, weight: float, option, pool: AnnotatedPool, diag, seed: int):
    """``option``: the input arms' mode (``share`` / ``rrr``), or the counterfactual's KL weight (a number)."""
    if method == "paper":
        return lambda: ModelDoctorLoss(diag, [LAYER], alpha=0.0, beta=weight, noise_draws=1, seed=seed)
    m = SPACE_METHODS[method]
    if method == "counterfactual":
        kl = 1.0 if option is None else float(option)
        return lambda: m.build(pool, weight, layers=[LAYER], pool_batch=POOL_BATCH, seed=seed, kl_weight=kl)
    return lambda: m.build(pool, weight, layers=[LAYER], pool_batch=POOL_BATCH, seed=seed, input_mode=option or "share")


def with_kl(budget: dict, kl_weight: float) -> dict:
    """The budget with the counterfactual arms also at another KL weight, for a paired table: those
    arms renamed (``… kl=W``, their own cache) beside the default arms, whose runs (and the original,
    ceiling, control) are the default run's; the rule chooses within each weight's set of arms
    (``rule_sets``, the last one's choice is the JSON's). The N=20 study alone, for time."""
    if kl_weight == 1.0:
        return budget
    kl_arms = [(f"{name} kl={kl_weight:g}", method, weight, kl_weight) if method == "counterfactual"
               else (name, method, weight, option) for name, method, weight, option in budget["arms"]]
    arms = budget["arms"] + [a for a in kl_arms if a not in budget["arms"]]
    sets = {"at the default KL weight 1": [a[0] for a in budget["arms"]],
            f"at KL weight {kl_weight:g}": [a[0] for a in kl_arms]}
    return {**budget, "arms": arms, "rule_sets": sets, "extra_per_class": [], "seed0_per_class": [], "seed0_arms": []}


def measure(model, data: dict, res: dict, run_dir: Path | None = None, report=None, seed: int = 0) -> dict:
    """Test accuracies and, with ``report``, the report set's reliance (read once per finished run, cached
    in ``run_dir/test.json``; reporting only)."""
    path = run_dir / "test.json" if run_dir is not None else None
    if path is not None and path.is_file():
        return {**res, **json.loads(path.read_text())}
    t = {"test_shuffled": evaluate(model, data["test_shuffled"], 10)["acc"],
         "test_consistent": evaluate(model, data["test_consistent"], 10)["acc"],
         **(reported(model, report, seed) if report is not None else {})}
    if path is not None:
        path.write_text(json.dumps(t))
    return {**res, **t}


def reported(model, report, seed: int, path: Path | None = None) -> dict:
    """The reliance the user reads: background-swap and background-only accuracy on the report set."""
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    rel = background_reliance(model, report, seed=seed)
    out = {"report_swap_acc": rel["swap_acc"], "report_bg_only_acc": rel["bg_only_acc"]}
    if path is not None:
        path.write_text(json.dumps(out))
    return out


def fresh(arch: str, seed: int, size: int):
    def f():
        torch.manual_seed(seed)
        return build_model(arch, in_channels=1, num_classes=10, image_size=size)
    return f


def run_finetune_cell(args, budget, kind, seed, per_class, arms, cache):
    """Original, ceiling, control and every arm for one (kind, seed, N). Returns {arm: result}."""
    data = decoy_data(args, budget, kind, budget["ft_base"])
    size = int(data["train"][0][0].shape[-1])
    cfg = FitConfig(epochs=budget["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed)
    base = cache / kind / f"seed{seed}"
    o_run = from_scratch(base / "original", fresh(budget["arch"], seed, size), data["train"], data["train_val"], cfg, 10)
    c_run = from_scratch(base / "ceiling", fresh(budget["arch"], seed, size), data["train_shuffled"],
                         data["train_shuffled_val"], cfg, 10)
    (orig, o), (ceil, c) = (o_run.model, o_run.result), (c_run.model, c_run.result)
    out = {"original": measure(orig, data, o, base / "original"), "ceiling": measure(ceil, data, c, base / "ceiling")}
    # the library's pools, as `treat` makes them: N per class (its one picker), GrabCut-refined (the default), a
    # quarter held out from every kind of training, half of it choosing epochs and weights, half reporting
    pools = make_pools(data["train"], data["train"], HOLDOUT, per_class, seed, refine=Config().treat.refine)
    held, report = pools.select, pools.report if pools.report is not None else pools.select
    pool = pools.train

    select = selector(data["train_val"], 10, resolve_rule(Config().treat.select_rule, False), held=held, seed=seed)
    assert select is not None  # the held-out images exist

    out["original"].update(select(orig))
    diag_dir = base / "diagnosis"
    if (diag_dir / "diagnosis.json").is_file():
        from model_doctor import Diagnosis
        diag = Diagnosis.load(diag_dir)
    elif any(a[1] == "paper" for a in arms):
        diag = diagnose(orig, data["train"], layers=[LAYER], num_classes=10, samples_per_class=100,
                        allow_empty_classes=True)
        diag.save(diag_dir)
    else:
        diag = None
    ft = S.finetune_cfg(budget["ft_epochs"], seed)
    tag = "all" if per_class is None else str(per_class)
    # one study per (kind, seed, N): every arm, the control included, trains on the training part without the
    # held-out images (masks only on the constraint's images, for Eq. 6 / RRR); the control is cached with its N
    specs = [ArmSpec("control")] + [ArmSpec(name.replace(" ", "_"), make_terms(method, weight, option, pool, diag, seed))
                                    for name, method, weight, option in arms]
    study = run_study(orig, pools.masked_train, data["train_val"], specs, ft, 10, base / f"n{tag}", select=select)
    runs = {"control": study.arms["control"], **{name: study.arms[name.replace(" ", "_")] for name, *_ in arms}}
    for name, run in runs.items():
        out[name] = measure(run.model, data, run.result, base / f"n{tag}" / run.spec.name, report, seed)
    for name, method, weight, _option in arms:
        out[name].update(method=method, weight=weight)
    out["original"].update(reported(orig, report, seed, base / f"n{tag}" / "original-report.json"))
    out["_pool"] = {"train": len(pool), "select": len(held) if held is not None else 0,
                    "report": len(pools.report) if pools.report is not None else 0}
    return out


def br(r: dict) -> dict:
    """The chosen epoch's selection metrics of a run result."""
    row = r.get("best_row") or {}
    return {"score": row.get("select_score", r.get("select_score")), "swap": row.get("held_swap_acc", r.get("held_swap_acc"))}


def chosen_arm(cell: dict, names: list[str]) -> str:
    """The arm among ``names`` whose chosen epoch scores best (the library's :func:`~model_doctor.study.choose`)."""
    return choose({n: br(cell[n])["score"] if br(cell[n])["score"] is not None else -1.0 for n in names})


def finetune_study(args, budget) -> list[str]:
    cache = S.study_cache(args, "e4", budget)
    kinds = args.kinds
    lines = []
    per_class_all = budget["per_class"] + budget["extra_per_class"]
    cells, truth_rows = {}, []
    for kind in kinds:
        for seed in budget["seeds"]:
            for n in per_class_all:
                if n in budget.get("seed0_per_class", []) and seed != budget["seeds"][0]:
                    continue  # time: these annotation budgets on the first seed only
                if n in budget["per_class"]:
                    arms = budget["arms"] + (budget.get("seed0_arms", []) if seed == budget["seeds"][0] else [])
                else:
                    arms = [a for a in budget["arms"] if a[0] in EXTRA_ARMS]
                cells[(kind, seed, n)] = run_finetune_cell(args, budget, kind, seed, n, arms, cache)
    if args.seeds:  # a partial run fills the cache; the table comes from a run over every seed
        return ["(partial run: seeds " + ", ".join(map(str, args.seeds)) + "; rerun without --seeds for the table)"]
    seed0_only = {a[0] for a in budget.get("seed0_arms", [])}
    for kind in kinds:
        for n in per_class_all:
            seeds = [s for s in budget["seeds"] if (kind, s, n) in cells]
            block, chosen = budget_table(kind, n, [cells[(kind, s, n)] for s in seeds], seed0_only, budget.get("rule_sets"))
            lines += block
            if len(seeds) > 1:
                truth_rows += [truth_row(kind, n, seed, cells[(kind, seed, n)], ch) for seed, ch in zip(seeds, chosen)]
            lines += extra_table(cells[(kind, seeds[0], n)], seeds[0], seed0_only)
    if args.out and truth_rows:  # every model the N=20 study chose, for reliance_vs_truth.py
        from model_doctor.io import atomic_write_text

        atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(truth_rows, indent=1))
    return lines


def budget_table(kind: str, n, cs: list[dict], seed0_only: set[str],
                 rule_sets: dict[str, list[str]] | None = None) -> tuple[list[str], list[str]]:
    """The table of one (decoy, annotation budget) over its seeds, and the arm the rule chose per seed
    (within each of ``rule_sets``' arms when given; the last set's choice is returned)."""
    names = [k for k in cs[0] if not k.startswith("_") and k not in ("original", "ceiling") and k not in seed0_only]
    pl = cs[0]["_pool"]
    lines = [f"### {kind} decoy, {'all' if n is None else n} annotated images per class "
             f"(training pool {pl['train']}, selection set {pl['select']}, report set "
             f"{pl['report'] or 'none (too few per class: the report column is the selection set)'})", "",
             "| arm | val acc | selection swap acc | score | report swap acc | test consistent | test shuffled | "
             "Δ shuffled vs control | gap closed |", "|---|---|---|---|---|---|---|---|---|"]
    gap_of = lambda c, r: (r["test_shuffled"] - c["original"]["test_shuffled"]) / max(
        c["ceiling"]["test_shuffled"] - c["original"]["test_shuffled"], 1e-9)
    for name in ["original", "ceiling"] + names:
        rows = [c[name] for c in cs]
        d = [r["test_shuffled"] - c["control"]["test_shuffled"] for r, c in zip(rows, cs)] if name in names else []
        gap = [gap_of(c, r) for r, c in zip(rows, cs)]
        rep = [r.get("report_swap_acc") for r in rows]
        lines.append(f"| {name} | {fmt([r['val_acc'] for r in rows])} | {fmt([br(r)['swap'] for r in rows])} | "
                     f"{fmt([br(r)['score'] for r in rows])} | {fmt(rep) if None not in rep else '—'} | "
                     f"{fmt([r['test_consistent'] for r in rows])} | {fmt([r['test_shuffled'] for r in rows])} | "
                     f"{fmt(d, signed=True) if d else ''} | "
                     f"{fmt(gap, scale=100, digits=0).replace(' (1 run)', '') + ' %' if name != 'original' else ''} |")
    # the no-test-data rule, per seed: the arm (method, weight) with the highest selection score
    lines.append("")
    for label, among in (rule_sets or {"": names}).items():
        chosen = [chosen_arm(c, among) for c in cs]
        d = [c[ch]["test_shuffled"] - c["control"]["test_shuffled"] for c, ch in zip(cs, chosen)]
        gap = [gap_of(c, c[ch]) for c, ch in zip(cs, chosen)]
        rd = [c[ch]["report_swap_acc"] - c["control"]["report_swap_acc"] for c, ch in zip(cs, chosen)]
        lines += [f"Chosen by the rule{' ' + label if label else ''} (per seed): {', '.join(chosen)}. Shuffled-decoy Δ "
                  f"vs control {fmt(d, signed=True)} pts ({_beyond(d)}); gap original→ceiling closed "
                  f"{fmt(gap, digits=0)} %. The user's figure, report-set swap accuracy, treated − control: "
                  f"{fmt(rd, signed=True)} pts ({_beyond(rd)}).", ""]
    return lines, chosen


def extra_table(c: dict, seed: int, seed0_only: set[str]) -> list[str]:
    """The rest of the weight ranges, run on the first seed only (not offered to the rule)."""
    extra = [k for k in c if k in seed0_only]
    if not extra:
        return []
    lines = [f"The rest of the weight ranges, seed {seed} only (time; not offered to the rule):", "",
             "| arm | val acc | selection swap acc | score | report swap acc | test consistent | test shuffled | "
             "Δ shuffled vs control |", "|---|---|---|---|---|---|---|---|"]
    for name in extra:
        r = c[name]
        lines.append(f"| {name} | {fmt([r['val_acc']])} | {fmt([br(r)['swap']])} | {fmt([br(r)['score']])} | "
                     f"{fmt([r['report_swap_acc']])} | {fmt([r['test_consistent']])} | {fmt([r['test_shuffled']])} | "
                     f"{fmt([r['test_shuffled'] - c['control']['test_shuffled']], signed=True)} |")
    return lines + [""]


def _beyond(d: list[float]) -> str:
    m, s, n = spread(d)
    if n < 2:
        return "1 seed: no seed spread to compare with"
    return f"{n} seeds; {'beyond' if beyond_noise(d, gain=True) else 'not beyond'} 2σ of the seed spread"


def truth_row(kind: str, n, seed: int, cell: dict, chosen: str) -> dict:
    """One seed's original, control and chosen arm: shuffled-decoy test accuracy (the truth) beside the
    report-set reliance the user reads, in reliance_vs_truth.py's format."""
    part = lambda r: {"test_acc": r["test_shuffled"], "swap_acc": r["report_swap_acc"], "bg_only_acc": r["report_bg_only_acc"]}
    return {"kind": kind, "arm": f"{'all' if n is None else n} per class", "seed": seed, "chosen": chosen,
            "original": cell["original"]["test_shuffled"],
            "original_reliance": {k: cell["original"][f"report_{k}"] for k in ("swap_acc", "bg_only_acc")},
            "control": part(cell["control"]), "treated": part(cell[chosen])}


def scratch_study(args, budget, truth: list[dict] | None = None) -> list[str]:
    """Every method from scratch with masks on every training image (one seed per benchmark).

    The reliance the user would read is measured on the validation images (annotated, never
    trained on, refined by GrabCut as ``treat`` refines; they chose each arm's epoch by clean
    validation accuracy, not by swap accuracy, so they are not a report set held out from selection); with ``truth`` its rows for
    ``benchmarks.reliance_vs_truth`` are appended there (no control: every arm is from scratch)."""
    budget = {**budget, "n_train": budget["scratch_n_train"], "orig_epochs": budget["scratch_epochs"]}
    cache = S.study_cache(args, "e4-scratch", budget)
    lines = [f"Every arm trains a fresh smallcnn for {budget['orig_epochs']} epochs (SGD lr {S.ORIGINAL_LR}, cosine, best "
             f"epoch on validation) on {budget['n_train']} training images (validation = 10 % of them) with masks on "
             f"every image; seed 0; test = {'all' if budget['n_test'] is None else budget['n_test']} test images. The swap "
             "accuracy is measured on the validation images: never trained on, but they chose each arm's epoch (by "
             "clean validation accuracy, not by swap accuracy).", "",
             "| benchmark | arm | val acc | test consistent | test shuffled | swap acc on the validation images |",
             "|---|---|---|---|---|---|"]
    for base in budget["bases"]:
        for kind in args.kinds:
            data = decoy_data(args, budget, kind, base)
            size = int(data["train"][0][0].shape[-1])
            seed = 0
            cfg = FitConfig(epochs=budget["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed)
            d = cache / base / kind
            report = AnnotatedPool.from_dataset(data["train_val"]).refine("grabcut")
            start = fresh(budget["arch"], seed, size)   # every arm trains a fresh model
            pool = AnnotatedPool.from_dataset(data["train"])
            diag = None
            if any(method == "paper" for _, method, _, _ in SCRATCH_ARMS):
                vanilla = from_scratch(d / "vanilla", start, data["train"], data["train_val"], cfg, 10).model
                diag = diagnose(vanilla, data["train"], layers=[LAYER], num_classes=10, samples_per_class=100,
                                allow_empty_classes=True)
            specs = [ArmSpec("vanilla", start=start)]
            specs += [ArmSpec(name.replace(" ", "_"), make_terms(method, weight, option, pool, diag, seed), start=start)
                      for name, method, weight, option in SCRATCH_ARMS]
            study = run_study(None, data["train"], data["train_val"], specs, cfg, 10, d)
            ceiling = from_scratch(d / "ceiling", start, data["train_shuffled"], data["train_shuffled_val"], cfg, 10)
            runs = [("vanilla", study.arms["vanilla"]), ("ceiling (shuffled decoys)", ceiling)]
            runs += [(name, study.arms[name.replace(" ", "_")]) for name, *_ in SCRATCH_ARMS]
            rows = [(label, measure(run.model, data, run.result, d / run.spec.name, report)) for label, run in runs]
            for name, r in rows:
                lines.append(f"| {base} {kind} | {name} | {100 * r['val_acc']:.1f} | {100 * r['test_consistent']:.1f} | "
                             f"{100 * r['test_shuffled']:.1f} | {100 * r['report_swap_acc']:.1f} |")
            van = rows[0][1]
            truth_rows = [{"kind": f"{base} {kind}", "arm": name, "seed": seed, "original": van["test_shuffled"],
                           "original_reliance": {"swap_acc": van["report_swap_acc"]}, "control": None,
                           "treated": {"swap_acc": r["report_swap_acc"], "test_acc": r["test_shuffled"]}}
                          for name, r in rows[1:]]
            if truth is not None:
                truth.extend(truth_rows)
    return lines


def main() -> int:
    ap = S.parser(__doc__)
    ap.add_argument("--study", choices=["finetune", "scratch"], default="finetune")
    ap.add_argument("--kinds", nargs="+", default=["patch", "bar"], choices=["patch", "bar"])
    ap.add_argument("--kl-weight", type=float, default=1.0,
                    help="also the counterfactual arms at this KL weight (`treat --kl-weight`; default 1), beside "
                         "the default arms and sharing their cached runs; N=20 only")
    args = ap.parse_args()
    if not args.kl_weight >= 0:
        ap.error(f"--kl-weight {args.kl_weight}: use a number >= 0 (1 = the default, 0 = no KL term)")
    if args.kl_weight != 1.0 and args.study != "finetune":
        ap.error(f"--kl-weight {args.kl_weight:g} is for --study finetune; drop it or use --study finetune")
    budget = with_kl(S.with_seeds(BUDGETS[args.budget], args.seeds), args.kl_weight)
    bases = {budget["ft_base"]} if args.study == "finetune" else set(budget["bases"])
    if "fashion-mnist" in bases:
        S.setup(args)
    elif args.threads:
        torch.set_num_threads(args.threads)
    title = "E4: shortcut removal, fine-tune with few annotations" if args.study == "finetune" else \
        "E4: harness sanity, every method from scratch with all masks"
    lines = header(title, "bench_e4_shortcut.py", args.budget)
    lines[2] = (f"Command: `python -m benchmarks.bench_e4_shortcut --study {args.study} --budget {args.budget} --kinds {' '.join(args.kinds)}"
                + (f" --kl-weight {args.kl_weight:g}" if args.kl_weight != 1.0 else "") + "`  ")
    truth: list[dict] = []
    body = finetune_study(args, budget) if args.study == "finetune" else scratch_study(args, budget, truth)
    if truth and args.out:
        from model_doctor.io import atomic_write_text

        atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(truth, indent=1))
    notes = ([S.SPLIT_NOTE] if "fashion-mnist" in bases else []) + \
        (["Digits: scikit-learn's bundled 8×8 digits (80/20 stratified split), upsampled to 16 px."] if "digits" in bases else [])
    return emit(lines + body + [""] + notes, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
