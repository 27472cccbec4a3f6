"""Does the colour-matched swap cry wolf on a model that reads its object's own colour?

The colour-matched swap (``treat`` prints it beside the plain swap) gives a's object the colour
statistics of b's object before pasting it on b's background, so a cast over the whole image moves
with the background. Its known cost: where a class's colour is its own (a yellow fruit), a model
that reads that colour loses it in the swap too, and the figure reads background reliance that is
not there. This measures that cost on a benchmark with no background shortcut at all: Fashion-MNIST
objects on a 48 px canvas, each object tinted by its own class's hue (``TINT`` of it, in training and
test alike: the colour is the object's), on a background of a random class's colour (E5 ``colour``
backgrounds, uninformative). An original is trained as E5's are (`train --epochs 8 --lr 0.05`); the
figures are the ones ``treat`` would print for it: the report images of its annotated training
images (20 boxes per class, refined by GrabCut, ``treat``'s default hold-out). The truth is its test
accuracy on backgrounds of a random class, which is what a swap onto another class's background
stands for; beside it, test accuracy with a random class's tint, which says how much the model
reads the tint. Each seed draws its own objects, backgrounds and annotated sample. Written while the
colour-matched swap was ``treat``'s headline, before any of its results; it is not since. Usage:

    python -m benchmarks.object_colour --budget full --out docs/results/e5/object_colour.md
    python -m benchmarks.object_colour --budget full --shortcut --out docs/results/e5/object_colour_shortcut.md

``--shortcut`` (added after the first table, before any of its results) gives every training image
its own class's background colour as well, so the original can read a background shortcut beside
its object's colour: the case the colour-split caution's hint (the background names the class, so a
cast is likelier; withdrawn after ``--shortcut 0.7``) was expected to read wrongly. Its originals read the background alone, so
``--shortcut 0.7`` (added after that table, before any of its results) gives only 70 % of the
training images their own class's background: the tint then names the class on every training
image, the background on 73 % of them, which should make a model read both.

    python -m benchmarks.object_colour --budget full --shortcut 0.7 --out docs/results/e5/object_colour_shortcut07.md
"""

from __future__ import annotations

import argparse
import colorsys
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _studies as S
from benchmarks import inbox_decoys as D
from benchmarks._common import emit, header

#: the share of the class's hue in each object pixel
TINT = 0.5
BUDGETS = {"small": dict(n_train=300, n_test=100, epochs=1, per_class=4, seeds=[0]),
           "full": dict(n_train=2000, n_test=1000, epochs=8, per_class=20, seeds=[15, 16, 17])}


def render(obj: np.ndarray, tint: int, background: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The object tinted by class ``tint``'s hue on class ``background``'s colour; its masks."""
    img, exact, box = D.render("colour", obj, background, rng)
    hue = np.array(colorsys.hsv_to_rgb(tint / 10, 0.85, 0.95)) * 255
    img = np.where(exact[..., None], np.clip(np.round(img * (1 - TINT) + hue * TINT), 0, 255), img).astype(np.uint8)
    return D._with_masks(img, exact, box)


def make_folder(root: Path, b: dict, data_root: str, seed: int, shortcut: float = 0.0) -> Path:
    """``root/{train,test,test-tint-shuffled}/<class>/<i>.png`` and ``root/masks-box`` (the first
    ``per_class`` training images of each class). ``shortcut``: the share of training images whose
    background is their own class's colour (a background shortcut beside the object's own colour);
    test images keep a random class's."""
    from PIL import Image

    if (root / "done").is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, n in (("train", b["n_train"]), ("test", b["n_test"])):
        objs, labels, _ = D.load_objects(split, n, data_root, seed)
        counts = {c: 0 for c in range(10)}
        for i, (obj, c) in enumerate(zip(objs, labels.tolist())):
            background = int(rng.integers(10))
            if split == "train" and (shortcut == 1.0 or (0 < shortcut < 1 and rng.random() < shortcut)):
                background = c
            shown = [(split, c)] + ([("test-tint-shuffled", int(rng.integers(10)))] if split == "test" else [])
            for sub, tint in shown:
                img, masks = render(obj, tint, background, np.random.default_rng([seed, i, int(split == "test")]))
                rel = Path(f"{c:02d}") / f"{i:05d}.png"
                (root / sub / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / sub / rel)
                if sub == "train" and counts[c] < b["per_class"]:
                    counts[c] += 1
                    (root / "masks-box" / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(masks["masks-box"]).save(root / "masks-box" / rel)
    (root / "done").write_text("")
    return root


def measure(folder: Path, run: Path) -> dict[str, Any]:
    """The original's test accuracies and the reliance figures ``treat`` would print for it."""
    import torch

    from model_doctor import runtime as P
    from model_doctor.config import Config
    from model_doctor.jobs.treat import masks_of
    from model_doctor.treating import annotated_pools
    from model_doctor.treatment.reliance import background_reliance

    cfg = Config()
    cfg.data.name, cfg.model.weights = f"imagefolder:{folder}", str(run / "model.safetensors")
    cfg.data.image_size, cfg.model.in_channels = D.CANVAS, 3
    cfg.treat.masks, cfg.treat.mask_format = str(folder / "masks-box"), "png"
    model, meta = P.load_model(cfg)
    model.eval()

    def accuracy(name: str) -> float:
        cfg.data.name = f"imagefolder:{folder}" if name == "test" else f"imagefolder:{folder / '_view'}"
        ds = P.load_data(cfg, "test", meta["in_channels"], meta["num_classes"])
        loader = torch.utils.data.DataLoader(ds, batch_size=256)
        with torch.no_grad():
            hits = [(model(x).argmax(1) == y).float() for x, y, *_ in loader]
        return float(torch.cat(hits).mean())

    view = folder / "_view"   # an imagefolder whose test split is the tint-shuffled images
    if not view.exists():
        view.mkdir()
        (view / "test").symlink_to((folder / "test-tint-shuffled").resolve(), target_is_directory=True)
        (view / "train").symlink_to((folder / "train").resolve(), target_is_directory=True)
    truth, tint_shuffled = accuracy("test"), accuracy("tint")
    cfg.data.name = f"imagefolder:{folder}"
    full = P.load_data(cfg, "train", meta["in_channels"], meta["num_classes"])
    tr, _ = P.train_val_split(cfg, full, meta["in_channels"])
    _, pools, _ = annotated_pools(cfg, full, tr, masks_of(cfg, full), log=lambda *_: None)
    rel = background_reliance(model, pools.report, seed=cfg.train.split_seed)
    return {"truth": truth, "tint_shuffled": tint_shuffled, "images": len(pools.report),
            **{k: rel[k] for k in ("swap_acc", "matched_swap_acc", "transfer_swap_acc", "silhouette_swap_acc",
                                "shuffled_swap_acc", "bg_only_acc", "refined_share", "chance")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=list(BUDGETS), default="small")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--cache", default="runs/bench")
    ap.add_argument("--root", default=str(S.ROOT.parent / "shared" / "data"), help="where FashionMNIST lives")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--shortcut", type=float, nargs="?", const=1.0, default=0.0, metavar="SHARE",
                    help="this share (alone: all) of training backgrounds of the image's own class's colour (a "
                         "background shortcut beside the "
                         "object's own colour; added after the first table, before any of its results)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not (Path(args.root) / "FashionMNIST").is_dir():
        raise SystemExit(f"--root {args.root}: no FashionMNIST there; pass the folder that holds it (../shared/data)")
    b = dict(BUDGETS[args.budget], **({"seeds": args.seeds} if args.seeds else {}))
    if not 0.0 <= args.shortcut <= 1.0:
        raise SystemExit(f"--shortcut {args.shortcut}: a share of the training images; use 0 to 1 (e.g. 0.7)")
    name = "object-colour" + ("" if not args.shortcut else "-shortcut" if args.shortcut == 1 else f"-shortcut{args.shortcut:g}")
    cache = Path(args.cache) / name / args.budget
    rows = []
    for seed in b["seeds"]:
        folder = make_folder(cache / f"data-seed{seed}", b, args.root, seed, args.shortcut)
        run = cache / "runs" / f"orig-seed{seed}"
        if not (run / "summary.json").is_file():
            S.cli(["train", "--data", f"imagefolder:{folder}", "--in-channels", "3", "--image-size", str(D.CANVAS),
                   "--model", "smallcnn", "--epochs", str(b["epochs"]), "--lr", "0.05", "--seed", str(seed),
                   "--out", str(run), *(["--resume"] if (run / "config.yaml").is_file() else [])], args.threads)
        rows.append({"seed": seed, **measure(folder, run)})
    pct = lambda v: f"{100 * v:.1f}"
    lines = header("Does the colour-matched swap cry wolf on a model that reads its object's own colour?"
                   + (f" With a background shortcut on {100 * args.shortcut:.0f} % of the training images too"
                      if args.shortcut else ""), "object_colour", args.budget)
    if args.shortcut:
        lines[2] = lines[2].replace("`  ", " --shortcut`  " if args.shortcut == 1 else f" --shortcut {args.shortcut:g}`  ")
    lines += [" ".join(__doc__.split("\n\n")[1].split()).removesuffix(" Usage:"), "",
              "| seed | report images | truth: test acc, random class's background | test acc, random class's tint | "
              "colour-matched swap acc | plain swap acc | silhouette swap acc | background-only acc | "
              "colour-matched − truth | plain − colour-matched (the split `treat`'s figures show) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['images']} | {pct(r['truth'])} | {pct(r['tint_shuffled'])} | {pct(r['matched_swap_acc'])} | "
              f"{pct(r['swap_acc'])} | {pct(r['silhouette_swap_acc'])} | {pct(r['bg_only_acc'])} | {100 * (r['matched_swap_acc'] - r['truth']):+.1f} | "
              f"{100 * (r['swap_acc'] - r['matched_swap_acc']):+.1f} |" for r in rows]
    if len(rows) > 1:
        gap = [100 * (r["matched_swap_acc"] - r["truth"]) for r in rows]
        plain = [100 * (r["swap_acc"] - r["truth"]) for r in rows]
        lines += ["", f"Colour-matched − truth: {statistics.mean(gap):+.1f} ± {statistics.stdev(gap):.1f} points over "
                  f"{len(rows)} seeds; plain swap − truth: {statistics.mean(plain):+.1f} ± {statistics.stdev(plain):.1f}."]
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return emit(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
