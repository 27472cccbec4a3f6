"""E4b — do the CLI defaults remove shortcuts they were not designed on? Decoys built here, used as a user would.

``model_doctor.data.decoy`` makes the benchmark the space methods were developed on (a grey
patch in a corner, or a bar along an edge, whose shade codes the class). This script makes two
other shortcuts and runs only the command line on them, as a new user with an ImageFolder and PNG
masks would:

- ``texture``: the whole background is a class-coded stripe texture (orientation and period),
  the object pasted opaque on top at a random place;
- ``glyph``: a 6×6 class-coded binary glyph at a random background position (anywhere outside
  the object), so neither shade nor position carries the class, only the glyph's shape.

Training images carry the class's decoy; test images a random class's. The object's whole 28 px
square is pasted opaque, so its box is free of the cue (E5 has cues inside the box). Masks (the
object's box, PNG) exist for 20 training images per class only. Per seed, each with its own sample
of objects and annotations, the steps of :func:`benchmarks.bench_e5_inbox.run_kind`:
``model-doctor train`` (the original), ``model-doctor train`` on shuffled decoys (the ceiling, seed 0),
then ``model-doctor treat --masks DIR/masks-box --mask-format png`` with the README's recipe
(``--alpha 0 --beta 1 3 10``) and every other treatment option at its default.

Usage: python -m benchmarks.bench_e4_newdecoys [--budget small|full] [--kinds texture glyph] [--out docs/results/e4/e4_newdecoys.md]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks import _studies as S
from benchmarks import bench_e5_inbox as E5
from benchmarks._common import emit, header
from benchmarks.inbox_decoys import write_images

BUDGETS = {
    "small": dict(base="digits", n_train=300, n_test=100, orig_epochs=2, ceil_epochs=2, ft_epochs=1, seeds=[0],
                  betas=["1"], per_class=8, arms=["box"], norefine_seeds=[]),
    "full": dict(base="fashion-mnist", n_train=3000, n_test=2000, orig_epochs=10, ceil_epochs=10, ft_epochs=None,
                 seeds=[0, 1, 2], betas=["1", "3", "10"], per_class=20, arms=["box"], norefine_seeds=[]),
}
CANVAS = 44


def _objects(base: str, split: str, n: int, root: str, seed: int):
    from model_doctor.data.decoy import DecoyConfig
    from model_doctor.data.decoy import decoy_objects as objs

    x, y, classes = objs(DecoyConfig(base=base, split=split, root=root))
    g = torch.Generator().manual_seed(10_000 * seed + (0 if split == "train" else 1))
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


class Decoys:
    """E4b's folders, in the interface :func:`benchmarks.bench_e5_inbox.run_kind` reads."""

    CANVAS = CANVAS

    def __init__(self, base: str):
        self.base = base

    @staticmethod
    def channels(kind: str) -> int:
        return 1

    def make_folder(self, root: Path, kind: str, n_train: int, n_test: int, per_class: int, data_root: str, seed: int,
                    shuffled_train: bool = False) -> Path:
        """``root/{train,test}/<class>/<i>.png`` and ``root/masks-box/<class>/<i>.png`` (annotated training images)."""
        if (root / "done").is_file():
            return root
        glyphs = None
        for split, n in (("train", n_train), ("test", n_test)):
            objs, labels, classes = _objects(self.base, split, n, data_root, seed)
            glyphs = _glyphs(len(classes)) if glyphs is None else glyphs
            rng = np.random.default_rng(100 * seed + (7 if split == "train" else 8) + (50 if shuffled_train else 0))
            shuffle = split == "test" or shuffled_train
            write_images(root, split, objs, labels, len(classes), rng, shuffle, per_class,
                         lambda obj, code, rng: _render(kind, obj, code, glyphs, rng))
        (root / "done").write_text("ok")
        return root


def _render(kind: str, obj: np.ndarray, code: int, glyphs: np.ndarray, rng: np.random.Generator):
    """(image, {"masks-box": the object's square}) with the class ``code``'s decoy."""
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
    box = np.zeros((CANVAS, CANVAS), np.uint8)
    box[oy:oy + side, ox:ox + side] = 255
    return img, {"masks-box": box}


def main() -> int:
    ap = S.parser(__doc__)
    ap.add_argument("--kinds", nargs="+", default=["texture", "glyph"], choices=["texture", "glyph"])
    ap.add_argument("--cached-only", action="store_true", help="train nothing: the table of the runs that finished")
    E5.add_pass_through(ap)
    args = ap.parse_args()
    extra, variant = E5.pass_through(args)
    budget = S.with_seeds(BUDGETS[args.budget], args.seeds) | {"variant": variant, "treat_extra": extra}
    if budget["base"] == "fashion-mnist":
        S.setup(args)
    cache = Path(args.cache) / "e4-newdecoys" / args.budget
    decoys = Decoys(budget["base"])
    rows = [r for kind in args.kinds
            for r in E5.run_kind(kind, budget, cache, args.root, args.threads, decoys, args.cached_only)]
    b = budget
    lines = header("E4b: the CLI defaults on decoys they were not designed on", "bench_e4_newdecoys.py", args.budget)
    lines[2] = (f"Command: `python -m benchmarks.bench_e4_newdecoys --budget {args.budget} --kinds {' '.join(args.kinds)}"
                + "".join(f" {a}" for a in extra) + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
                + f"{' --cached-only' if args.cached_only else ''}`  ")
    lines += [f"Base objects: {b['base']}, {b['n_train']} training images per seed (validation = 10 % of them), "
              f"{b['n_test']} test images with shuffled decoys; {CANVAS}×{CANVAS} canvas, the object's square opaque (its "
              f"box is free of the cue); box masks for {b['per_class']} training images per class. Original: `train "
              f"--epochs {b['orig_epochs']} --lr {E5.LR}` per seed on its own sample; ceiling: `train --epochs "
              f"{b['ceil_epochs']} --lr {E5.LR}` on shuffled decoys (seed 0). Treatment: `treat --alpha 0 --beta "
              f"{' '.join(b['betas'])} --lr {E5.LR}" + (f" --epochs {b['ft_epochs']}" if b["ft_epochs"] else "")
              + "".join(f" {a}" for a in extra) + "`"
              + " with every other option at its default. Seeds: " + "; ".join(
                  f"{k} {', '.join(str(r['seed']) for r in rows if r['kind'] == k) or 'none finished'}" for k in args.kinds)
              + ". Reliance "
              "figures are what `treat` prints, on held-out annotated images neither trained on nor used to select.", ""]
    lines += E5.table(rows, args.kinds, b["arms"]) + E5.test_pool_table(rows)
    lines += ["", "Weight chosen per seed (no test data): " + "; ".join(
        f"{k}: " + ", ".join(f"{r['summary']['selection']['chosen_beta'][str(r['seed'])]:g}" for r in rows if r["kind"] == k)
        for k in args.kinds)]
    lines += ["", "Every weight's shuffled-cue test accuracy (%; shown to say where a row falls short, it chose nothing):", ""]
    lines += E5.weights_table(rows, args.kinds, b["arms"])
    lines += ["", "Ceiling curves (validation accuracy per epoch, shuffled decoys):", ""]
    lines += [f"- {k}: " + " ".join(f"{100 * v:.0f}" for v in E5.ceiling_of(cache, k)[1]) for k in args.kinds
              if (cache / k / "runs" / "ceiling" / "summary.json").is_file()]
    if args.out:
        E5.write_rows(rows, Path(args.out).with_suffix(".json"))
    return emit(lines + ["", S.SPLIT_NOTE if b["base"] == "fashion-mnist" else
                         "Digits: scikit-learn's bundled 8×8 digits, upsampled to 16 px."], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
