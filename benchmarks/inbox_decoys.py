"""Decoys whose cue shows *inside* the object's box, written as a user's ImageFolder.

Fashion-MNIST objects (scaled 18-28 px) are pasted onto a 48 px canvas by their own pixels
(opaque where the object is, a soft edge), so between the object's pixels the background shows,
inside its bounding box too; it never shows through the object itself. The background carries a class-coded cue over the whole canvas:

- ``texture`` (grey): stripes whose orientation and period code the class, random phase;
- ``colour`` (RGB): a class-coded background colour with per-pixel noise, the object in grey;
- ``pattern`` (grey): a class-coded random 6×6 binary tile repeated over the canvas at a random offset;
- ``dots`` (RGB; added after E5 as a cue the defaults were not run on, written before any of its
  results were seen): sparse dots of a class-coded hue at random places on dark grey noise, the
  object in grey.
- ``photo`` (RGB; added in the thirteenth session as a second cue the defaults were not run on,
  written before any of its results were seen): a random crop (96-192 px, scaled to the canvas)
  of one natural photo per class, from the photos scikit-image and scikit-learn install (three of
  them grey), the object in grey. Why: a scene behind the object, the shortcut of real photos.
- ``gradient`` (RGB; added in the twentieth session as a third cue the defaults were not run on,
  written before any of its results were seen): a smooth blend between two class-coded colours
  along a class-coded direction (jittered ±0.3 rad, random offset), with mild pixel noise, the
  object in grey. Why: low-frequency light and sky, the shortcut with no edges for a mask to miss.
- ``mark`` (RGB; added in the twenty-first session as a fourth cue the defaults were not run on,
  written before any of its results were seen): one ruler-like bar (16 × 4 px, dark ticks every
  4 px) of a class-coded hue at a random angle on dark grey noise, centred at a uniform place in
  the object's box: partly hidden behind the object, often touching it, partly inside its box (on
  seed 0's training images 39 % of the visible bar lies inside the box, and GrabCut keeps 30 % of
  it with the object, some of it in 60 % of images: measured before any model was trained). Why:
  a ruler beside a lesion, a tag beside a product; the shortcut that sits next to the object and
  nowhere else, which refinement cannot always tell from the object.
- ``watermark`` (RGB; added in the twenty-first session, written before any treatment result was
  seen): a class-coded glyph (a random 5 × 5 binary tile, scaled to 15 × 15 px) in a class-coded
  hue laid at 60 % opacity over the finished image, centred at a uniform place in the object's
  box, on dark grey noise. Unlike every other kind it is drawn over the object's own pixels too:
  the case the docs say no mask can separate (a watermark over a product), run to measure what the
  tool does there. Its first version (grey, 40 %) was no shortcut: the originals reached 60-64 %
  shuffled-cue accuracy against the ceiling's 70 %, so it was stopped before any treatment ended.
- ``halo`` (RGB; added in the twenty-first session, written before any of its results were seen):
  a 3 px ring of a class-coded hue hugging the object's outline on dark grey noise, inside its box
  wherever the object is. Why: a glow, a shadow or a mount around the object; the cue a box
  cannot tell from the object at all, where only a mask that follows the outline separates it
  (GrabCut keeps 56 % of the box's background with the object on seed 0's training images,
  measured before any model was trained).
- ``cast`` (RGB; added in the twenty-fourth session as a fifth cue the defaults were not run on,
  written before any of its results were seen): a class-coded colour cast over the whole finished
  image, the object's own pixels included (35 % of a saturated class-coded hue mixed into every
  pixel), on dark grey noise. Why: the issue's "colour cast over the whole photo" (a camera, a
  white balance, a lab's stain); like ``watermark`` no mask can separate it, so it tests whether
  the verdict stays honest on an on-object cue it was not tuned on (``treat``'s caution was set
  on ``watermark``).
- ``grain`` (RGB; added in the twenty-fourth session, after ``cast`` and before any of its
  results were seen, with ``plaid``): zero-mean pixel noise (σ 28) along a class-coded colour
  direction over the whole finished image, the object's pixels included, on dark grey noise. Why:
  a sensor's or a scanner's colour noise, an on-object cue with no mean colour of its own.
- ``plaid`` (RGB; added with ``grain``, before any of its results were seen): a two-colour
  check of class-coded colours and a class-coded period (4-8 px) at a random offset. Why: a
  tablecloth or a backdrop behind the product, a background cue with edges inside the box.

- ``lamp`` (RGB; added in the twenty-sixth session with ``--object-colour``, written before any
  of its results were seen): a coloured light over the whole finished image, the object's pixels
  included: every pixel multiplied by a blend of white and a class-coded hue, the blend strongest
  (``LAMP``) at a random place and fading with distance (Gaussian, σ 20 px), on dark grey noise.
  Why: a coloured lamp or a stain whose strength varies over the photo; an on-object colour cue
  whose colour statistics differ from image to image within a class, unlike ``cast``'s and
  ``tone``'s, which the option's colour match was prompted by.
- ``veil`` (RGB; added in the twenty-ninth session for issue 53, written and committed before any
  of its results were seen): class-coded stripes (orientation and period as ``texture``'s, random
  phase) laid at ``VEIL`` opacity over the whole finished image, the object's pixels included, on
  dark grey noise. Why: a screen, a mesh or a scanner's moiré over the photo; an on-object cue with
  no colour of its own, which the colour-matched and colour-transferred swaps cannot see, so only
  the constant-free "both ways" check stands between it and an overstated claim.
- ``frame`` (RGB; added with ``veil``, before any of its results were seen): a 4 px border of a
  class-coded hue around the canvas on dark grey noise, the object pasted over it where they meet.
  Why: a slide's mount or a scanner's edge; a background cue that rarely enters the object's box,
  the case where the swap figures should agree with the truth and a claim should stand.
- ``focus`` (RGB; added in the thirty-first session for issue 53, after the silhouette swap and
  written and committed before any of its results were seen): the finished image blurred by a
  Gaussian of class-coded width (``FOCUS`` · code px, 0 to 2.7), the object's pixels included, on
  grey noise twice as coarse as the other kinds' (σ 20) so the blur shows in the background's
  grain. Why: one camera's or scanner's focus per source; an on-object cue with no colour and no
  shape of its own, which nobody tuned the verdict's four figures on.

Training images carry their class's cue; test images (and the ceiling's training images) a random
class's. Annotations for ``per_class`` training images per class (the first ones drawn, so the
minority of nothing: every training image agrees with its cue) come as PNG masks in two kinds:
``masks-box`` (the object's bounding box, the cheapest annotation) and ``masks-exact`` (the
object's own pixels). The geometry lives here, in the benchmark only: the library never sees it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

CANVAS = 48
KINDS = ("texture", "colour", "pattern")
#: kinds added after E5's table to try the defaults again on a cue they were not run on
FRESH_KINDS = ("dots", "photo", "gradient", "mark", "watermark", "halo", "cast", "grain", "plaid", "shadow", "tone",
               "lamp", "veil", "frame", "focus")
#: kinds whose cue is drawn over the object's pixels too (no mask separates it)
ON_OBJECT = ("watermark", "cast", "grain", "tone", "lamp", "veil", "focus")
#: the ``photo`` kind's photos, one per class: (package, name) for :func:`model_doctor.data.waterbirds.photo`
PHOTOS = [("skimage", "grass"), ("skimage", "gravel"), ("skimage", "brick"), ("skimage", "chelsea"), ("sklearn", "flower.jpg"),
          ("sklearn", "china.jpg"), ("skimage", "immunohistochemistry"), ("skimage", "retina"), ("skimage", "coffee"),
          ("skimage", "astronaut")]
#: the ``cast`` kind's share of the class-coded hue in every pixel
CAST = 0.35
#: the ``grain`` kind's noise level along its class-coded colour direction
GRAIN = 28.0
#: the ``shadow`` kind's offset (px) of the object's shadow along its class-coded direction
SHADOW = 5
#: the ``tone`` kind's strength: channel c's gamma is exp(TONE · cos(2π code / 10 + 2π c / 3))
TONE = 0.7
#: the ``lamp`` kind's strongest share of the class-coded hue in the light, and its fall-off (px)
LAMP, LAMP_SIGMA = 0.8, 20.0
#: the ``veil`` kind's stripe opacity over the finished image; the ``frame`` kind's border width (px)
VEIL, FRAME = 0.3, 4
#: the ``focus`` kind's blur width (px) per class code
FOCUS = 0.3
_PALETTE = np.array([[200, 40, 40], [40, 170, 40], [40, 60, 210], [210, 180, 30], [170, 40, 180],
                     [30, 180, 190], [230, 120, 30], [120, 120, 120], [120, 70, 20], [240, 150, 190]], np.float64)


def channels(kind: str) -> int:
    return 1 if kind in ("texture", "pattern") else 3


@functools.cache
def _photo(code: int) -> np.ndarray:
    from model_doctor.data.waterbirds import photo

    return photo(*PHOTOS[code % len(PHOTOS)])


def _crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of 96-192 px (the photo's short side at most) scaled to the canvas."""
    from PIL import Image

    side = int(min(rng.integers(96, 193), *img.shape[:2]))
    y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
    crop = Image.fromarray(np.ascontiguousarray(img[y:y + side, x:x + side]))
    return np.asarray(crop.resize((CANVAS, CANVAS), Image.Resampling.BILINEAR), dtype=np.float64)


def _cue(kind: str, code: int, rng: np.random.Generator, box: tuple = (0, 0, CANVAS, CANVAS),
         shape: np.ndarray | None = None) -> np.ndarray:
    """The background ``[S, S, C]`` float in [0, 255]; ``box`` (y0, x0, y1, x1) is the object's
    (only ``mark`` reads it), ``shape`` its pixels (bool ``[S, S]``; only ``halo`` reads it)."""
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    if kind == "texture":
        angle, period = np.pi * (code % 5) / 5, 4 + 3 * (code // 5)
        t = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))
        return (45 + 35 * t)[..., None]
    if kind == "colour":
        base = _PALETTE[code % len(_PALETTE)] * 0.55
        return np.clip(base + rng.normal(0, 12, (CANVAS, CANVAS, 3)), 0, 255)
    if kind == "pattern":
        tile = (np.random.default_rng(1000 + code).random((6, 6)) > 0.5).astype(np.float64)
        oy, ox = rng.integers(0, 6, 2)
        big = np.tile(tile, (CANVAS // 6 + 2, CANVAS // 6 + 2))[oy:oy + CANVAS, ox:ox + CANVAS]
        return (25 + 70 * big)[..., None]
    if kind == "dots":
        import colorsys

        hue = np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.9)) * 255
        centres = rng.uniform(0, CANVAS, (70, 2))
        near = ((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2).min(-1) <= 2.0
        grey = np.clip(rng.normal(40, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
        return np.where(near[..., None], hue, grey)
    if kind == "photo":
        return _crop(_photo(code), rng)
    if kind == "gradient":
        import colorsys

        near = np.array(colorsys.hsv_to_rgb(code / 10, 0.7, 0.8)) * 255
        far = np.array(colorsys.hsv_to_rgb((code / 10 + 0.5) % 1, 0.7, 0.35)) * 255
        angle = 2 * np.pi * code / 10 + rng.uniform(-0.3, 0.3)
        t = (xx - CANVAS / 2) * np.cos(angle) + (yy - CANVAS / 2) * np.sin(angle)
        t = np.clip(0.5 + t / CANVAS + rng.uniform(-0.15, 0.15), 0, 1)[..., None]
        return np.clip(near * (1 - t) + far * t + rng.normal(0, 6, (CANVAS, CANVAS, 3)), 0, 255)
    if kind == "halo":
        import colorsys

        from scipy.ndimage import binary_dilation

        hue = np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.95)) * 255
        obj = np.zeros((CANVAS, CANVAS), bool) if shape is None else shape
        ring = binary_dilation(obj, np.ones((7, 7), bool)) & ~obj
        grey = np.clip(rng.normal(45, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
        return np.where(ring[..., None], hue, grey)
    if kind == "plaid":
        import colorsys

        a = np.array(colorsys.hsv_to_rgb(code / 10, 0.8, 0.75)) * 255
        b = np.array(colorsys.hsv_to_rgb((code / 10 + 0.37) % 1, 0.6, 0.35)) * 255
        period = 4 + code % 5
        oy, ox = rng.integers(0, 2 * period, 2)
        check = (((yy + oy) // period + (xx + ox) // period) % 2)[..., None]
        return np.clip(a * check + b * (1 - check) + rng.normal(0, 6, (CANVAS, CANVAS, 3)), 0, 255)
    if kind == "shadow":
        from scipy.ndimage import gaussian_filter, shift

        obj = np.zeros((CANVAS, CANVAS)) if shape is None else shape.astype(np.float64)
        angle = 2 * np.pi * code / 10
        cast = shift(obj, (SHADOW * np.sin(angle), SHADOW * np.cos(angle)), order=1, mode="constant")
        dark = np.clip(gaussian_filter(cast, 0.7), 0, 1)[..., None]
        grey = np.clip(rng.normal(45, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
        return grey * (1 - dark)
    if kind == "frame":
        import colorsys

        hue = np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.9)) * 255
        edge = np.minimum(np.minimum(yy, xx), np.minimum(CANVAS - 1 - yy, CANVAS - 1 - xx)) < FRAME
        grey = np.clip(rng.normal(45, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
        return np.where(edge[..., None], hue, grey)
    if kind == "focus":
        return np.clip(rng.normal(45, 20, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
    if kind in ("watermark", "cast", "grain", "tone", "lamp", "veil"):
        return np.clip(rng.normal(45, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
    if kind == "mark":
        import colorsys

        hue = np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.95)) * 255
        cy, cx = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
        angle = rng.uniform(0, np.pi)
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        bar = (np.abs(along) <= 8) & (np.abs(across) <= 2)
        tick = bar & (np.abs(np.mod(along + 8, 4) - 2) >= 1.5) & (across <= 0)
        grey = np.clip(rng.normal(45, 10, (CANVAS, CANVAS, 1)), 0, 255).repeat(3, -1)
        return np.where(tick[..., None], hue * 0.45, np.where(bar[..., None], hue, grey))
    raise ValueError(f"kind={kind!r}; use one of {', '.join(KINDS + FRESH_KINDS)}")


def _scaled(obj: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(obj).resize((side, side), Image.BILINEAR), dtype=np.float64)


def render(kind: str, obj: np.ndarray, code: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(image uint8 [S,S] or [S,S,3], exact mask bool [S,S], box (y0, x0, y1, x1)) for one object."""
    side = int(rng.integers(18, 29))
    o = _scaled(obj, side)
    oy, ox = rng.integers(0, CANVAS - side + 1, 2)
    alpha = np.zeros((CANVAS, CANVAS))
    alpha[oy:oy + side, ox:ox + side] = np.clip(o / 30.0, 0, 1)    # opaque object, soft one-pixel edge
    shade = np.zeros((CANVAS, CANVAS))
    shade[oy:oy + side, ox:ox + side] = np.clip(90 + o * 0.65, 0, 255)
    ys, xs = np.nonzero(alpha > 0.1)
    box = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    bg = _cue(kind, code, rng, box, alpha > 0.5)
    img = alpha[..., None] * shade[..., None] + (1 - alpha[..., None]) * bg
    if kind == "watermark":   # over everything, the object included
        glyph = np.kron(np.random.default_rng(2000 + code).random((5, 5)) > 0.5, np.ones((3, 3)))
        cy, cx = int(rng.uniform(box[0], box[2])) - 7, int(rng.uniform(box[1], box[3])) - 7
        over = np.zeros((CANVAS + 30, CANVAS + 30))
        over[cy + 15:cy + 30, cx + 15:cx + 30] = glyph
        over = 0.6 * over[15:15 + CANVAS, 15:15 + CANVAS, None]
        import colorsys

        img = img * (1 - over) + np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.95)) * 255 * over
    if kind == "cast":   # over everything, the object included
        import colorsys

        img = img * (1 - CAST) + np.array(colorsys.hsv_to_rgb(code / 10, 0.85, 0.95)) * 255 * CAST
    if kind == "grain":   # over everything, the object included
        direction = np.random.default_rng(3000 + code).normal(size=3)
        img = img + rng.normal(0, GRAIN, (CANVAS, CANVAS, 1)) * direction / np.linalg.norm(direction)
    if kind == "tone":   # over everything, the object included
        gamma = np.exp(TONE * np.cos(2 * np.pi * code / 10 + 2 * np.pi * np.arange(3) / 3))
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    if kind == "lamp":   # over everything, the object included
        import colorsys

        hue = np.array(colorsys.hsv_to_rgb(code / 10, 0.9, 1.0))
        cy, cx = rng.uniform(0, CANVAS, 2)
        yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
        s = LAMP * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * LAMP_SIGMA ** 2))[..., None]
        img = img * ((1 - s) + s * hue)
    if kind == "veil":   # over everything, the object included
        t = (_cue("texture", code, rng)[..., :1] - 45.0) / 35.0     # texture's stripes, in [-1, 1]
        img = img * (1 - VEIL) + 255.0 * (0.5 + 0.5 * t) * VEIL
    if kind == "focus" and code:   # over everything, the object included
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, (FOCUS * code, FOCUS * code, 0))
    exact = alpha > 0.5
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return (img[..., 0] if img.shape[2] == 1 else img), exact, box


def load_objects(split: str, n: int, root: str, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` Fashion-MNIST images of a split, a seeded draw (each seed its own sample)."""
    import torchvision

    tv = torchvision.datasets.FashionMNIST(root, train=split == "train", download=False)
    g = np.random.default_rng(10_000 * seed + (0 if split == "train" else 1))
    idx = g.permutation(len(tv.targets))[:n]
    return tv.data.numpy()[idx], tv.targets.numpy()[idx], list(tv.classes)


def _with_masks(img: np.ndarray, exact: np.ndarray, box: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y0, x0, y1, x1 = box
    m = np.zeros((CANVAS, CANVAS), np.uint8)
    m[y0:y1, x0:x1] = 255
    return img, {"masks-box": m, "masks-exact": exact.astype(np.uint8) * 255}


def write_images(root: Path, split: str, objs, labels, n_classes: int, rng: np.random.Generator, shuffle: bool,
                 per_class: int, render_one) -> None:
    """``root/<split>/<class>/<i>.png`` with the class's cue (a random class's when ``shuffle``) and, for
    the first ``per_class`` training images of each class, the masks ``render_one(obj, code, rng)``
    returns beside the image (``{subfolder: uint8 mask}``). Test images get theirs too, under
    ``masks-test-*``, and ``test-cues.csv`` names the class each one's cue codes: the benchmark's
    swap measure on the test images themselves (no user has them; no random number is drawn for them)."""
    from PIL import Image

    counts = {c: 0 for c in range(n_classes)}
    cues = ["file,cue"]
    for i, (obj, c) in enumerate(zip(objs, labels)):
        c = int(c)
        code = int(rng.integers(n_classes)) if shuffle else c
        img, masks = render_one(obj, code, rng)
        rel = Path(f"{c:02d}") / f"{i:05d}.png"
        (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / split / rel)
        keep = split == "test" or (split == "train" and counts[c] < per_class)
        counts[c] += split == "train" and keep
        for sub, m in (masks.items() if keep else ()):
            sub = sub.replace("masks-", "masks-test-") if split == "test" else sub
            (root / sub / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(root / sub / rel)
        cues.append(f"{rel.as_posix()},{code}")
    if split == "test":
        (root / "test-cues.csv").write_text("\n".join(cues) + "\n")


def make_folder(root: Path, kind: str, n_train: int, n_test: int, per_class: int, data_root: str, seed: int,
                shuffled_train: bool = False) -> Path:
    """``root/{train,test}/<class>/<i>.png``, ``root/masks-box`` and ``root/masks-exact`` (annotated
    training images only)."""
    if (root / "done").is_file():
        return root
    for split, n in (("train", n_train), ("test", n_test)):
        objs, labels, classes = load_objects(split, n, data_root, seed)
        rng = np.random.default_rng(100 * seed + (7 if split == "train" else 8) + (50 if shuffled_train else 0))
        shuffle = split == "test" or shuffled_train
        write_images(root, split, objs, labels, len(classes), rng, shuffle, per_class,
                     lambda obj, code, rng: _with_masks(*render(kind, obj, code, rng)))
    (root / "done").write_text("ok")
    return root
