"""Datasets by name: the embedded sklearn digits, (Fashion-)MNIST, and ImageFolder trees.

Images come out as normalised float tensors ``[C, H, W]`` with ``dataset.classes`` holding the
class names in a deterministic order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["TensorImageDataset", "load_dataset", "dataset_names", "DatasetInfo"]


class TensorImageDataset(Dataset):
    """Images held in memory as one uint8/float tensor ``[N, C, H, W]``; normalised on access."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: list[str],
                 mean: float = 0.5, std: float = 0.5, scale: float = 255.0):
        if images.dim() == 3:
            images = images[:, None]
        self.images, self.targets, self.classes = images, targets.long(), list(classes)
        self.mean, self.std, self.scale = mean, std, scale

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i].float() / self.scale
        return (x - self.mean) / self.std, int(self.targets[i])


class DatasetInfo(dict):
    """``in_channels``, ``image_size``, ``num_classes``, ``classes`` of a named dataset."""


def _digits(split: str, image_size: int, in_channels: int) -> TensorImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=0,
                                           stratify=d.target)
    idx = idx_train if split == "train" else idx_test
    x = torch.tensor(d.images[idx], dtype=torch.float32)[:, None] / 16.0  # 8x8, values 0..16
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.repeat(1, in_channels, 1, 1)
    return TensorImageDataset(x, torch.tensor(d.target[idx]), [str(i) for i in range(10)], mean=0.3, std=0.4, scale=1.0)


def _mnist_like(name: str, root: str | None, split: str, image_size: int, in_channels: int, download: bool):
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[name]
    root = root or "data"
    try:
        tv = cls(root=root, train=split == "train", download=download)
    except RuntimeError as exc:
        raise ValueError(
            f"{name} not found under --data-root {root!r} ({exc}); point --data-root at the folder holding "
            f"{cls.__name__}/raw, or pass --download where the network allows"
        ) from None
    x = tv.data[:, None]
    if image_size != x.shape[-1]:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.repeat(1, in_channels, 1, 1)
    mean, std = (0.2860, 0.3530) if name == "fashion-mnist" else (0.1307, 0.3081)
    return TensorImageDataset(x, tv.targets, list(tv.classes), mean=mean, std=std)


def _imagefolder(path: str, split: str, image_size: int, in_channels: int):
    from .folder import MaskedImageFolder

    folder = Path(path) / split
    if not folder.is_dir():
        raise ValueError(f"ImageFolder split folder {str(folder)!r} does not exist; expected {path}/train, {path}/test")
    return MaskedImageFolder(folder, None, image_size=image_size, in_channels=in_channels)


_TV_NAMES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN", "stl10": "STL10"}


def _torchvision_rgb(name: str, root: str | None, split: str, image_size: int, in_channels: int, download: bool):
    """CIFAR-10/100, SVHN, STL-10 through torchvision, held as uint8 tensors."""
    import numpy as np
    import torchvision

    cls = getattr(torchvision.datasets, _TV_NAMES[name])
    root = root or "data"
    kw = {"train": split == "train"} if name.startswith("cifar") else {"split": split}
    try:
        tv = cls(root=root, download=download, **kw)
    except (RuntimeError, FileNotFoundError) as exc:
        raise ValueError(f"{name} not found under --data-root {root!r} ({str(exc)[:80]}); point --data-root at it, "
                         "or pass --download where the network allows") from None
    data = np.asarray(tv.data)
    x = torch.from_numpy(data).permute(0, 3, 1, 2) if data.shape[-1] == 3 else torch.from_numpy(data)
    targets = torch.as_tensor(getattr(tv, "targets", None) if hasattr(tv, "targets") else tv.labels)
    if image_size != x.shape[-1]:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    if in_channels == 1:
        x = x.float().mean(1, keepdim=True)
    classes = list(getattr(tv, "classes", [str(i) for i in range(int(targets.max()) + 1)]))
    return TensorImageDataset(x, targets, classes, mean=0.5, std=0.25)


def dataset_names() -> list[str]:
    return ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "stl10", "decoy-digits",
            "decoy-fashion-mnist", "imagefolder:PATH"]


def default_image_size(name: str) -> int:
    return {"digits": 32, "mnist": 28, "fashion-mnist": 28, "stl10": 96, "decoy-digits": 32,
            "decoy-fashion-mnist": 44}.get(name, 32)


def load_dataset(name: str, split: str = "train", *, root: str | None = None, image_size: int | None = None,
                 in_channels: int = 1, download: bool = False) -> Dataset:
    """Load ``split`` ("train" | "test") of a named dataset.

    Raises:
        ValueError: unknown name, bad split, missing files (with the fix).
    """
    if split not in ("train", "test") and not (split == "val" and name.startswith("imagefolder:")):
        raise ValueError(f"split={split!r}; use 'train' or 'test' (validation is carved from train)")
    size = image_size or default_image_size(name)
    if name == "digits":
        return _digits(split, size, in_channels)
    if name in ("mnist", "fashion-mnist"):
        return _mnist_like(name, root, split, size, in_channels, download)
    if name in _TV_NAMES:
        return _torchvision_rgb(name, root, split, size, in_channels, download)
    if name.startswith("decoy-"):
        from .decoy import DecoyConfig, make_decoy

        base = name[len("decoy-"):]
        return make_decoy(DecoyConfig(base=base, split=split, root=root,
                                      canvas=size if image_size else None))
    if name.startswith("imagefolder:"):
        return _imagefolder(name.split(":", 1)[1], split, size, in_channels)
    raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(dataset_names())}")
