"""E5 — shortcuts that show inside the annotated box: the CLI defaults, boxes vs exact masks.

Decoys from ``inbox_decoys.py`` (texture, colour, pattern over the whole background; objects
blended by their own pixels so the cue shows between them, inside their box). Per kind and seed,
each seed with its own sample of objects and annotations and its own original:

1. ``model-doctor train`` on cue-correlated images (the original);
2. ``model-doctor train`` on uninformative cues (the ceiling; one per kind, trained longer, its
   validation curve reported);
3. ``model-doctor treat --masks masks-box`` and ``--masks masks-exact`` with the README's
   recipe (``--alpha 0 --beta 1 3 10``), every other option at its default (``--refine grabcut``);
   and, to show the mechanism, boxes with ``--refine none``.

Shuffled-cue test accuracy is ``treat``'s test accuracy (test images carry a random class's cue).
The reliance figures are what ``treat`` prints to the user, measured on held-out annotated images
that were neither trained on nor used to select. Results: ``e5_inbox.md`` and ``e5_inbox.json``
(every arm and seed, for ``reliance_vs_truth.py``).

Usage: python -m benchmarks.bench_e5_inbox [--budget small|full] [--kinds texture colour pattern]
       [--betas 1 3 10] [--epochs 10] [--arms box exact] [--out docs/results/e5/e5_inbox.md]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import _studies as S
from benchmarks import inbox_decoys as D
from benchmarks._common import emit, header, judge

BUDGETS = {
    "small": dict(n_train=400, n_test=200, orig_epochs=2, ceil_epochs=2, ft_epochs=1, seeds=[0], betas=["1"],
                  per_class=8, arms=["box", "exact"], norefine_seeds=[]),
    # seeds 3-5: fresh evaluation seeds; seeds 0-2 (the first run) showed the old selection rule's fault, and
    # pilot seed 7 (colour) chose beta 10 and the swap rule, so neither may count as evidence for them; the
    # refinement-off mechanism rows are the first run's (e5_first_run_table.md)
    "full": dict(n_train=2000, n_test=1000, orig_epochs=8, ceil_epochs=30, ft_epochs=None, seeds=[3, 4, 5],
                 betas=["1", "3", "10"], per_class=20, arms=["box", "exact"], norefine_seeds=[]),
}
CUES = {"texture": "stripes", "colour": "RGB background colour", "pattern": "a tiled binary glyph",
        "dots": "sparse dots of a class-coded hue, RGB, a kind added after E5's table to try the defaults again",
        "photo": "a random crop of one natural photo per class, RGB, a second kind added to try the defaults again",
        "gradient": "a smooth blend of two class-coded colours along a class-coded direction, RGB, a third kind added "
                    "to try the defaults again",
        "mark": "one ruler-like bar of a class-coded hue placed in the object's box, RGB, a fourth kind added to try "
                "the defaults again",
        "watermark": "a class-coded glyph in a class-coded hue at 60 % opacity over the object's box, the object's own "
                     "pixels included, RGB, a kind whose cue no mask can separate",
        "halo": "a 3 px ring of a class-coded hue hugging the object's outline, RGB, a kind a box cannot separate",
        "cast": "a class-coded colour cast (35 % of a class-coded hue) over the whole image, the object included, RGB, "
                "a fifth kind added to try the defaults again, one no mask can separate",
        "grain": "zero-mean colour noise along a class-coded colour direction over the whole image, the object "
                 "included, RGB, a sixth kind added to try the defaults again, one no mask can separate",
        "plaid": "a two-colour check of class-coded colours and period, RGB, a seventh kind added to try the defaults "
                 "again",
        "shadow": "the object's dark drop shadow, 5 px along a class-coded direction, hugging the object inside its "
                  "box, RGB, an eighth kind added to try the defaults again",
        "tone": "a class-coded tone curve (a gamma per colour channel) over the whole image, the object included, RGB, "
                "a ninth kind added to try the defaults again, one no mask can separate",
        "lamp": "a coloured light of a class-coded hue, strongest at a random place and fading over the whole image, "
                "the object included, RGB, a tenth kind added to try the defaults and --object-colour cue, one no "
                "mask can separate",
        "veil": "class-coded stripes at 30 % opacity over the whole image, the object included, RGB, an eleventh kind "
                "(issue 53) added to try the calibrated verdict, one no mask can separate and no colour match sees",
        "frame": "a 4 px border of a class-coded hue around the image, RGB, a twelfth kind (issue 53) added to try "
                 "the calibrated verdict on a cue that rarely enters the box",
        "focus": "a Gaussian blur of class-coded width over the whole image, the object included, on coarser grey "
                 "noise, RGB, a thirteenth kind (issue 53) added after the silhouette swap to try the verdict on a cue "
                 "nobody tuned it on"}
#: the learning rate of the original and of the fine-tune (treat fine-tunes at the original's rate)
LR = "0.05"


def _treat_args(arm: str, folder: Path) -> list[str]:
    sub = "masks-exact" if arm == "exact" else "masks-box"
    return ["--masks", str(folder / sub), "--mask-format", "png"] + (["--refine", "none"] if arm == "box-norefine" else [])


def _resume(out: Path) -> list[str]:
    """``--resume`` where a stopped benchmark left a run: its finished fine-tunes load and an interrupted one
    continues from its checkpoint (the CLI refuses when the folder's config.yaml records other settings)."""
    return ["--resume"] if (out / "config.yaml").is_file() else []


def run_kind(kind: str, budget: dict, cache: Path, root: str, threads: int | None, decoys: Any = D,
             cached_only: bool = False) -> list[dict]:
    """Every arm of every seed of one decoy kind: rows for the table and the JSON. ``decoys`` writes the
    folders (``make_folder``, ``channels``, ``CANVAS``: :mod:`benchmarks.inbox_decoys` by default);
    ``cached_only`` trains nothing and keeps the runs that finished."""
    D = decoys
    data = ["--in-channels", str(D.channels(kind)), "--image-size", str(D.CANVAS), "--model", "smallcnn"]
    b = budget
    ceil_dir = D.make_folder(cache / kind / "data-ceiling", kind, b["n_train"], b["n_test"], b["per_class"], root, seed=0,
                             shuffled_train=True)
    runs = cache / kind / "runs"
    ceil_run = b.get("ceil_run", "ceiling")
    if not (runs / ceil_run / "summary.json").is_file():
        if cached_only:
            return []
        S.cli(["train", "--data", f"imagefolder:{ceil_dir}", *data, "--epochs", str(b["ceil_epochs"]), "--lr", LR,
             "--out", str(runs / ceil_run), *_resume(runs / ceil_run)], threads)
    ceiling = ceiling_of(cache, kind, ceil_run)[0]
    rows = []
    for seed in b["seeds"]:
        folder = D.make_folder(cache / kind / f"data-seed{seed}", kind, b["n_train"], b["n_test"], b["per_class"], root,
                               seed=seed)
        orig = runs / f"orig-seed{seed}"
        if cached_only and not (orig / "summary.json").is_file():
            continue
        # the same generator's test split drawn again (other objects, cues, places): the truth measured again
        redraws = [D.make_folder(cache / kind / f"data-seed{seed}-redraw{'' if i == 1 else i}", kind, 0, b["n_test"],
                                 b["per_class"], root, seed=i * REDRAW_SEED + seed) for i in range(1, REDRAWS + 1)]
        if not (orig / "summary.json").is_file():
            S.cli(["train", "--data", f"imagefolder:{folder}", *data, "--epochs", str(b["orig_epochs"]), "--lr", LR,
                 "--seed", str(seed), "--out", str(orig), *_resume(orig)], threads)
        for arm in b["arms"]:
            if arm == "box-norefine" and seed not in b["norefine_seeds"]:
                continue
            out = runs / f"treat-{arm}{b.get('variant', '')}-seed{seed}"  # another grid or schedule: its own runs
            if cached_only and not (out / "summary.json").is_file():
                continue
            if not (out / "summary.json").is_file():
                S.cli(["treat", "--weights", str(orig / "model.safetensors"), "--data", f"imagefolder:{folder}", *data,
                     *_treat_args(arm, folder), "--alpha", "0", "--beta", *b["betas"], "--lr", b.get("ft_lr", LR),
                     *(["--epochs", str(b["ft_epochs"])] if b["ft_epochs"] else []), "--seeds", str(seed),
                     *b.get("treat_extra", []),
                     "--out", str(out), *_resume(out)], threads)
            s = json.loads((out / "summary.json").read_text())
            rows.append({"kind": kind, "arm": arm, "seed": seed, "summary": s, "reliance": remeasure(out, folder, arm, seed),
                         "ceiling": ceiling, "ceiling_run": ceil_run,
                         "original": json.loads((orig / "summary.json").read_text())["test_acc"],
                         "cells": cell_truth(out, folder, seed),
                         "redraw": [cell_truth(out, f, seed, again=i) for i, f in enumerate(redraws, 1)]})
    return rows


REPORT_SPLIT_KEYS = ("refine", "erode", "expand", "holdout", "annotated_per_class")  # what decides a run's report set
#: the swaps that paste the object otherwise than as it is (a cached ``reliance.json`` from before one existed gains it)
PASTED = ("matched_swap_acc", "transfer_swap_acc", "silhouette_swap_acc")


def remeasure(run_dir: Path, folder: Path, arm: str, seed: int) -> dict:
    """Background reliance of the run's original, control and treated model on its report set,
    measured again from the saved weights with the library's current measure (``reliance.json``),
    so every row of the table uses one definition whichever code version trained it."""
    from model_doctor.io import atomic_write_text
    from model_doctor.treatment.reliance import background_reliance

    path = run_dir / "reliance.json"
    if path.is_file():
        out = json.loads(path.read_text())
        missing = [k for k in PASTED if any(k not in v for v in out.values())]
        if not missing:
            return out
        # measured before these swaps existed: add them, the same report images and partners
        s, cfg, original, _, pools = run_pools(run_dir, folder, arm)
        for name, model in _models(run_dir, seed, original):
            rel = background_reliance(model, pools.report, seed=cfg.train.split_seed)
            for k in missing:
                out[name][k] = rel[k]
                for c, row in out[name]["per_class"].items():
                    row[k] = rel["per_class"][int(c)][k]
        atomic_write_text(path, json.dumps(out))
        return out
    s, cfg, original, meta, pools = run_pools(run_dir, folder, arm)
    test = test_pool(cfg, folder, "exact" if arm == "exact" else "box", meta["in_channels"])
    out = {}
    for name, model in _models(run_dir, seed, original):
        rel = background_reliance(model, pools.report, seed=cfg.train.split_seed)
        out[name] = {k: rel[k] for k in ("swap_acc", "shuffled_swap_acc", *PASTED, "bg_only_acc", "chance",
                                          "refined_share", "images", "per_class")}
        if test is not None:
            out[name]["test_pool_swap_acc"] = background_reliance(model, test[0], S.TEST_PARTNERS, backgrounds=test[1])["swap_acc"]
    atomic_write_text(path, json.dumps(out))
    return out


def run_pools(run_dir: Path, folder: Path, arm: str) -> tuple[dict, Any, Any, dict, Any]:
    """(summary, config, original, its meta, pools) of a finished treat run: its own split and foregrounds, so
    its selection and report sets are the ones it used."""
    from model_doctor import runtime as P
    from model_doctor.jobs.treat import masks_of
    from model_doctor.treating import annotated_pools

    s = json.loads((run_dir / "summary.json").read_text())
    cfg = _run_config(s, folder)
    t, saved = cfg.treat, s["config"]
    t.masks, t.mask_format = str(folder / ("masks-exact" if arm == "exact" else "masks-box")), "png"
    for key in REPORT_SPLIT_KEYS:  # the run's own split and foregrounds: its report set, measured as it was
        if key in saved["treat"]:
            setattr(t, key, saved["treat"][key])
    cfg.train.split_seed, cfg.train.val_fraction = saved["train"]["split_seed"], saved["train"]["val_fraction"]
    original, meta = P.load_model(cfg)
    full = P.load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    tr, _ = P.train_val_split(cfg, full, meta["in_channels"])
    _, pools, _ = annotated_pools(cfg, full, tr, masks_of(cfg, full), log=lambda *_: None)
    return s, cfg, original, meta, pools


def _run_config(s: dict, folder: Path) -> Any:
    """A config that loads a run's original and its data folder as the run did."""
    from model_doctor.config import Config

    cfg = Config()
    cfg.data.name, cfg.model.weights = f"imagefolder:{folder}", s["config"]["model"]["weights"]
    cfg.data.image_size, cfg.model.in_channels = s["config"]["data"]["image_size"], s["config"]["model"]["in_channels"]
    return cfg


def _models(run_dir: Path, seed: int, original: Any):
    """(name, model) of the run's original, control and treated model (the weight the run chose, in
    the round the run reported), from the run's :class:`~model_doctor.TreatResult`."""
    from model_doctor import TreatResult

    result = TreatResult.load(run_dir)
    yield "original", original
    for name in ("control", "treated"):
        yield name, result.model(seed, name, like=original)


#: how many times each seed's test split is drawn again, and the seed step between draws (draw i: i·1000 + seed)
REDRAWS, REDRAW_SEED = 3, 1000


def cell_truth(run_dir: Path, folder: Path, seed: int, again: int = 0) -> dict | None:
    """Shuffled-cue test accuracy with every (class, cue) cell of the test set weighted equally, for
    the run's original, control and treated model (``truth.json``); None where the folder has no
    ``test-cues.csv``. Why: a random cue per test image puts a random share of images on their own
    class's cue (7.3 % to 12.3 % on E5's seeds), and a model that reads only the cue scores that
    share; equal cells give every such model 1/K, the expectation the truth stands for, so the
    benchmark's own draw no longer ranks the models it cannot tell apart. The plain accuracy is
    kept beside it, and must equal ``treat``'s. ``again`` (i ≥ 1): ``folder`` is the i-th other draw
    of the test split (``truth-redraw<i>.json``; nothing to compare with ``treat``'s): how far the
    truth agrees with itself when the benchmark's own draw changes."""
    import torch

    from model_doctor import runtime as P
    from model_doctor.data.base import hits_of
    from model_doctor.io import atomic_write_text

    name = "truth.json" if not again else f"truth-redraw{'' if again == 1 else again}.json"
    path, cues_csv = run_dir / name, folder / "test-cues.csv"
    if path.is_file():
        cached = json.loads(path.read_text())
        if all("conflicting_test_acc" in v for v in cached.values()):  # else written before that figure: measure again
            return cached
    if not cues_csv.is_file():
        return None
    s = json.loads((run_dir / "summary.json").read_text())
    cfg = _run_config(s, folder)
    original, meta = P.load_model(cfg)
    data = P.load_data(cfg, "test", meta["in_channels"], meta["num_classes"])
    cue = dict(line.split(",") for line in cues_csv.read_text().splitlines()[1:])
    labels = torch.tensor([int(y) for _, y in data.samples])
    cues = torch.tensor([data.classes.index(f"{int(cue[rel]):02d}") for rel, _ in data.samples])
    out = {}
    for name, model in _models(run_dir, seed, original):
        hits = hits_of(model, data)
        out[name] = {"test_acc": float(hits.double().mean()), "cells_test_acc": equal_cells(hits, labels, cues),
                     "conflicting_test_acc": equal_cells(hits, labels, cues, conflicting=True)}
        if not again and name != "original" and abs(out[name]["test_acc"] - s[name]["test_acc"]) > 1e-6:
            raise RuntimeError(f"{run_dir}: {name}'s test accuracy {out[name]['test_acc']:.4f} here, {s[name]['test_acc']:.4f} "
                               "in treat's summary; the test folder changed since the run (delete the run to train it again)")
    atomic_write_text(path, json.dumps(out))
    return out


def equal_cells(hits: Any, labels: Any, cues: Any, conflicting: bool = False) -> float:
    """Accuracy with every (class, cue) cell present weighted equally: the mean over cells of the
    cell's hit rate. A model that reads only the cue scores exactly 1/K on a test set where all K²
    cells occur, whatever share of images drew their own class's cue. ``conflicting``: the cells
    whose cue codes another class only (E6's truth, the groups a swap onto another class's
    background stands for); a cue-only model scores 0 there."""
    hits = hits.double()
    cells = {(int(y), int(c)) for y, c in zip(labels, cues) if not (conflicting and int(y) == int(c))}
    return sum(float(hits[(labels == y) & (cues == c)].mean()) for y, c in cells) / len(cells)


def test_pool(cfg: Any, folder: Path, kind: str, in_channels: int) -> tuple[Any, Any] | None:
    """(every test image as an annotated pool, masks-test-<kind> refined (and eroded) as ``treat`` does; the class
    each one's cue codes) where the folder has them (``inbox_decoys.write_images`` writes them), else
    None. Why: the user's swap measure on 2000 test images tells its bias from a small report set's noise."""
    import torch

    from model_doctor import runtime as P
    from model_doctor.data.annotations import load_masks
    from model_doctor.data.workflow import with_masks
    from model_doctor.treatment.pool import AnnotatedPool

    cues_csv, masks_dir = folder / "test-cues.csv", folder / f"masks-test-{kind}"
    if not (cues_csv.is_file() and masks_dir.is_dir()):
        return None
    data = P.load_data(cfg, "test", in_channels)
    pool = AnnotatedPool.from_dataset(with_masks(data, load_masks("png", masks_dir, dataset_root=masks_dir), 0))
    if cfg.treat.refine != "none" or cfg.treat.erode:
        pool = pool.refine(cfg.treat.refine, cfg.train.split_seed, cfg.treat.erode)
    cue = dict(line.split(",") for line in cues_csv.read_text().splitlines()[1:])
    rel = [data.path(i).relative_to(data.root).as_posix() for i in pool.indices]
    return pool, torch.tensor([data.classes.index(f"{int(cue[r]):02d}") for r in rel])


def ceiling_of(cache: Path, kind: str, run: str = "ceiling") -> tuple[float, list[float]]:
    """The ceiling model's shuffled-cue test accuracy and its validation curve (one value per epoch);
    ``run``: ``ceiling`` at the budget's epochs, ``ceiling-ep<N>`` at ``--ceiling-epochs N``."""
    runs = cache / kind / "runs" / run
    curve = [json.loads(line)["val_acc"] for line in (runs / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((runs / "summary.json").read_text())["test_acc"], curve


def _ms(vals: list[float]) -> str:
    import statistics

    if len(vals) < 2:
        return f"{100 * vals[0]:.1f}"
    return f"{100 * statistics.mean(vals):.1f} ± {100 * statistics.stdev(vals):.1f}"


def _cells(rows: list[dict], kinds: list[str], arms: list[str]):
    """(cue, annotation, ceiling accuracy, its rows) for every cell of a table that has rows."""
    for kind in kinds:
        for arm in arms:
            rs = [r for r in rows if r["kind"] == kind and r["arm"] == arm]
            if rs:
                yield kind, arm, rs[0]["ceiling"], rs


def table(rows: list[dict], kinds: list[str], arms: list[str]) -> list[str]:
    import statistics

    lines = ["| cue | annotation | original | ceiling | control | treated | treated − control | gap closed | "
             "swap acc treated − control (`treat`'s verdict on the lowest of its figures) | "
             "user's swap acc: treated / control | background-only acc: treated / control | "
             "colour-matched swap acc (`treat` prints it since 2026-12-04): treated / control; treated − control | "
             "silhouette swap acc (since 2026-12-07): treated / control; treated − control |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, arm, ceil, rs in _cells(rows, kinds, arms):
        tr = [r["summary"]["treated"]["test_acc"] for r in rs]
        co = [r["summary"]["control"]["test_acc"] for r in rs]
        og = [r["original"] for r in rs]
        gap = [(t - o) / max(ceil - o, 1e-9) for t, o in zip(tr, og)]
        rel = lambda a, k: [r["reliance"][a][k] for r in rs]
        sd = [t - c for t, c in zip(rel("treated", "swap_acc"), rel("control", "swap_acc"))]
        said = judge([r["reliance"]["treated"] for r in rs], [r["reliance"]["control"] for r in rs],
                     [r["reliance"]["original"] for r in rs], int(rs[0]["reliance"]["treated"]["images"]),
                     float(rs[0]["reliance"]["treated"].get("chance", 0.1)),
                     rs[0]["summary"]["selection"].get("headline", "swap_acc"))
        head = said[0] if said else {}
        verdict = f"{_ms(sd)} (`treat`: " + ("claims " + f"{100 * head['mean']:+.1f}" if head.get("beyond_noise") else
                                            "no claim" + (f": {head['withdrawn']}" if head.get("withdrawn") else "")) + ")"
        def pasted(k: str) -> str:   # measured (or remeasured from the kept weights) since the date the header names
            if not all(k in r["reliance"][a] for r in rs for a in ("treated", "control")):
                return "—"
            d = [t - c for t, c in zip(rel("treated", k), rel("control", k))]
            return f"{_ms(rel('treated', k))} / {_ms(rel('control', k))}; {_ms(d)}"
        lines.append(f"| {kind} | {arm} | {_ms(og)} | {100 * ceil:.1f} | {_ms(co)} | {_ms(tr)} | "
                     f"{_ms([t - c for t, c in zip(tr, co)])} | {100 * statistics.mean(gap):.0f} % | {verdict} | "
                     f"{_ms(rel('treated', 'swap_acc'))} / {_ms(rel('control', 'swap_acc'))} | "
                     f"{_ms(rel('treated', 'bg_only_acc'))} / {_ms(rel('control', 'bg_only_acc'))} | "
                     f"{pasted('matched_swap_acc')} | {pasted('silhouette_swap_acc')} |")
    return lines


def test_pool_table(rows: list[dict]) -> list[str]:
    """Per treated model: the user's swap accuracy (report images), the same measure on every test
    image (benchmark only) and the shuffled-cue test accuracy. Empty where no row has the test figure."""
    have = [r for r in rows if "test_pool_swap_acc" in r["reliance"]["treated"]]
    if not have:
        return []
    lines = ["", f"The swap measure on every test image ({S.TEST_PARTNERS} partners each, chosen by the class the cue "
             "codes; the test boxes refined as `treat` refines): no user has it; beside the user's figure it tells the "
             "measure's bias from the report set's noise.", "",
             "| cue | annotation | seed | report images | user's swap acc (treated) | swap acc on the test images | "
             "shuffled-cue test acc |", "|---|---|---|---|---|---|---|"]
    for r in have:
        t = r["reliance"]["treated"]
        lines.append(f"| {r['kind']} | {r['arm']} | {r['seed']} | {t['images']} | {100 * t['swap_acc']:.1f} | "
                     f"{100 * t['test_pool_swap_acc']:.1f} | {100 * r['summary']['treated']['test_acc']:.1f} |")
    return lines


def weights_table(rows: list[dict], kinds: list[str], arms: list[str]) -> list[str]:
    """Every weight's shuffled-cue test accuracy beside the selection rule's choice, so a row that
    falls short says whether the method or the rule did. These test numbers chose nothing."""
    import statistics

    def per_beta(r: dict) -> dict[str, float]:  # one weight: treat names its arm "treated" only
        run = r["summary"]["runs"][0]
        out = {k.removeprefix("treated-beta"): v["test_acc"] for k, v in run.items() if k.startswith("treated-beta")}
        return out or {f"{run['chosen_beta']:g}": run["treated"]["test_acc"]}

    runs = {id(r): per_beta(r) for r in rows}
    betas = sorted({b for run in runs.values() for b in run}, key=float)
    lines = ["| cue | annotation | " + " | ".join(f"β={b}" for b in betas) + " | gap closed: rule's choice | "
             "gap closed: best single β | seeds where the rule chose the test-best β |",
             "|---|---|" + "---|" * (len(betas) + 3)]
    short = []
    for kind, arm, ceil, rs in _cells(rows, kinds, arms):
        acc = {b: [runs[id(r)][b] for r in rs] for b in betas}
        gap = lambda accs: statistics.mean((a - r["original"]) / max(ceil - r["original"], 1e-9) for a, r in zip(accs, rs))
        rule = [r["summary"]["treated"]["test_acc"] for r in rs]
        best_fixed = max(betas, key=lambda b: gap(acc[b]))
        hits = sum(abs(t - max(acc[b][i] for b in betas)) < 1e-9 for i, t in enumerate(rule))
        lines.append(f"| {kind} | {arm} | " + " | ".join(_ms(acc[b]) for b in betas) + f" | {100 * gap(rule):.0f} % | "
                     f"{100 * gap(acc[best_fixed]):.0f} % (β={best_fixed}) | {hits} of {len(rs)} |")
        if gap(rule) < 0.5:
            why = (f"the method at this schedule: no single β of {', '.join(betas)} reaches half (best β={best_fixed}: "
                   f"{100 * gap(acc[best_fixed]):.0f} %)" if gap(acc[best_fixed]) < 0.5 else
                   f"the rule: β={best_fixed} on every seed would close {100 * gap(acc[best_fixed]):.0f} %, but the "
                   f"held-out images chose the test-best β on {hits} of {len(rs)} seeds")
            short.append(f"- {kind} / {arm}: the rule's choice closes {100 * gap(rule):.0f} % of the gap (< ½); "
                         f"what falls short is {why}.")
    return lines + ([""] + short if short else ["", "Every row's rule choice closes at least half of the gap."])


def _chosen(row: dict) -> str:
    """``β (treated / control validation accuracy %)`` of one run's seed."""
    s = row["summary"]
    run = s["runs"][0]
    return f"{s['selection']['chosen_beta'][str(row['seed'])]:g} ({100 * run['treated']['val_acc']:.0f} / {100 * run['control']['val_acc']:.0f} %)"


def write_rows(rows: list[dict], path: Path) -> None:
    """Every arm and seed, in the format ``reliance_vs_truth.py`` reads."""
    from model_doctor.io import atomic_write_text

    keep = ("swap_acc", "shuffled_swap_acc", *PASTED, "bg_only_acc", "test_pool_swap_acc")
    slim = [{"kind": r["kind"], "arm": r["arm"], "seed": r["seed"], "original": r["original"],
             "original_reliance": {k: r["reliance"]["original"][k] for k in keep if k in r["reliance"]["original"]},
             "ceiling": r["ceiling"],
             **{a: {"test_acc": r["summary"][a]["test_acc"], **{k: r["reliance"][a][k] for k in keep if k in r["reliance"][a]},
                    "val_acc": r["summary"]["runs"][0][a].get("val_acc")}
                for a in ("treated", "control")},
             "original_val_acc": r["summary"]["original"].get("val_acc"),
             # the swap figure `treat` put first (--object-colour cue: the colour-matched one); absent before 2026-12-05
             "headline": r["summary"]["selection"].get("headline", "swap_acc"),
             "val_floor": r["summary"]["selection"].get("val_floor"),
             **({"escalated": bool(r["summary"]["selection"]["escalation"]
                                   and r["summary"]["selection"]["escalation"]["fired"])}
                if "escalation" in r["summary"]["selection"] else {}),  # absent: run before treat escalated
             "chosen_beta": r["summary"]["selection"]["chosen_beta"][str(r["seed"])],
             **({key: {a: r["cells"][a][key] for a in ("original", "control", "treated")}
                 for key in ("cells_test_acc", "conflicting_test_acc")} if r.get("cells") else {}),
             **({f"redraw_{key}": {a: [d[a][key] for d in r["redraw"]] for a in ("original", "control", "treated")}
                 for key in ("test_acc", "cells_test_acc")} if r.get("redraw") and all(r["redraw"]) else {}),
             "images": r["reliance"]["treated"]["images"]} for r in rows]  # the report set: the figure's interval
    atomic_write_text(path, json.dumps(slim, indent=1))


#: treat options the benchmark passes through as given: (flag, argparse keywords, treat's default, the
#: suffix the setting adds to its runs' cache name; names must not change, or cached runs train again)
#: the treat options a benchmark passes through as given (the flag is treat's own, built from its
#: declaration) and the cache-name suffix another value adds
PASS_THROUGH: tuple[tuple[str, str], ...] = (
    ("treat.partners", "-partners-{}"), ("treat.erode", "-erode{}"), ("treat.pool_batch", "-pool{}"),
    ("treat.holdout", "-holdout{}"), ("treat.space_method", "-{}"), ("treat.refine", "-refine-{}"),
    ("treat.kl_weight", "-kl{}"), ("treat.min_val_share", "-floor{}"), ("treat.escalate_below", "-esc{}"),
    ("treat.object_colour", "-colour-{}"),
)


def add_pass_through(ap) -> None:
    """The :data:`PASS_THROUGH` flags on a benchmark's parser (E5 and E4b share them), as ``treat`` declares them."""
    from model_doctor.cli.parser import add_option
    from model_doctor.config import TreatConfig

    g = ap.add_argument_group("treat's options, passed through (default: treat's; another value trains its own runs)")
    for dest, _ in PASS_THROUGH:
        add_option(g, dest, f"treat's (default {getattr(TreatConfig(), dest.split('.')[1])})")


def _where(path: str) -> str:
    """A folder as a command line shows it: relative to the checkout where it lies inside it."""
    p = Path(path).absolute()
    return p.relative_to(S.ROOT).as_posix() if p.is_relative_to(S.ROOT) else path


def pass_through(args) -> tuple[list[str], str]:
    """(treat options as given, in :data:`PASS_THROUGH` order; the cache-name suffix they add)."""
    from model_doctor.config import TreatConfig
    from model_doctor.config.options import declared, flag_of

    flags = {f"treat.{k}": flag_of(k, o) for k, (_, o) in declared(TreatConfig).items()}
    extra, variant = [], ""
    for dest, suffix in PASS_THROUGH:
        value = getattr(args, dest)
        if value is not None:
            text = f"{value:g}" if isinstance(value, float) else str(value)
            extra += [flags[dest], text]
            variant += suffix.format(text)
    return extra, variant


def main() -> int:
    ap = S.parser(__doc__)
    ap.add_argument("--kinds", nargs="+", default=list(D.KINDS), choices=list(D.KINDS + D.FRESH_KINDS))
    ap.add_argument("--betas", nargs="+", default=None,
                    help="the weights treat tries (default: the budget's, 1 3 10 at full); another grid trains its own runs")
    ap.add_argument("--epochs", type=int, default=None,
                    help="treat's epochs (default: the budget's, treat's 10 at full); another schedule trains its own runs")
    ap.add_argument("--arms", nargs="+", default=None, choices=["box", "exact"], help="annotation kinds (default: both)")
    ap.add_argument("--lr", type=float, default=None,
                    help=f"treat's learning rate (default: the original's, {LR}); another rate trains its own runs")
    add_pass_through(ap)
    ap.add_argument("--ceiling-epochs", type=int, default=None,
                    help="the ceiling's epochs (default: the budget's, 30 at full), where its curve has not levelled "
                         "off; another count trains its own ceiling")
    ap.add_argument("--cached-only", action="store_true", help="train nothing: the table of the runs that finished")
    args = ap.parse_args()
    budget = S.with_seeds(BUDGETS[args.budget], args.seeds)
    variant = ""
    if args.betas:
        budget = {**budget, "betas": [f"{float(v):g}" for v in args.betas]}
        variant += "-beta" + "-".join(budget["betas"])
    if args.epochs:
        budget = {**budget, "ft_epochs": args.epochs}
        variant += f"-ep{args.epochs}"
    if args.lr is not None:
        budget = {**budget, "ft_lr": f"{args.lr:g}"}
        variant += f"-lr{args.lr:g}"
    extra, suffix = pass_through(args)  # treat options passed as given, in this order
    variant += suffix
    budget = {**budget, "variant": variant, "treat_extra": extra, **({"arms": args.arms} if args.arms else {})}
    if args.ceiling_epochs and args.ceiling_epochs != budget["ceil_epochs"]:
        budget = {**budget, "ceil_epochs": args.ceiling_epochs, "ceil_run": f"ceiling-ep{args.ceiling_epochs}"}
    cache = Path(args.cache) / "e5-inbox" / args.budget
    rows = [r for kind in args.kinds for r in run_kind(kind, budget, cache, args.root, args.threads, cached_only=args.cached_only)]
    lines = header("E5: shortcuts inside the annotated box", "bench_e5_inbox.py", args.budget)
    lines[2] = (f"Command: `python -m benchmarks.bench_e5_inbox --budget {args.budget} --kinds {' '.join(args.kinds)}"
                + (f" --betas {' '.join(budget['betas'])}" if args.betas else "")
                + (f" --epochs {args.epochs}" if args.epochs else "") + (f" --arms {' '.join(args.arms)}" if args.arms else "")
                + (f" --lr {args.lr:g}" if args.lr is not None else "")
                + (f" --ceiling-epochs {args.ceiling_epochs}" if args.ceiling_epochs else "")
                + "".join(f" {a}" for a in extra)
                + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
                + (f" --cache {_where(args.cache)} --cached-only" if args.cached_only and Path(args.cache) != S.CACHE
                   else " --cached-only" if args.cached_only else "") + "`  ")
    b = budget
    lines += [f"Fashion-MNIST objects (scaled 18-28 px, pasted by their own pixels) on a {D.CANVAS} px canvas whose whole "
              f"background carries a class-coded cue ({'; '.join(f'{k}: {CUES[k]}' for k in args.kinds)}), visible inside "
              f"each object's box. {b['n_train']} training images per seed (validation = "
              f"10 % of them), {b['n_test']} test images with a random class's cue; masks for {b['per_class']} training "
              f"images per class. Original: `train --epochs {b['orig_epochs']} --lr {LR}` per seed on its own sample; "
              f"ceiling: `train --epochs {b['ceil_epochs']} --lr {LR}` on uninformative cues (seed 0). Treatment: `treat "
              f"--alpha 0 --beta {' '.join(b['betas'])} --lr {b.get('ft_lr', LR)}"
              + (f" --epochs {b['ft_epochs']}" if b["ft_epochs"] else "")
              + "".join(f" {a}" for a in extra)
              + ("` (the original's rate)" if b.get("ft_lr", LR) == LR else "` (not the original's rate, which treat "
                 "would use by default)") + " with every other option at its default "
              + ("(" if b["ft_epochs"] else "(10 epochs, ") + ("" if getattr(args, "treat.refine") else "`--refine grabcut`, ")
              + "`--select-rule swap`)"
              + (f"; `box-norefine` adds `--refine none` (the behaviour before refinement; seed(s) "
                 f"{', '.join(map(str, b['norefine_seeds']))})" if b["norefine_seeds"] else "") + ". Seeds: "
              f"{', '.join(map(str, b['seeds']))}, each with its own original and annotated sample. Reliance figures are "
              "what `treat` prints, on held-out annotated images neither trained on nor used to select.", ""]
    lines += table(rows, args.kinds, b["arms"]) + test_pool_table(rows)
    lines += ["", "Weight chosen per seed (no test data), with the chosen model's validation accuracy against the "
              "control's: " + "; ".join(
        f"{k} {a}: " + ", ".join(_chosen(r) for r in rows if (r["kind"], r["arm"]) == (k, a))
        for k in args.kinds for a in b["arms"] if any((r["kind"], r["arm"]) == (k, a) for r in rows))]
    lines += ["", "Every weight's shuffled-cue test accuracy (%; shown to say where a row falls short, it chose nothing):", ""]
    lines += weights_table(rows, args.kinds, b["arms"])
    lines += ["", "Ceiling curves (validation accuracy per epoch, uninformative cues):", ""]
    for kind in args.kinds:
        if (cache / kind / "runs" / b.get("ceil_run", "ceiling") / "summary.json").is_file():
            _, curve = ceiling_of(cache, kind, b.get("ceil_run", "ceiling"))
            lines.append(f"- {kind}: " + " ".join(f"{100 * v:.0f}" for v in curve))
    lines += ["", S.SPLIT_NOTE]
    if args.out:
        write_rows(rows, Path(args.out).with_suffix(".json"))
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
