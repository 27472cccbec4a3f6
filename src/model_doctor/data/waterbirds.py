"""A Waterbirds-style benchmark (Sagawa et al. 2020) from what installed packages ship, written as
an ImageFolder a user would bring: ``train/ val/ test/<class>/*.png``, ``masks-box/`` and
``masks-exact/`` (N annotated training images per class), and ``groups.csv``.

- **Objects**: Fashion-MNIST items (from a torchvision ``FashionMNIST`` folder) in two classes,
  ``top`` (T-shirt, pullover, coat, shirt) and ``footwear`` (sandal, sneaker, ankle boot), or
  scikit-learn's digits (``even`` / ``odd``) when no folder is given; each in a random colour,
  scaled to 35-60 % of the canvas and placed at random, so the object does not fill its box.
- **Places**: random crops of the natural photos scikit-image and scikit-learn install, split in
  two sets of different look (``outdoor``: grass, gravel, brick, a cat, a flower, China; ``indoor-sky``:
  Hubble deep field, stained tissue, retina, coffee, the moon, an astronaut).
- **Correlation**: in training, class k sits on place k with probability ``correlation`` (0.95)
  and on the other place otherwise (the minority groups); validation and test are group-balanced.
- **Groups**: ``<class>-<place>``; ``groups.csv`` has ``file,group`` for every image of every split.

Annotations are drawn from the training split (the first ``per_class`` images of each class in a
seeded order, minority images at their natural rate). Nothing here runs at import: the photos are
read when :func:`write_waterbirds` is called.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

__all__ = ["write_waterbirds", "write_pretraining", "photo", "PLACES", "CLASSES"]

#: the two places: (package, image name) photos whose random crops are the backgrounds
PLACES = {
    "outdoor": [("skimage", "grass"), ("skimage", "gravel"), ("skimage", "brick"), ("skimage", "chelsea"),
                ("sklearn", "flower.jpg"), ("sklearn", "china.jpg")],
    "indoor-sky": [("skimage", "hubble_deep_field"), ("skimage", "immunohistochemistry"), ("skimage", "retina"),
                   ("skimage", "coffee"), ("skimage", "moon"), ("skimage", "astronaut")],
}
#: class name -> Fashion-MNIST labels (digits: even / odd)
CLASSES = {"top": (0, 2, 4, 6), "footwear": (5, 7, 9)}


def photo(package: str, name: str) -> np.ndarray:
    """One installed natural photo as RGB uint8 ``[H, W, 3]`` (grey photos repeated over the channels):
    ``("skimage", "grass")`` names a ``skimage.data`` function, ``("sklearn", "china.jpg")`` one of
    scikit-learn's sample images. Why here: every benchmark that needs photos without a download
    reads them the same way."""
    if package == "skimage":
        try:
            import skimage.data
        except ImportError:
            raise ValueError("the photo backgrounds need scikit-image's photos; pip install scikit-image") from None
        img = np.asarray(getattr(skimage.data, name)())
    elif package == "sklearn":
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        img = np.asarray(dict(zip([Path(f).name for f in sample.filenames], sample.images))[name])
    else:
        raise ValueError(f"package={package!r}; use 'skimage' or 'sklearn'")
    return np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]


def _photos() -> dict[str, list[np.ndarray]]:
    """Every place's photos as RGB uint8 arrays."""
    return {place: [photo(pkg, name) for pkg, name in names] for place, names in PLACES.items()}


def _objects(root: str | None, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey objects ``[n, 28, 28]`` uint8 and their class (0 = top / even, 1 = footwear / odd)."""
    g = np.random.default_rng(seed)
    if root is not None:
        import torchvision

        tv = torchvision.datasets.FashionMNIST(root, train=split == "train", download=False)
        labels = tv.targets.numpy()
        keep = np.nonzero(np.isin(labels, CLASSES["top"] + CLASSES["footwear"]))[0]
        idx = g.choice(keep, size=min(n, len(keep)), replace=False)
        return tv.data.numpy()[idx], np.isin(labels[idx], CLASSES["footwear"]).astype(np.int64)
    objs, digits = _digits(n, g)
    return objs, digits % 2


def _any_objects(root: str | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` grey objects of every class (Fashion-MNIST's training split, or digits), their labels and
    the class names: the pretraining set never reads Fashion-MNIST's test split, which the benchmark tests on."""
    g = np.random.default_rng(seed)
    if root is not None:
        import torchvision

        tv = torchvision.datasets.FashionMNIST(root, train=True, download=False)
        idx = g.choice(len(tv.targets), size=min(n, len(tv.targets)), replace=False)
        names = [c.split("/")[0].strip().lower().replace(" ", "-") for c in tv.classes]
        return tv.data.numpy()[idx], tv.targets.numpy()[idx], names
    objs, digits = _digits(n, g)
    return objs, digits, [str(k) for k in range(10)]


def _digits(n: int, g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of scikit-learn's digits drawn by ``g``, scaled to 28 px uint8, and their digit: the
    objects when no Fashion-MNIST folder is given."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = g.choice(len(d.target), size=n, replace=n > len(d.target))
    objs = np.stack([np.asarray(Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR))
                     for i in idx])
    return objs, d.target[idx].astype(np.int64)


def write_pretraining(out: str | Path, n_objects: int = 15000, n_places: int = 6000, size: int = 64, seed: int = 0,
                      fashion_root: str | None = None, test_share: float = 0.1) -> Path:
    """A shortcut-free pretraining set, written as an ImageFolder ``train/ test/``: every object class
    (``object-<name>``: Fashion-MNIST's ten, or digits) in a random colour on a random crop of any of
    the twelve photos, the photo drawn independently of the class, and every photo alone
    (``place-<photo>``: the crop without an object). Why both: a backbone pretrained on a large set
    (ImageNet) encodes the objects *and* the scenes, so the shortcut in fine-tuning is one the features
    offer, as in the field's Waterbirds; a backbone taught only to ignore the places would hide it.

    Raises:
        ValueError: a size below 16 px, counts below 1, a test share outside (0, 0.5].
    """
    from PIL import Image

    from ..io import atomic_write_bytes
    from ..progress import progress

    if size < 16 or min(n_objects, n_places) < 1 or not 0 < test_share <= 0.5:
        raise ValueError(f"size={size}, counts {n_objects}/{n_places}, test_share={test_share}; use size >= 16, "
                         "counts >= 1 and a test share in (0, 0.5]")
    root, g = Path(out), np.random.default_rng(10_000 + seed)
    photos = [(name, img) for place, names in PLACES.items() for (_, name), img in zip(names, _photos()[place])]
    by_stem = {Path(name).stem: img for name, img in photos}
    objs, labels, names = _any_objects(fashion_root, n_objects, seed)
    items = [(f"object-{names[int(y)]}", o) for o, y in zip(objs, labels)]
    items += [(f"place-{Path(photos[i][0]).stem}", None) for i in np.arange(n_places) % len(photos)]
    for i in progress(g.permutation(len(items)), desc="pretraining set"):
        cls, obj = items[int(i)]
        if obj is None:   # the place alone: its own photo; an object: any photo
            img = np.clip(np.round(_crop(by_stem[cls[len("place-"):]], size, g)), 0, 255).astype(np.uint8)
        else:
            img = _render(obj, photos[int(g.integers(len(photos)))][1], size, g)[0]
        split = "test" if g.random() < test_share else "train"
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        atomic_write_bytes(root / split / cls / f"{int(i):06d}.png", buf.getvalue())
    return root


def _balanced(labels: np.ndarray, n: int) -> np.ndarray:
    """Positions of ``n`` items alternating class 0, class 1, ... (``n // 2`` of each)."""
    a, b = np.nonzero(labels == 0)[0][: n // 2], np.nonzero(labels == 1)[0][: n // 2]
    if min(len(a), len(b)) < n // 2:
        raise ValueError(f"too few objects of one class for {n} group-balanced images; lower --n-val / --n-test")
    return np.stack([a, b], 1).reshape(-1)


def _crop(photo: np.ndarray, size: int, g: np.random.Generator) -> np.ndarray:
    """A random square crop of ``photo`` (a third of its short side or more) scaled to ``size``, float."""
    from PIL import Image

    h, w = photo.shape[:2]
    crop = int(g.integers(min(h, w) // 3, min(h, w) + 1))
    y, x = int(g.integers(0, h - crop + 1)), int(g.integers(0, w - crop + 1))
    return np.asarray(Image.fromarray(photo[y:y + crop, x:x + crop]).resize((size, size), Image.Resampling.BILINEAR), np.float64)


def _render(obj: np.ndarray, photo: np.ndarray, size: int, g: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(RGB image, exact mask, box (y0, x0, y1, x1)) of one coloured object on a crop of ``photo``."""
    from PIL import Image

    bg = _crop(photo, size, g)
    side = int(g.integers(int(0.35 * size), int(0.6 * size) + 1))
    o = np.asarray(Image.fromarray(obj).resize((side, side), Image.Resampling.BILINEAR), np.float64) / 255.0
    oy, ox = (int(v) for v in g.integers(0, size - side + 1, 2))
    alpha = np.zeros((size, size))
    alpha[oy:oy + side, ox:ox + side] = np.clip(o * 2.0, 0, 1)
    colour = g.uniform(40, 255, 3)
    shade = np.zeros((size, size, 3))
    shade[oy:oy + side, ox:ox + side] = colour * (0.55 + 0.45 * o[..., None])
    img = alpha[..., None] * shade + (1 - alpha[..., None]) * bg
    ys, xs = np.nonzero(alpha > 0.1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), alpha > 0.5, (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


def write_waterbirds(out: str | Path, n_train: int = 4000, n_val: int = 400, n_test: int = 2000, size: int = 64,
                     correlation: float = 0.95, per_class: int = 20, seed: int = 0,
                     fashion_root: str | None = None, test_masks: bool = False) -> Path:
    """Write the benchmark under ``out`` (see the module docstring); returns ``out``.

    ``test_masks``: also ``masks-test-box/`` and ``masks-test-exact/`` for every test image (paths
    relative to ``test/``), for a benchmark that measures reliance on the test images themselves.
    They draw no random numbers, so the images are the same with or without them.

    Raises:
        ValueError: a correlation outside [0.5, 1], a size below 16 px, counts below 1.
    """
    from PIL import Image

    from ..io import atomic_write_bytes, atomic_write_text
    from ..progress import progress

    if not 0.5 <= correlation <= 1.0:
        raise ValueError(f"correlation={correlation}; use a share in [0.5, 1] (Waterbirds: 0.95)")
    if size < 16 or min(n_train, n_val, n_test, per_class) < 1:
        raise ValueError(f"size={size}, counts {n_train}/{n_val}/{n_test}/{per_class}; use size >= 16 and counts >= 1")
    root, photos = Path(out), _photos()
    places, names = list(PLACES), (list(CLASSES) if fashion_root else ["even", "odd"])
    rows, annotated = [], {0: 0, 1: 0}
    for s, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        objs, labels = _objects(fashion_root, "train" if split != "test" else "test", 3 * n, seed * 10 + s)
        order = _balanced(labels, n) if split != "train" else np.arange(n)
        g = np.random.default_rng(1000 * seed + s)
        for i, k in enumerate(progress(order, desc=f"waterbirds {split}")):
            obj, y = objs[k], int(labels[k])
            if split == "train":
                place = y if g.random() < correlation else 1 - y
            else:
                place = (i // 2) % 2  # with classes alternating: every (class, place) group equally often
            photo = photos[places[place]][int(g.integers(len(photos[places[place]])))]
            img, exact, (y0, x0, y1, x1) = _render(obj, photo, size, g)
            rel = f"{names[y]}/{i:05d}.png"
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            atomic_write_bytes(root / split / rel, buf.getvalue())
            rows.append({"file": f"{split}/{rel}", "group": f"{names[y]}-{places[place]}"})
            if (split == "train" and annotated[y] < per_class) or (split == "test" and test_masks):
                annotated[y] += split == "train"
                box = np.zeros((size, size), np.uint8)
                box[y0:y1, x0:x1] = 255
                prefix = "masks-test" if split == "test" else "masks"
                for sub, m in ((f"{prefix}-box", box), (f"{prefix}-exact", exact.astype(np.uint8) * 255)):
                    buf = io.BytesIO()
                    Image.fromarray(m).save(buf, format="PNG")
                    atomic_write_bytes(root / sub / rel, buf.getvalue())
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["file", "group"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(root / "groups.csv", table.getvalue())
    return root
