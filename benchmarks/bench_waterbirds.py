"""E6 — the Waterbirds-style benchmark: worst-group accuracy of the counterfactual against ERM,
JTT, DFR and GroupDRO (oracle), all as arms of one study per seed.

Per seed (each with its own data, original and annotated sample): ``model-doctor waterbirds``'s
writer (``model_doctor.data.waterbirds``: Fashion-MNIST tops vs footwear in random colours on
natural-photo crops; the class agrees with the place on ``correlation`` of training images;
group-balanced validation and test); an ERM original trained from scratch (no pretrained weights
here); then, fine-tuning that original with one schedule (:func:`model_doctor.study.run_study`):

- ``erm`` — CE only (the control);
- ``jtt`` — the original's training errors repeated ×20 (no group labels);
- ``dfr`` — the last layer only, on the N annotated images per class and 4 background swaps of each;
- ``groupdro`` — online GroupDRO with every training image's group (oracle; the upper reference);
- ``counterfactual`` — the default space method at β 1, 3 and 10 (one arm each, the best chosen);
- ``ceiling`` — not an arm: a model trained like the original on the same objects with places drawn
  independently of the class (correlation 0.5), to show what the model can learn without the shortcut.

Every arm's epoch (and the counterfactual's β) is chosen by worst-group accuracy on the
group-balanced validation split, which needs validation group labels (as JTT's and DFR's papers
assume); the test split is read once per finished arm. Annotations: boxes, refined by GrabCut.

``--study annotations`` then varies the annotation on the same seeds, originals and ERM control:
boxes at 5 and 100 per class and exact masks (the object's pixels) at 20, each with its own DFR
and counterfactual (β 1, 3, 10 unless ``--betas`` narrows them; chosen as above). The 100-per-class masks come from the same
writer with more annotations (the images are identical, which is checked).

``--study rule`` chooses the counterfactual as ``treat`` does for a user without group labels:
``treat``'s default share of each class's annotated images is held out from every kind of training
(a quarter, raised to a half for two classes so that 10 images report:
``model_doctor.treatment.pools.held_fraction``; before that default, 6 chose and 4 reported), half
of it chooses β and the epoch, and the other half gives the swap accuracies the user reads. Two rules
choose, each its own arms: ``swap`` (``treat``'s default without group labels: swap accuracy on
another class's background) and ``balanced`` (the lower of that and the swap accuracy on the own
class's background, which a model reading the background backwards fails). Their worst-group
accuracy is compared with the arms above, which chose with validation group labels; the report
images' swap accuracies are listed beside the test groups they stand for (another class's
background: the cue-conflicting groups; the own class's: the cue-agreeing ones), and written as
rows for ``benchmarks.reliance_vs_truth`` next to ``--out``. ``balanced`` was designed after
reading seeds 0-2 of this study; seeds 3-4 judge it, and fresh seeds 6-8 at today's split again.
Each model's row also says whether ``treat`` would warn that it reads the background backwards
(the sign test on its report images). ``--rules swap`` trains the default rule's arms only.
Without the main study for a seed, only the original and ERM stand beside the rules. ``--annotated N``
annotates N training images per class instead of the budget's 20 (the same writer and images; the
held-out share is ``treat``'s default: a quarter, raised only where that leaves fewer than 10 to
report), to show what a larger report set changes.

``--arch`` trains another model from scratch instead of the budget's (e.g. ``resnet18``);
``--betas`` narrows the counterfactual's weights (the table says which were tried).

Usage: python -m benchmarks.bench_waterbirds [--budget small|full] [--study main|annotations|rule] [--seeds 0 1 2]
[--arch resnet18] [--betas 1] [--out docs/results/e6/e6_waterbirds.md]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import _studies as S
from benchmarks._common import emit, header
from benchmarks.baselines import GroupDROLoss, WithGroups, freeze_all_but_last, jtt_upsampled, swap_balanced
from model_doctor.config import TreatConfig
from model_doctor.data.annotations import load_masks
from model_doctor.data.datasets import load_dataset
from model_doctor.data.groups import chance_worst_group, group_accuracy, load_groups
from model_doctor.data.masks import LimitedMasks
from model_doctor.data.waterbirds import CLASSES, PLACES, write_waterbirds
from model_doctor.data.workflow import with_masks
from model_doctor.experiment import spread
from model_doctor.models import build_model
from model_doctor.study import ArmSpec, beyond_noise, from_scratch, run_study
from model_doctor.training import FitConfig
from model_doctor.treatment.pool import AnnotatedPool
from model_doctor.treatment.selection import selector
from model_doctor.treatment.space import CounterfactualLoss

BUDGETS = {
    "small": dict(arch="tinycnn", seeds=[0], n_train=240, n_val=40, n_test=80, size=32, per_class=8, orig_epochs=2,
                  ft_epochs=1, betas=[1.0], variants=[("box", 2), ("box", 8), ("box", 16), ("exact", 8)]),
    # sized for this 2-core CPU (smallcnn at 64 px trains ~150 img/s on one core): 2000 images, arms 5 epochs
    "full": dict(arch="smallcnn", seeds=[0, 1, 2], n_train=2000, n_val=400, n_test=1000, size=64, per_class=20,
                 orig_epochs=15, ft_epochs=5, betas=[1.0, 3.0, 10.0],
                 variants=[("box", 5), ("box", 20), ("box", 100), ("exact", 20)]),
}
CORRELATION = 0.95
JTT_FACTOR = 20


def _data(folder: Path, size: int) -> dict:
    """The splits and the group labels."""
    name = f"imagefolder:{folder}"
    ds = {s: load_dataset(name, s, image_size=size, in_channels=3) for s in ("train", "val", "test")}
    return {**ds, "groups": {s: load_groups(folder / "groups.csv", ds[s], s) for s in ds}}


def _pool(train, folder: Path, kind: str, per_class: int, seed: int) -> AnnotatedPool:
    """``per_class`` annotated training images per class (the library's picker), their ``masks-<kind>``
    (``box`` or ``exact``) refined by GrabCut as ``treat`` refines by default."""
    masks = load_masks("png", folder / f"masks-{kind}", dataset_root=folder / f"masks-{kind}")
    return AnnotatedPool.from_dataset(LimitedMasks(with_masks(train, masks, 0), per_class, seed)).refine("grabcut")


def _annotated(b: dict, seed: int, cache: Path, root: str | None, per_class: int) -> Path:
    """The seed's folder, or for more annotations than it has, the same writer's folder with
    ``per_class`` annotations (the same images: checked on the first training image)."""
    folder = cache / f"data-seed{seed}"
    if per_class <= b["per_class"]:
        return folder
    more = cache / f"data-seed{seed}-annotated{per_class}"
    if not (more / "groups.csv").is_file():
        write_waterbirds(more, b["n_train"], b["n_val"], b["n_test"], b["size"], CORRELATION, per_class, seed,
                         fashion_root=root)
    first = sorted((folder / "train").rglob("*.png"))[0]
    if first.read_bytes() != (more / first.relative_to(folder)).read_bytes():
        raise RuntimeError(f"{more} does not hold the same images as {folder}; delete it and rerun")
    return more


def _variant_arms(pool: AnnotatedPool, tag: str, betas: list[float], seed: int) -> list[ArmSpec]:
    """One annotation's DFR arm and counterfactual arms (group ``cf<tag>``, the best β chosen)."""
    dfr = ArmSpec(f"dfr{tag}", train=swap_balanced(pool, partners=4, seed=seed), prepare=freeze_all_but_last,
                  fit={"freeze_bn": True})
    return [dfr] + [ArmSpec(f"counterfactual{tag}-beta{b:g}", lambda b=b: CounterfactualLoss(pool, b, seed=seed),
                            group=f"cf{tag}", weight=b) for b in betas]


def _arms(original, d: dict, pool: AnnotatedPool, budget: dict, seed: int) -> list[ArmSpec]:
    g_train, names = d["groups"]["train"]
    return [ArmSpec("erm"),
            ArmSpec("jtt", train=jtt_upsampled(original, d["train"], JTT_FACTOR)[0]),
            ArmSpec("groupdro", train=WithGroups(d["train"], g_train), terms=lambda: GroupDROLoss(len(names)))] \
        + _variant_arms(pool, "", budget["betas"], seed)


def _ceiling(b: dict, seed: int, cache: Path, root: str | None, fresh, val, select):
    """The same objects and schedule as the original, places drawn independently of the class
    (correlation 0.5): what this model learns when the background carries no shortcut."""
    folder = cache / f"data-seed{seed}-uncorrelated"
    if not (folder / "groups.csv").is_file():
        write_waterbirds(folder, b["n_train"], b["n_val"], b["n_val"], b["size"], 0.5, b["per_class"], seed,
                         fashion_root=root)
    train = load_dataset(f"imagefolder:{folder}", "train", image_size=b["size"], in_channels=3)
    return from_scratch(cache / f"seed{seed}" / "ceiling", fresh, train, val,
                        FitConfig(epochs=b["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, select=select).model


def _write_seed(b: dict, seed: int, cache: Path, root: str | None) -> Path:
    """The seed's folder, written once, with masks for the test images too (a folder written before
    them is written again: the same images, checked on the first training image)."""
    folder = cache / f"data-seed{seed}"
    if (folder / "groups.csv").is_file() and (folder / "masks-test-box").is_dir():
        return folder
    first = sorted((folder / "train").rglob("*.png"))[:1]
    before = first[0].read_bytes() if first else None
    write_waterbirds(folder, b["n_train"], b["n_val"], b["n_test"], b["size"], CORRELATION, b["per_class"], seed,
                     fashion_root=root, test_masks=True)
    if before is not None and first[0].read_bytes() != before:
        raise RuntimeError(f"{folder} was written by another writer; delete it and rerun")
    return folder


def _test_pool(d: dict, folder: Path) -> tuple[AnnotatedPool, torch.Tensor]:
    """The test images with the writer's boxes, refined by GrabCut as ``treat`` refines, and the
    class each one's place stands for (place k is class k's in training). Why: the same swap
    measure on every test image rather than on 10 report images tells its bias from its noise."""
    masks = load_masks("png", folder / "masks-test-box", dataset_root=folder / "masks-test-box")
    pool = AnnotatedPool.from_dataset(with_masks(d["test"], masks, 0)).refine("grabcut")
    index, names = d["groups"]["test"]
    writer = list(CLASSES) if set(CLASSES) <= set(d["test"].classes) else ["even", "odd"]
    stands = [d["test"].classes.index(writer[list(PLACES).index(n.split("-", 1)[1])]) for n in names]
    return pool, torch.tensor([stands[int(index[i])] for i in pool.indices])


def _setup(b: dict, seed: int, cache: Path, root: str | None):
    """The seed's data (written once), its ERM original, the selection score and a fresh-model factory."""
    folder = _write_seed(b, seed, cache, root)
    d = _data(folder, b["size"])
    select = selector(d["val"], 2, "groups", val_groups=d["groups"]["val"])  # treat's rule with group labels

    def fresh():
        torch.manual_seed(seed)
        return build_model(b["arch"], in_channels=3, num_classes=2, image_size=b["size"])

    original = from_scratch(cache / f"seed{seed}" / "original", fresh, d["train"], d["val"],
                            FitConfig(epochs=b["orig_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, select=select).model
    return d, original, select, fresh


def run_seed(budget: dict, seed: int, cache: Path, root: str | None) -> dict:
    b = budget
    d, original, select, fresh = _setup(b, seed, cache, root)
    pool = _pool(d["train"], cache / f"data-seed{seed}", "box", b["per_class"], seed)
    study = run_study(original, d["train"], d["val"], _arms(original, d, pool, b, seed),
                      FitConfig(epochs=b["ft_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, cache / f"seed{seed}",
                      select=select)
    ceiling = _ceiling(b, seed, cache, root, fresh, d["val"], select)
    test = lambda m: group_accuracy(m, d["test"], *d["groups"]["test"])
    out = {"original": test(original), **{n: test(study.arm(n).model) for n in ("erm", "jtt", "dfr", "groupdro")},
           "counterfactual": test(study.arm("cf").model), "chosen_beta": study.arm("cf").spec.weight,
           "ceiling": test(ceiling)}
    (cache / f"seed{seed}" / "test.json").write_text(json.dumps(out))
    return out


def _tag(b: dict, kind: str, n: int) -> str:
    """Arm-name suffix of an annotation: none for the main study's (boxes at ``per_class``), so its runs are shared."""
    return "" if (kind, n) == ("box", b["per_class"]) else f"-{kind}{n}"


def run_annotations(budget: dict, seed: int, cache: Path, root: str | None) -> dict:
    """Per annotation (kind, N): DFR and the counterfactual, next to the same ERM control."""
    b = budget
    d, original, select, _ = _setup(b, seed, cache, root)
    arms = [ArmSpec("erm")]
    for kind, n in b["variants"]:
        pool = _pool(d["train"], _annotated(b, seed, cache, root, n), kind, n, seed)
        arms += _variant_arms(pool, _tag(b, kind, n), b["betas"], seed)
    study = run_study(original, d["train"], d["val"], arms, FitConfig(epochs=b["ft_epochs"], lr=S.ORIGINAL_LR, seed=seed),
                      2, cache / f"seed{seed}", select=select)
    test = lambda m: group_accuracy(m, d["test"], *d["groups"]["test"])
    out: dict = {"erm": test(study.arm("erm").model)}
    for kind, n in b["variants"]:
        t = _tag(b, kind, n)
        out[f"{kind}{n}"] = {"dfr": test(study.arm(f"dfr{t}").model), "counterfactual": test(study.arm(f"cf{t}").model),
                             "chosen_beta": study.arm(f"cf{t}").spec.weight}
    (cache / f"seed{seed}" / "test-annotations.json").write_text(json.dumps(out))
    return out


def chance(g: dict) -> str:
    """Random guessing's expected worst-group test accuracy ± its std at this test split's group sizes
    (:func:`model_doctor.data.groups.chance_worst_group`): the line below which a method is a coin."""
    mean, std = chance_worst_group([n for n in g["sizes"].values() if n], 2)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(rows: list[dict]) -> list[str]:
    arms = ["original", "erm", "jtt", "dfr", "groupdro", "counterfactual", "ceiling"]
    lines = ["| arm | worst-group test acc | average test acc | worst − ERM (worst group) |", "|---|---|---|---|"]
    for a in arms:
        w, av = spread([r[a]["worst"] for r in rows]), spread([r[a]["average"] for r in rows])
        dw = spread([r[a]["worst"] - r["erm"]["worst"] for r in rows])
        lines.append(f"| {a} | {100 * w.mean:.1f} ± {100 * w.std:.1f} | {100 * av.mean:.1f} ± {100 * av.std:.1f} | "
                     f"{100 * dw.mean:+.1f} ± {100 * dw.std:.1f} |")
    lines += [f"| random guessing (expected) | {chance(rows[0]['erm'])} | 50.0 | |", ""]
    for a, b in (("counterfactual", "erm"), ("counterfactual", "jtt"), ("counterfactual", "dfr"),
                 ("groupdro", "counterfactual")):
        d = [r[a]["worst"] - r[b]["worst"] for r in rows]
        sp = spread(d)
        where = "beyond" if beyond_noise(d) else "not beyond"
        lines.append(f"- worst-group accuracy, {a} − {b}: {100 * sp.mean:+.1f} ± {100 * sp.std:.1f} pts "
                     f"({sp.n} seeds; {where} 2σ of the seed spread)")
    lines += ["", "Worst-group test accuracy per seed (where the spread comes from):", ""]
    lines += [f"- {a}: " + " / ".join(f"{100 * r[a]['worst']:.1f}" for r in rows) for a in arms]
    return lines


#: the cue-conflicting (minority) test groups: class k on the other class's place
CONFLICTING = {f"{c}-{p}" for names in (list(CLASSES), ["even", "odd"])  # Fashion-MNIST or digits objects
               for k, c in enumerate(names) for j, p in enumerate(PLACES) if j != k}
#: the rules ``--study rule`` compares, none with group labels: (arm group, ``selection_score`` rule)
RULES = (("cf-rule", "swap"), ("cf-balanced", "balanced"))


def run_rule(budget: dict, seed: int, cache: Path, root: str | None, rules: tuple = RULES,
             per_class: int | None = None, partners: str = "other", kl_weight: float = 1.0) -> dict:
    """The counterfactual at β 1, 3, 10 chosen without group labels, by ``treat``'s ``swap`` rule
    and by its ``balanced`` rule, on the same held-out annotated images; the report images' swap
    accuracies of every model, beside the test groups they stand for. ``per_class``: annotated
    images per class (default: the budget's), more from the same writer (:func:`_annotated`).
    ``partners``: the counterfactual's (``treat --partners``; arms of ``any`` are named apart).
    ``kl_weight``: the counterfactual's KL term (``treat --kl-weight``; arms off the default 1 are named apart)."""
    from model_doctor.treatment.pools import make_pools
    from model_doctor.treatment.reliance import background_reliance

    b = budget
    d, original, by_groups, _ = _setup(b, seed, cache, root)
    folder, n = cache / f"data-seed{seed}", per_class or b["per_class"]
    boxes = _annotated(b, seed, cache, root, n) / "masks-box"
    masked = with_masks(d["train"], load_masks("png", boxes, dataset_root=boxes), 0)
    pools = make_pools(masked, masked, TreatConfig().holdout, n, seed)  # as treat splits by default
    assert pools.select is not None and pools.report is not None
    # the arms of each split apart: before held_fraction, a quarter held out chose on 6 images and reported on 4
    where = cache / f"seed{seed}" / ("" if (len(pools.select), len(pools.report)) == (6, 4) else
                                     f"rule-{len(pools.select)}-{len(pools.report)}")

    def select(rule: str):
        return selector(d["val"], 2, rule, held=pools.select, seed=0)

    test = lambda m: group_accuracy(m, d["test"], *d["groups"]["test"])
    erm = run_study(original, d["train"], d["val"], [ArmSpec("erm")], FitConfig(epochs=b["ft_epochs"], lr=S.ORIGINAL_LR,
                    seed=seed), 2, cache / f"seed{seed}", select=by_groups).arm("erm").model  # cached by the main study
    main_study = cache / f"seed{seed}" / "test.json"  # the main study's arms, same seed, where it ran
    out: dict = ({k: v for k, v in json.loads(main_study.read_text()).items() if k != "chosen_beta"}
                 if main_study.is_file() else {"original": test(original), "erm": test(erm)})
    models = {"original": original, "erm": erm}
    for group, rule in rules:
        tag = "any-" if partners == "any" else ""   # arm names as the first runs of each wrote them (cached)
        prefix = f"counterfactual-{tag}{rule}" if rule != "swap" else ("counterfactual-any" if tag else "counterfactual-rule")
        prefix += "" if kl_weight == 1 else f"-kl{kl_weight:g}"
        arms = [ArmSpec(f"{prefix}-beta{w:g}", lambda w=w: CounterfactualLoss(pools.train, w, seed=seed, partners=partners,
                                                                               kl_weight=kl_weight),
                        group=group, weight=w) for w in b["betas"]]
        study = run_study(original, pools.masked_train, d["val"], arms,
                          FitConfig(epochs=b["ft_epochs"], lr=S.ORIGINAL_LR, seed=seed), 2, where, select=select(rule))
        chosen = study.arm(group)
        key = group.replace("cf-", "counterfactual_")
        out[key] = test(chosen.model)
        out[f"{key}_beta"] = chosen.spec.weight
        models[key] = chosen.model
    keep = ("swap_acc", "same_swap_acc", "balanced_swap_acc", "backwards_images", "forwards_images", "backwards_p")
    out["report"] = {k: {m: v for m, v in background_reliance(model, pools.report).items() if m in keep}
                     for k, model in models.items()}
    tpool, stands = _test_pool(d, folder)
    out["test_pool"] = {k: {m: v for m, v in background_reliance(model, tpool, S.TEST_PARTNERS, backgrounds=stands).items()
                            if m in ("swap_acc", "same_swap_acc")} for k, model in models.items()}
    out |= {"report_images": len(pools.report), "select_images": len(pools.select), "test_pool_images": len(tpool),
            "test_pool_refined": float(tpool.refined.double().mean())}
    name = "test-rule" + ("" if partners == "other" else f"-{partners}") + ("" if kl_weight == 1 else f"-kl{kl_weight:g}")
    (where / f"{name}.json").write_text(json.dumps(out))
    return out


def _keys(row: dict) -> list[tuple[str, str]]:
    """(result key, rule) of the no-group-label rules a ``--study rule`` row holds."""
    return [(k, r) for k, r in (("counterfactual_rule", "swap"), ("counterfactual_balanced", "balanced")) if k in row]


def conflicting(g: dict) -> float:
    """Mean accuracy over the cue-conflicting test groups (what a swap with another class's background stands for)."""
    hit = [v for n, v in g["per_group"].items() if n in CONFLICTING]
    return sum(hit) / len(hit)


def agreeing(g: dict) -> float:
    """Mean accuracy over the cue-agreeing (majority) test groups (what an own-class swap stands for)."""
    rest = [n for n in g["per_group"] if n not in CONFLICTING]
    return sum(g["per_group"][n] for n in rest) / len(rest)


def _test_side(g: dict) -> dict:
    """The cue-agreeing groups' test accuracy and the standard error of (cue-conflicting −
    cue-agreeing) accuracy, for ``reliance_vs_truth``'s "reads backwards on test" (a difference the
    study's rule, :func:`model_doctor.study.exceeds_noise`, calls beyond that noise)."""
    var = lambda names: sum(g["per_group"][n] * (1 - g["per_group"][n]) / max(g["sizes"][n], 1) for n in names) \
        / len(names) ** 2
    conf = [n for n in g["per_group"] if n in CONFLICTING]
    rest = [n for n in g["per_group"] if n not in CONFLICTING]
    return {"agreeing_test_acc": agreeing(g), "backwards_se": (var(conf) + var(rest)) ** 0.5}


def truth_rows(rows: list[dict], seeds: list[int]) -> list[dict]:
    """Rows for ``benchmarks.reliance_vs_truth``: per seed and rule, the report-set swap accuracy of
    original, control (ERM) and treated beside the cue-conflicting test accuracy (the truth it stands for)."""
    out = []
    for seed, r in zip(seeds, rows):
        rep, tp = r["report"], r.get("test_pool", {})
        on_test = lambda k: {"test_pool_swap_acc": tp[k]["swap_acc"]} if k in tp else {}
        for key, rule in _keys(r):
            out.append({"kind": "waterbirds", "arm": f"box{r['report_images']}-{rule} rule", "seed": seed,
                        "images": r["report_images"],
                        "original": conflicting(r["original"]), "original_reliance": {**rep["original"], **on_test("original")},
                        "control": {**rep["erm"], **on_test("erm"), "test_acc": conflicting(r["erm"]), **_test_side(r["erm"])},
                        "treated": {**rep[key], **on_test(key), "test_acc": conflicting(r[key]), **_test_side(r[key])},
                        "shared_models": True})  # both rules' rows share the original, the control and the report set
    return out


def rule_lines(rows: list[dict], seeds: list[int]) -> list[str]:
    """The counterfactual chosen by each no-group-label rule against every arm of the main study (same seeds)."""
    names = {"counterfactual": "counterfactual (β chosen by worst-group validation)",
             "counterfactual_rule": "**counterfactual, `swap` rule** (no group labels)",
             "counterfactual_balanced": "**counterfactual, `balanced` rule** (no group labels)"}
    lines = ["| | worst-group test acc | average test acc | cue-conflicting groups | cue-agreeing groups |",
             "|---|---|---|---|---|"]
    for a in [a for a in ("erm", "jtt", "dfr", "groupdro", "counterfactual") if a in rows[0]] + [k for k, _ in _keys(rows[0])]:
        cells = [spread([f(r[a]) for r in rows]) for f in (lambda g: g["worst"], lambda g: g["average"], conflicting, agreeing)]
        lines.append(f"| {names.get(a, a)} | " + " | ".join(f"{100 * c.mean:.1f} ± {100 * c.std:.1f}" for c in cells) + " |")
    lines.append(f"| random guessing (expected) | {chance(rows[0]['erm'])} | 50.0 | 50.0 | 50.0 |")
    for rule, _ in _keys(rows[0]):
        lines.append("")
        both = rule != "counterfactual_rule" and "counterfactual_rule" in rows[0]
        for other in [o for o in ("erm", "jtt", "dfr", "counterfactual") if o in rows[0]] + (["counterfactual_rule"] if both else []):
            d = [r[rule]["worst"] - r[other]["worst"] for r in rows]
            sp = spread(d)
            where = "beyond" if beyond_noise(d) else "not beyond"
            lines.append(f"- worst-group accuracy, {rule} − {other}: {100 * sp.mean:+.1f} ± "
                         f"{100 * sp.std:.1f} pts ({sp.n} seeds; {where} 2σ of the seed spread)")
    lines += ["", f"Chosen on {rows[0]['select_images']} held-out annotated images, reported on {rows[0]['report_images']}.",
              "", "| seed | rule | β | worst-group test acc | report swap acc (another class's background) | "
              "cue-conflicting test acc | report own-class swap acc | cue-agreeing test acc | `treat`'s backwards warning | "
              "swap acc / own-class swap acc on the test images (benchmark only) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in zip(seeds, rows):
        for key, rule in _keys(r):
            rep = r["report"][key]
            lines.append(f"| {i} | {rule} | {r[key + '_beta']:g} | {100 * r[key]['worst']:.1f} | {100 * rep['swap_acc']:.1f} | "
                         f"{100 * conflicting(r[key]):.1f} | {100 * rep['same_swap_acc']:.1f} | {100 * agreeing(r[key]):.1f} | "
                         f"{_warned(rep)} | {_on_test(r, key)} |")
    if "test_pool" in rows[0]:
        lines += ["", f"The last column is the same swap measure on the {rows[0]['test_pool_images']} test images "
                      f"({S.TEST_PARTNERS} partners each, chosen by the place, not the class; writer boxes refined by GrabCut, "
                      f"{100 * rows[0]['test_pool_refined']:.0f} % refined on seed {seeds[0]}): beside the test groups it "
                      "shows what the measure reads without the report set's sampling noise. No user has it."]
    return lines


def _on_test(r: dict, key: str) -> str:
    t = r.get("test_pool", {}).get(key)
    return f"{100 * t['swap_acc']:.1f} / {100 * t['same_swap_acc']:.1f}" if t else "—"


def _warned(rep: dict) -> str:
    """Whether ``treat`` would warn that this one model reads the background backwards (one seed:
    the sign test at the full level), with its count; "—" for rows made before the count existed."""
    from model_doctor.treatment.verdicts import BACKWARDS_ALPHA

    if "backwards_p" not in rep:
        return "—"
    said = f"{rep['backwards_images']} of {rep['backwards_images'] + rep['forwards_images']}, p = {rep['backwards_p']:.2g}"
    return ("**yes**" if rep["backwards_p"] < BACKWARDS_ALPHA else "no") + f" ({said})"


def annotation_table(b: dict, rows: list[dict]) -> list[str]:
    """Per annotation: DFR and the counterfactual at the same budget, against the ERM control."""
    pct = lambda xs: (lambda sp: f"{100 * sp.mean:.1f} ± {100 * sp.std:.1f}")(spread(xs))

    def diff(xs: list[float]) -> str:
        sp = spread(xs)
        mark = " (beyond 2σ)" if beyond_noise(xs) else ""
        return f"{100 * sp.mean:+.1f} ± {100 * sp.std:.1f}{mark}"

    lines = ["| annotation | per class | DFR worst | DFR average | counterfactual worst | counterfactual average | "
             "counterfactual − ERM (worst) | counterfactual − DFR (worst) | β chosen |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, n in b["variants"]:
        v = [r[f"{kind}{n}"] for r in rows]
        cf, dfr = [x["counterfactual"] for x in v], [x["dfr"] for x in v]
        lines.append(f"| {kind}{'es' if kind == 'box' else ' masks'} | {n} | {pct([x['worst'] for x in dfr])} | "
                     f"{pct([x['average'] for x in dfr])} | {pct([x['worst'] for x in cf])} | "
                     f"{pct([x['average'] for x in cf])} | "
                     f"{diff([c['worst'] - r['erm']['worst'] for c, r in zip(cf, rows)])} | "
                     f"{diff([c['worst'] - x['worst'] for c, x in zip(cf, dfr)])} | "
                     f"{', '.join(format(x['chosen_beta'], 'g') for x in v)} |")
    erm = spread([r["erm"]["worst"] for r in rows])
    return lines + ["", f"ERM (the control): worst-group {100 * erm.mean:.1f} ± {100 * erm.std:.1f} %, "
                        f"average {pct([r['erm']['average'] for r in rows])} %. Random guessing: worst-group "
                        f"{chance(rows[0]['erm'])} % (expected), average 50.0 %."]


def _paragraph(text: str) -> str:
    """A docstring paragraph as markdown: wrapped lines joined, list items kept on their own lines."""
    import re

    return re.sub(r"\n(?!- )\s*", " ", text.strip()) + "\n"


def _command(args) -> str:
    """The command line a table came from (study and seeds included)."""
    return (f"Command: `python -m benchmarks.bench_waterbirds --budget {args.budget}"
            + (f" --study {args.study}" if args.study != "main" else "")
            + (f" --arch {args.arch}" if args.arch else "")
            + (f" --betas {' '.join(f'{b:g}' for b in args.betas)}" if args.betas else "")
            + (f" --rules {' '.join(args.rules)}" if args.study == "rule" and len(args.rules) < len(RULES) else "")
            + (f" --annotated {args.annotated}" if args.study == "rule" and args.annotated else "")
            + (f" --partners {args.partners}" if args.study == "rule" and args.partners != "other" else "")
            + (f" --kl-weight {args.kl_weight:g}" if args.study == "rule" and args.kl_weight != 1 else "")
            + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "") + "`  ")


def main() -> int:
    ap = S.parser(__doc__)
    ap.add_argument("--study", choices=["main", "annotations", "rule"], default="main",
                    help="main: every arm at boxes, N per class; annotations: DFR and counterfactual per annotation kind "
                         "and N; rule: the counterfactual chosen without group labels, by the swap and the balanced rule "
                         "(beside the main study's arms where it ran first)")
    ap.add_argument("--rules", nargs="+", choices=[r for _, r in RULES], default=[r for _, r in RULES],
                    help="--study rule: the rules to train arms for (default: both)")
    ap.add_argument("--annotated", type=int, default=None,
                    help="--study rule: box-annotated training images per class (default: the budget's, 20 for full); "
                         "more come from the same writer with more annotations (the images are identical)")
    ap.add_argument("--partners", choices=["other", "any"], default="other",
                    help="--study rule: whose background the counterfactual borrows (treat --partners; default other)")
    ap.add_argument("--kl-weight", type=float, default=1.0,
                    help="--study rule: the counterfactual's KL term (treat --kl-weight; default 1); other weights train "
                         "their own arms")
    ap.add_argument("--arch", default=None,
                    help="the model, trained from scratch (default: the budget's, smallcnn for full); e.g. resnet18, "
                         "which the zoo builds with its ImageNet stem at 64 px")
    ap.add_argument("--betas", nargs="+", type=float, default=None,
                    help="the counterfactual's weights to choose from (default: the budget's, 1 3 10 for full); "
                         "fewer arms for a slower model; finished arms are reused either way")
    args = ap.parse_args()
    if args.partners != "other" and args.study != "rule":
        ap.error(f"--partners {args.partners}: only --study rule compares partners; drop it or add --study rule")
    if args.kl_weight != 1 and (args.study != "rule" or args.kl_weight < 0):
        ap.error(f"--kl-weight {args.kl_weight:g}: pass a weight >= 0, with --study rule (the other studies keep treat's 1)")
    if args.annotated is not None and (args.study != "rule" or args.annotated < 1):
        ap.error(f"--annotated {args.annotated}: pass a positive number of images per class, with --study rule "
                 "(the other studies set their annotations themselves)")
    budget = S.with_seeds(BUDGETS[args.budget], args.seeds) | ({"arch": args.arch} if args.arch else {}) \
        | ({"betas": args.betas} if args.betas else {})
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root if (Path(args.root) / "FashionMNIST" / "raw").is_dir() else None
    cache = S.study_cache(args, "e6-waterbirds", budget)
    setting = (f"{budget['arch']}, {budget['size']} px, {budget['n_train']} training images (correlation {CORRELATION}), "
               f"original {budget['orig_epochs']} epochs, arms {budget['ft_epochs']} epochs at lr {S.ORIGINAL_LR}; "
               f"counterfactual β from {', '.join(format(w, 'g') for w in budget['betas'])}; "
               f"seeds {budget['seeds']}; objects: "
               f"{'Fashion-MNIST' if root else 'scikit-learn digits (no FashionMNIST under --root)'}.")
    if args.study == "annotations":
        rows = [run_annotations(budget, s, cache, root) for s in budget["seeds"]]
        lines = header("E6b: Waterbirds-style benchmark, annotation kind and budget", "bench_waterbirds.py", args.budget)
        lines[2] = _command(args)
        lines += [_paragraph(__doc__.split("\n\n")[4]), _paragraph(__doc__.split("\n\n")[3]), setting, ""]
        return emit(lines + annotation_table(budget, rows), args.out)
    if args.study == "rule":
        rows = [run_rule(budget, s, cache, root, tuple(r for r in RULES if r[1] in args.rules), args.annotated, args.partners,
                         args.kl_weight)
                for s in budget["seeds"]]
        lines = header("E6c: Waterbirds-style benchmark, the counterfactual chosen without group labels",
                       "bench_waterbirds.py", args.budget)
        lines[2] = _command(args)
        lines += [_paragraph(__doc__.split("\n\n")[5]), setting, ""]
        if args.out:
            from model_doctor.io import atomic_write_text

            atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(truth_rows(rows, budget["seeds"]), indent=1))
        return emit(lines + rule_lines(rows, budget["seeds"]), args.out)
    rows = [run_seed(budget, s, cache, root) for s in budget["seeds"]]
    lines = header("E6: Waterbirds-style benchmark, worst-group accuracy", "bench_waterbirds.py", args.budget)
    lines[2] = _command(args)
    lines += [*(_paragraph(__doc__.split("\n\n")[i]) for i in (1, 2, 3)),
              f"{setting} {budget['per_class']} box annotations per class.", ""] + table(rows)
    lines += ["", "Counterfactual β chosen per seed: " + ", ".join(f"{r['chosen_beta']:g}" for r in rows)]
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
