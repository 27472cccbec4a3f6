"""DecoyMNIST-style benchmarks with exact ground-truth masks (after Ross et al. 2017).

Each object (Fashion-MNIST 28 px, or sklearn digits upsampled to 16 px) is pasted at a random
position on a larger black canvas. In the training split a square *decoy* patch sits in a random
corner with a grey shade that encodes the class; in the shuffled test split the shade is that of
a random class. A model that learns the shade instead of the object does well on its training
distribution and badly on the shuffled test. The foreground mask is the object's pasted square,
so the decoy is always background: exact ground truth for the space-wise constraint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

__all__ = ["DecoyConfig", "DecoyDataset", "make_decoy", "decoy_objects"]


@dataclass(frozen=True)
class DecoyConfig:
    base: str = "digits"            # digits | fashion-mnist
    split: str = "train"            # train | test
    shuffle_decoy: bool | None = None  # random shades (default: True for test, False for train)
    canvas: int | None = None       # side of the canvas (default: object + 2 * patch + 4)
    kind: str = "patch"             # patch: square in a random corner | bar: full-width bar along the top or bottom edge
    patch: int = 6                  # decoy size, px (square side; bar height = patch // 2)
    strength: float = 1.0           # shade contrast: shades span [0.1, 0.1 + 0.8 * strength]
    seed: int = 0
    annotated_per_class: int | None = None  # masks for only this many images per class (None: all)
    root: str | None = None         # torchvision root for fashion-mnist


class DecoyDataset(Dataset):
    """``(image [1,S,S], label, foreground [1,S,S], has_mask)``; ``images`` are uint8 in memory.
    ``decoy_boxes[i] = (y, x, size)``: the decoy's top-left corner and size (a bar spans the width)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, boxes: torch.Tensor, has_mask: torch.Tensor,
                 classes: list[str], decoy_boxes: torch.Tensor):
        self.images, self.targets, self.boxes, self.has_mask = images, targets.long(), boxes, has_mask
        self.classes, self.decoy_boxes = list(classes), decoy_boxes
        self.mean, self.std = 0.15, 0.3

    def __len__(self) -> int:
        return len(self.targets)

    def foreground(self, i: int) -> torch.Tensor:
        s = self.images.shape[-1]
        y0, x0, side = (int(v) for v in self.boxes[i])
        fg = torch.zeros(1, s, s)
        fg[:, y0:y0 + side, x0:x0 + side] = 1.0
        return fg

    def __getitem__(self, i: int):
        x = (self.images[i].float() / 255.0 - self.mean) / self.std
        return x, int(self.targets[i]), self.foreground(i), bool(self.has_mask[i])


def decoy_objects(cfg: DecoyConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    import torch.nn.functional as F

    if cfg.base == "digits":
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        tr, te = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=0, stratify=d.target)
        idx = tr if cfg.split == "train" else te
        x = torch.tensor(d.images[idx], dtype=torch.float32)[:, None] / 16.0
        x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
        return (x.clamp(0, 1) * 255).to(torch.uint8), torch.tensor(d.target[idx]), [str(i) for i in range(10)]
    if cfg.base == "fashion-mnist":
        import torchvision

        try:
            tv = torchvision.datasets.FashionMNIST(cfg.root or "data", train=cfg.split == "train", download=False)
        except RuntimeError:
            raise ValueError(f"Fashion-MNIST not found under {cfg.root!r}; pass root= the folder holding FashionMNIST/raw") from None
        return tv.data[:, None], tv.targets, list(tv.classes)
    raise ValueError(f"decoy base {cfg.base!r}; use 'digits' or 'fashion-mnist'")


def make_decoy(cfg: DecoyConfig, cache_dir: str | Path | None = None) -> DecoyDataset:
    """Generate (or load from ``cache_dir``) a decoy dataset; deterministic for a config."""
    if cfg.split not in ("train", "test"):
        raise ValueError(f"split={cfg.split!r}; use 'train' or 'test'")
    if cfg.kind not in ("patch", "bar"):
        raise ValueError(f"decoy kind={cfg.kind!r}; use 'patch' or 'bar'")
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"decoy-{cfg.base}-{cfg.split}-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        d = torch.load(path, weights_only=True)
        return DecoyDataset(d["images"], d["targets"], d["boxes"], d["has_mask"], d["classes"], d["decoy_boxes"])
    objs, targets, classes = decoy_objects(cfg)
    n, obj = len(targets), objs.shape[-1]
    p = cfg.patch
    s = cfg.canvas or obj + 2 * p + 4
    if s < obj + 2 * p:
        raise ValueError(f"canvas={s} cannot hold a {obj}-px object and {p}-px corner decoys; use canvas >= {obj + 2 * p}")
    g = torch.Generator().manual_seed(cfg.seed * 1000 + (0 if cfg.split == "train" else 1))
    shuffle = cfg.shuffle_decoy if cfg.shuffle_decoy is not None else cfg.split == "test"
    nc = len(classes)
    shades = 0.1 + 0.8 * cfg.strength * torch.arange(nc, dtype=torch.float32) / max(nc - 1, 1)
    images = torch.zeros(n, 1, s, s, dtype=torch.uint8)
    boxes = torch.zeros(n, 3, dtype=torch.long)
    dboxes = torch.zeros(n, 3, dtype=torch.long)
    oy = torch.randint(p, s - obj - p + 1, (n,), generator=g)
    ox = torch.randint(p, s - obj - p + 1, (n,), generator=g)
    corner = torch.randint(0, 4, (n,), generator=g)
    shade_class = torch.randint(0, nc, (n,), generator=g) if shuffle else targets
    # paste every object and decoy at once: index grids [n, rows, cols] (same draws as one image at a time)
    idx = torch.arange(n)[:, None, None]
    span = torch.arange(obj)
    images[idx, 0, (oy[:, None] + span)[:, :, None], (ox[:, None] + span)[:, None, :]] = objs[:, 0]
    shade = (shades[shade_class] * 255).round().to(torch.uint8)  # round half to even, as round() did
    if cfg.kind == "patch":
        cy, cx, h, w = torch.where(corner < 2, 0, s - p), torch.where(corner % 2 == 0, 0, s - p), p, p
        dboxes[:] = torch.stack([cy, cx, torch.full_like(cy, p)], 1)
    else:
        bh = max(1, p // 2)
        cy, cx, h, w = torch.where(corner < 2, 0, s - bh), torch.zeros_like(corner), bh, s
        dboxes[:] = torch.stack([cy, cx, torch.full_like(cy, bh)], 1)
    rows = (cy[:, None] + torch.arange(h))[:, :, None]
    cols = (cx[:, None] + torch.arange(w))[:, None, :]
    images[idx, 0, rows, cols] = shade[:, None, None].expand(n, h, w)
    boxes[:] = torch.stack([oy, ox, torch.full_like(oy, obj)], 1)
    has = _annotated(targets, nc, cfg.annotated_per_class)
    ds = DecoyDataset(images, targets, boxes, has, classes, dboxes)
    if path is not None:
        _cache(path, {"images": images, "targets": targets.long(), "boxes": boxes, "has_mask": has, "classes": classes,
                      "decoy_boxes": dboxes})
    return ds


def _annotated(targets: torch.Tensor, nc: int, per_class: int | None) -> torch.Tensor:
    """Which images carry a mask: all, or the first ``per_class`` of each class."""
    has = torch.ones(len(targets), dtype=torch.bool)
    if per_class is not None:
        has[:] = False
        for c in range(nc):
            has[torch.nonzero(targets == c).flatten()[:per_class]] = True
    return has


def _cache(path: Path, tensors: dict) -> None:
    import io

    from ..io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(tensors, buf)
    atomic_write_bytes(path, buf.getvalue())
