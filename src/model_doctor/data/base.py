"""Dataset plumbing shared by diagnosis, examination and treatment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["as_dataset", "check_sample", "IndexedSubset", "loader_for", "class_names_of", "sized", "hits_of"]


def as_dataset(data: Dataset | DataLoader) -> tuple[Dataset, int | None]:
    """Accept a ``Dataset`` or a ``DataLoader``; return the dataset and the loader's batch size."""
    if isinstance(data, DataLoader):
        return data.dataset, data.batch_size
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return data, None
    raise TypeError(f"expected a torch Dataset or DataLoader of (image, label), got {type(data).__name__}")


def check_sample(item: Any, num_classes: int | None = None, where: str = "dataset[0]") -> None:
    """Raise a one-line ``ValueError`` unless ``item`` is ``(image [C,H,W] tensor, int label, ...)``."""
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError(f"{where} is {type(item).__name__}; the dataset must yield (image_tensor, int_label)")
    image, label = item[0], item[1]
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(
            f"{where} image is {shape}; expected a [C, H, W] tensor (add transforms.ToTensor() / v2.ToImage())"
        )
    if not image.is_floating_point():
        raise ValueError(f"{where} image has dtype {image.dtype}; convert to float (e.g. v2.ToDtype(torch.float32, scale=True))")
    lab = int(label) if isinstance(label, (int, torch.Tensor)) and torch.as_tensor(label).numel() == 1 else None
    if lab is None:
        raise ValueError(f"{where} label is {label!r}; expected an int class index")
    if num_classes is not None and not 0 <= lab < num_classes:
        raise ValueError(f"{where} label {lab} is outside [0, {num_classes}); check num_classes")


class IndexedSubset(Dataset):
    """``dataset[indices[i]]`` as ``(image, label, index)``, so batches know their dataset indices."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = list(range(sized(dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        idx = self.indices[i]
        item = self.dataset[idx]
        return item[0], int(item[1]), idx


def loader_for(dataset: Dataset, batch_size: int, *, shuffle: bool = False, num_workers: int = 0,
               generator: torch.Generator | None = None, drop_last: bool = False,
               device: torch.device | str | None = None) -> DataLoader:
    """A plain loader; with a CUDA ``device`` its batches come in pinned memory, so that
    ``.to(device, non_blocking=True)`` overlaps the copy with the GPU's work."""
    pin = device is not None and torch.device(device).type == "cuda"
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, drop_last=drop_last, pin_memory=pin)


@torch.no_grad()
def hits_of(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256) -> torch.Tensor:
    """Whether ``model`` (in eval mode; its flag restored) predicts each item's label: bool ``[N]``, in order."""
    p = next(model.parameters())
    was = model.training
    model.eval()
    hits = []
    try:
        for batch in loader_for(dataset, batch_size, device=p.device):
            hits.append(model(batch[0].to(p.device, p.dtype)).argmax(1).cpu() == torch.as_tensor(batch[1]))
    finally:
        model.train(was)
    return torch.cat(hits)


def class_names_of(dataset: Dataset, num_classes: int) -> list[str]:
    """The dataset's ``classes`` attribute when it has one of the right length, else ``"0".."N-1"``."""
    base = dataset
    while not hasattr(base, "classes") and hasattr(base, "dataset"):
        base = base.dataset  # unwrap Subset / IndexedSubset
    names = getattr(base, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def sized(dataset: Any) -> int:
    """``len(dataset)``: torch's ``Dataset`` declares no ``__len__``; every dataset here is map-style."""
    return len(dataset)
