"""ImageFolder trees with optional masks, paired by relative path, and joint image+mask transforms.

``root/train/<class>/<file>`` (and ``root/test/...``). Classes are the sorted sub-folder names.
Images and masks go through one ``torchvision.transforms.v2`` pipeline as ``tv_tensors.Image`` /
``tv_tensors.Mask``, so a random crop or flip moves both identically. Masks are expanded by N
pixels once, at the image's original resolution, and cached.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .annotations import IMAGE_EXTS, MaskFn
from .masks import expand_foreground

__all__ = ["MaskedImageFolder", "joint_transform"]


def joint_transform(image_size: int, in_channels: int, train: bool = False, crop_padding: int = 0) -> v2.Compose:
    """Resize (+ random crop/flip when ``train``), to float, normalise. Masks follow the geometry
    (nearest-neighbour) and skip the photometric steps."""
    steps: list = [v2.Grayscale(1) if in_channels == 1 else v2.RGB(), v2.Resize((image_size, image_size), antialias=True)]
    if train:
        steps += [v2.RandomCrop(image_size, padding=crop_padding), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * in_channels, [0.5] * in_channels)]
    return v2.Compose(steps)


class MaskedImageFolder(Dataset):
    """``(image, label, foreground [1,H,W], has_mask)`` from a folder tree and masks keyed by path.

    Args:
        split_root: the folder holding one sub-folder per class.
        masks: ``{relative path without extension: fn(h, w) -> bool mask}`` (see ``annotations``).
        expand: foreground expansion in *model-input* pixels; applied at the original resolution
            as ``round(expand * original_size / image_size)`` (negative erodes).
        on_error: ``"raise"`` (default) or ``"skip"``: unreadable images (checked when the folder
            is scanned) are left out and masks without an image ignored; both are counted in
            ``self.skipped`` and reported by :meth:`skip_report`.

    Raises:
        ValueError: an image outside any class folder, an empty class folder, a file name that
            is not UTF-8, a mask whose image does not exist, an unreadable image (each names the file).
    """

    def __init__(self, split_root: str | Path, masks: Mapping[str, MaskFn] | None = None, *, image_size: int = 32,
                 in_channels: int = 3, expand: int = 0, train: bool = False, transform: v2.Transform | None = None,
                 on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; use 'raise' or 'skip'")
        self.root = Path(split_root)
        if not self.root.is_dir():
            raise ValueError(f"dataset folder {str(self.root)!r} does not exist")
        self.image_size, self.expand, self.on_error, self.in_channels = image_size, expand, on_error, in_channels
        self.transform = transform or joint_transform(image_size, in_channels, train)
        self.skipped: dict[str, list[str]] = {"unreadable image": [], "mask without image": []}
        entries = sorted(os.listdir(self.root))
        for name in entries:
            self._check_name(self.root / name)
            if (self.root / name).is_file() and Path(name).suffix.lower() in IMAGE_EXTS:
                raise ValueError(f"image {str(self.root / name)!r} is not inside a class folder; "
                                 "move it to <split>/<class>/")
        self.classes = [n for n in entries if (self.root / n).is_dir()]
        if not self.classes:
            raise ValueError(f"{str(self.root)!r} has no class folders; expected {self.root}/<class>/<image>")
        self.samples: list[tuple[str, int]] = []
        for label, cls in enumerate(self.classes):
            files = []
            for dirpath, _dirs, names in os.walk(self.root / cls):
                for n in sorted(names):
                    p = Path(dirpath) / n
                    self._check_name(p)
                    if p.suffix.lower() in IMAGE_EXTS:
                        files.append(p.relative_to(self.root).as_posix())
            if not files:
                raise ValueError(f"class folder {str(self.root / cls)!r} holds no image; remove it or add images")
            for f in sorted(files):
                if on_error == "skip" and not self._readable(self.root / f):
                    self.skipped["unreadable image"].append(f)  # dropped from the dataset, reported
                    continue
                self.samples.append((f, label))
        self.masks: dict[int, MaskFn] = {}
        by_stem: dict[str, int] = {}
        twins: dict[str, list[str]] = {}
        for i, (rel, _) in enumerate(self.samples):
            stem = rel.rsplit(".", 1)[0]
            if stem in by_stem:
                twins.setdefault(stem, [self.samples[by_stem[stem]][0]]).append(rel)
            by_stem[stem] = i
        for key, fn in (masks or {}).items():
            if key in twins:
                raise ValueError(f"mask {key!r} could pair with {' and '.join(twins[key])}; image names must differ in "
                                 "more than the extension (rename one)")
            if key not in by_stem:
                if on_error == "skip":
                    self.skipped["mask without image"].append(key)
                    continue
                raise ValueError(f"mask for {key!r} has no image under {str(self.root)!r}; "
                                 "masks are paired by relative path (class/file)")
            self.masks[by_stem[key]] = fn
        self._cache: dict[int, torch.Tensor] = {}

    @staticmethod
    def _check_name(p: Path) -> None:
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"file name {os.fsencode(p)!r} is not valid UTF-8; rename it") from None

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, i: int) -> Path:
        return self.root / self.samples[i][0]

    @staticmethod
    def _readable(p: Path) -> bool:
        try:
            with Image.open(p) as im:
                im.verify()
            return True
        except Exception:
            return False

    def _image(self, i: int) -> Image.Image:
        try:
            with Image.open(self.path(i)) as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit: scale the full range, never clip at 255
                    import numpy as np

                    arr = np.asarray(im, dtype=np.float64)
                    top = 65535.0 if im.mode.startswith("I;16") or (im.mode == "I" and arr.max() <= 65535) else \
                        max(float(arr.max()), 1.0)
                    return Image.fromarray(np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8), mode="L")
                return im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
        except Exception as exc:
            raise ValueError(f"cannot read image {str(self.path(i))!r} ({type(exc).__name__}); "
                             "replace or delete it, or pass on_error='skip'") from None

    def _mask(self, i: int, h: int, w: int) -> torch.Tensor:
        if i not in self._cache:
            m = self.masks[i](h, w)
            if tuple(m.shape) != (h, w):
                raise ValueError(f"mask for {str(self.path(i))!r} is {tuple(m.shape)} but the image is {(h, w)}")
            n = int(round(self.expand * max(h, w) / self.image_size))
            self._cache[i] = expand_foreground(m, n)
        return self._cache[i]

    def __getitem__(self, i: int):
        img = self._image(i)
        label = self.samples[i][1]
        w, h = img.size
        has = i in self.masks
        mask = self._mask(i, h, w) if has else torch.zeros(h, w, dtype=torch.bool)
        x, m = self.transform(tv_tensors.Image(v2.functional.pil_to_tensor(img)), tv_tensors.Mask(mask[None].to(torch.uint8)))
        return x.as_subclass(torch.Tensor), label, m.as_subclass(torch.Tensor).float(), has

    def skip_report(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in self.skipped.items() if v]
        return ("skipped: " + ", ".join(parts)) if parts else "skipped: none"
