"""E4b — do the CLI defaults remove shortcuts they were not designed on? Decoys built here, used as a user would.

``model_doctor.data.decoy`` makes the benchmark the space methods were developed on (a grey
patch in a corner, or a bar along an edge, whose shade codes the class). This script makes two
other shortcuts and runs only the command line on them, as a new user with an ImageFolder and PNG
masks would:

- ``texture``: the whole background is a class-coded stripe texture (orientation and period),
  the object pasted opaque on top at a random place;
- ``glyph``: a 6×6 class-coded binary glyph at a random background position (anywhere outside
  the object), so neither shade nor position carries the class, only the glyph's shape.

Training images carry the class's decoy; test images a random class's. Masks (the object's box,
PNG) exist for 20 training images per class only. Steps: ``model-doctor train`` (the original),
``model-doctor train`` on shuffled decoys (the ceiling), then
``model-doctor treat --masks DIR --mask-format png --alpha 0 --beta 0.3 1 3 --seeds 0 1 2``
with every other treatment option at its default (space method, holdout, selection, pool batch).

Usage: python -m benchmarks.bench_e4_newdecoys [--budget small|full] [--kinds texture glyph] [--out docs/results/e4_newdecoys.md]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmarks import _studies as S
from benchmarks._common import emit, header

BUDGETS = {
    "small": dict(base="digits", n_train=600, n_test=200, orig_epochs=4, ft_epochs=1, seeds=[0], betas=["1"],
                  per_class=8),
    "full": dict(base="fashion-mnist", n_train=3000, n_test=2000, orig_epochs=10, ft_epochs=4, seeds=[0, 1, 2],
                 betas=["0.3", "1"], per_class=20),
}
CANVAS = 44


def _objects(base: str, split: str, n: int, root: str):
    from model_doctor.data.decoy import DecoyConfig
    from model_doctor.data.decoy import _objects as objs

    x, y, classes = objs(DecoyConfig(base=base, split=split, root=root))
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    idx = torch.randperm(len(y), generator=g)[:n]
    return x[idx, 0].numpy(), y[idx].numpy(), classes


def _texture(c: int, rng: np.random.Generator) -> np.ndarray:
    angle = np.pi * (c % 5) / 5
    period = 4 + 2 * (c // 5)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
    phase = rng.uniform(0, 2 * np.pi)
    t = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return (40 + 35 * t).astype(np.uint8)


def _glyphs(nc: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    return (rng.random((nc, 6, 6)) > 0.5).astype(np.uint8) * 200 + 30


def make_folder(root: Path, kind: str, base: str, budget: dict, data_root: str, shuffled_train: bool) -> None:
    """``root/{train,test}/<class>/<i>.png`` and ``root/masks/<class>/<i>.png`` (annotated training images)."""
    from PIL import Image

    if (root / "done").is_file():
        return
    glyphs = None
    for split, n in (("train", budget["n_train"]), ("test", budget["n_test"])):
        objs, labels, classes = _objects(base, split, n, data_root)
        glyphs = _glyphs(len(classes)) if glyphs is None else glyphs
        rng = np.random.default_rng(7 if split == "train" else 8)
        shuffle = split == "test" or shuffled_train
        counts = {c: 0 for c in range(len(classes))}
        for i, (obj, c) in enumerate(zip(objs, labels)):
            c = int(c)
            code = int(rng.integers(len(classes))) if shuffle else c
            side = obj.shape[0]
            oy, ox = rng.integers(0, CANVAS - side + 1, 2)
            if kind == "texture":
                img = _texture(code, rng)
            else:
                img = np.zeros((CANVAS, CANVAS), np.uint8)
                while True:  # a glyph position outside the object's box
                    gy, gx = rng.integers(0, CANVAS - 6 + 1, 2)
                    if gy + 6 <= oy or gy >= oy + side or gx + 6 <= ox or gx >= ox + side:
                        break
                img[gy:gy + 6, gx:gx + 6] = glyphs[code]
            img[oy:oy + side, ox:ox + side] = obj
            d = root / split / f"{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.png")
            if split == "train" and counts[c] < budget["per_class"]:
                counts[c] += 1
                mask = np.zeros((CANVAS, CANVAS), np.uint8)
                mask[oy:oy + side, ox:ox + side] = 255
                md = root / "masks" / f"{c:02d}"
                md.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(md / f"{i:05d}.png")
    (root / "done").write_text("ok")


def main() -> int:
    ap = S.parser(__doc__)
    ap.add_argument("--kinds", nargs="+", default=["texture", "glyph"], choices=["texture", "glyph"])
    args = ap.parse_args()
    budget = BUDGETS[args.budget]
    if budget["base"] == "fashion-mnist":
        S.setup(args)
    cache = Path(args.cache) / "e4-newdecoys" / args.budget
    lines = header("E4b: the CLI defaults on decoys they were not designed on", "bench_e4_newdecoys.py", args.budget)
    lines[2] = (f"Command: `python -m benchmarks.bench_e4_newdecoys --budget {args.budget} --kinds {' '.join(args.kinds)}`  ")
    lines += [f"Base objects: {budget['base']}, {budget['n_train']} training images (validation = 10 % of them), "
              f"{budget['n_test']} test images with shuffled decoys; {CANVAS}×{CANVAS} canvas; masks for "
              f"{budget['per_class']} training images per class. Original and ceiling: `model-doctor train --model smallcnn "
              f"--epochs {budget['orig_epochs']} --lr 0.05`; treatment: `model-doctor treat --alpha 0 --beta "
              f"{' '.join(budget['betas'])} --epochs {budget['ft_epochs']} --seeds {' '.join(map(str, budget['seeds']))}` "
              "with every other option at its default.", "",
              "| decoy | original | ceiling | control | treated (chosen) | treated − control | gap closed | chosen β per seed | "
              "held-out swap acc: original / control / treated |", "|---|---|---|---|---|---|---|---|---|"]
    for kind in args.kinds:
        folder, ceil_folder = cache / kind / "data", cache / kind / "data-shuffled"
        make_folder(folder, kind, budget["base"], budget, args.root, shuffled_train=False)
        make_folder(ceil_folder, kind, budget["base"], budget, args.root, shuffled_train=True)
        data = ["--in-channels", "1", "--image-size", str(CANVAS), "--model", "smallcnn"]
        runs = cache / kind / "runs"
        for name, f in (("orig", folder), ("ceiling", ceil_folder)):
            if not (runs / name / "summary.json").is_file():
                S.cli(["train", "--data", f"imagefolder:{f}", *data, "--epochs", str(budget["orig_epochs"]), "--lr", "0.05",
                     "--out", str(runs / name)], args.threads)
        if not (runs / "treat" / "summary.json").is_file():
            S.cli(["treat", "--weights", str(runs / "orig" / "model.safetensors"), "--data", f"imagefolder:{folder}",
                 "--masks", str(folder / "masks"), "--mask-format", "png", "--alpha", "0", "--beta", *budget["betas"],
                 "--epochs", str(budget["ft_epochs"]), "--seeds", *map(str, budget["seeds"]), "--allow-empty-classes",
                 "--out", str(runs / "treat")], args.threads)
        orig = json.loads((runs / "orig" / "summary.json").read_text())["test_acc"]
        ceil = json.loads((runs / "ceiling" / "summary.json").read_text())["test_acc"]
        s = json.loads((runs / "treat" / "summary.json").read_text())
        d = s["delta_treated_minus_control"]
        gap = [(r["treated"]["test_acc"] - orig) / max(ceil - orig, 1e-9) for r in s["runs"]]
        rel = lambda a: s[a]["background_reliance"]["swap_acc"]["mean"] if "background_reliance" in s[a] else float("nan")
        n = len(s["runs"])
        dstd = f" ± {100 * d['std']:.2f}" if n > 1 else ""
        spread = lambda m, sd: f"{100 * m:.2f} ± {100 * sd:.2f}" if n > 1 else f"{100 * m:.2f} (1 seed)"
        lines.append(
            f"| {kind} | {100 * orig:.2f} | {100 * ceil:.2f} | {spread(s['control']['test_acc'], s['control']['test_acc_std'])} | "
            f"{spread(s['treated']['test_acc'], s['treated']['test_acc_std'])} | "
            f"{100 * d['mean']:+.2f}{dstd} | "
            f"{100 * sum(gap) / len(gap):.0f} % | {', '.join(f'{v:g}' for v in s['selection']['chosen_beta'].values())} | "
            f"{100 * s['original']['background_reliance']['swap_acc']:.1f} / {100 * rel('control'):.1f} / {100 * rel('treated'):.1f} |")
        lines += [""] if kind == args.kinds[-1] else []
    for kind in args.kinds:
        s = json.loads((cache / kind / "runs" / "treat" / "summary.json").read_text())
        lines += [f"- {kind}: " + "; ".join(v["text"] for v in s["verdict"])]
    return emit(lines + ["", S.SPLIT_NOTE if budget["base"] == "fashion-mnist" else
                         "Digits: scikit-learn's bundled 8×8 digits, upsampled to 16 px."], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
