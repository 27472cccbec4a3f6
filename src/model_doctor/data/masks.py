"""Foreground masks for the space-wise constraint: expansion, scaling, and a dataset wrapper.

A mask is a ``[H, W]`` tensor at the image's own resolution, non-zero = foreground (object).
The paper expands the foreground by N pixels (default 30) before taking the background, so that
object boundaries are never penalised; negative N erodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .base import sized

__all__ = ["pick_per_class", "expand_foreground", "scaled_expansion", "MaskedDataset", "ExpandedMasks", "LimitedMasks", "KeepMasks", "PAPER_EXPANSION",
           "PAPER_IMAGE_SIZE"]

PAPER_EXPANSION = 30
#: Image side the paper's 30 px refers to (mini-ImageNet/STL-10 at 224 px after resizing).
PAPER_IMAGE_SIZE = 224


def scaled_expansion(pixels: int, image_size: int, reference_size: int = PAPER_IMAGE_SIZE) -> int:
    """Scale an expansion in pixels from ``reference_size`` images to ``image_size`` ones.

    ``round(pixels * image_size / reference_size)``: the paper's 30 px at 224 px is 4 px at 28 px.
    """
    return int(round(pixels * image_size / reference_size))


def expand_foreground(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (``pixels > 0``) or erode (``< 0``) a ``[H, W]`` foreground mask by a square
    (Chebyshev) neighbourhood of radius ``|pixels|``; returns a bool mask of the same size."""
    fg = (mask != 0).float()[None, None]
    if pixels == 0:
        return fg[0, 0].bool()
    k = 2 * abs(pixels) + 1
    if pixels > 0:
        out = F.max_pool2d(fg, k, stride=1, padding=abs(pixels))
    else:  # erosion = complement of the dilated complement; outside the image counts as background
        bg = F.pad(1.0 - fg, (abs(pixels),) * 4, value=1.0)
        out = 1.0 - F.max_pool2d(bg, k, stride=1)
    return out[0, 0].bool()


class MaskedDataset(Dataset):
    """``(image, label, foreground [1, H, W] float, has_mask bool)`` from a dataset and masks by index.

    Masks are expanded once, on first use, and cached. Images without a mask get an all-zero
    foreground and ``has_mask=False``: the space-wise loss ignores them (no default mask).

    Raises:
        ValueError: a mask whose size differs from its image's, or an index out of range.
    """

    def __init__(self, dataset: Dataset, masks: Mapping[int, torch.Tensor], expand: int = 0):
        self.dataset, self.masks, self.expand = dataset, dict(masks), int(expand)
        n = sized(dataset)
        bad = [i for i in self.masks if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"mask for index {bad[0]} but the dataset has {n} images; pair masks with existing images")
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return sized(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        x, y = item[0], item[1]
        if i not in self.masks:
            return x, y, torch.zeros(1, *x.shape[-2:]), False
        if i not in self._cache:
            mask = torch.as_tensor(self.masks[i])
            if tuple(mask.shape[-2:]) != tuple(x.shape[-2:]):
                raise ValueError(f"mask for image {i} is {tuple(mask.shape[-2:])} but the image is "
                                 f"{tuple(x.shape[-2:])}; masks must match their image's size")
            self._cache[i] = expand_foreground(mask.reshape(mask.shape[-2:]), self.expand).float()[None]
        return x, y, self._cache[i], True


class ExpandedMasks(Dataset):
    """View of a ``(image, label, foreground, has_mask)`` dataset (e.g. a decoy benchmark, whose
    masks are exact object boxes) with every foreground expanded by ``pixels`` on the fly."""

    def __init__(self, dataset: Dataset, pixels: int):
        self.dataset, self.pixels = dataset, int(pixels)

    def __len__(self) -> int:
        return sized(self.dataset)

    def __getitem__(self, i: int):
        x, y, fg, has = self.dataset[i][:4]
        if self.pixels and has:
            fg = expand_foreground(fg.reshape(fg.shape[-2:]), self.pixels).float()[None]
        return x, y, fg, has


def pick_per_class(labels: torch.Tensor, per_class: int, seed: int, eligible: torch.Tensor | None = None) -> torch.Tensor:
    """A seeded choice of ``per_class`` positions per class among ``eligible`` ones (all of a class
    that has fewer): bool ``[N]``. The one picker of annotated subsets."""
    if per_class < 1:
        raise ValueError(f"annotated_per_class={per_class}; use a positive count (paper: 20) or leave it unset")
    ok = torch.ones(len(labels), dtype=torch.bool) if eligible is None else eligible.bool()
    g = torch.Generator().manual_seed(1000 + seed)
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        idx = torch.nonzero((labels == c) & ok).flatten()
        keep[idx[torch.randperm(len(idx), generator=g)[:per_class]]] = True
    return keep


class LimitedMasks(Dataset):
    """View of a ``(image, label, foreground, has_mask)`` dataset in which only ``per_class``
    annotated images per class (a seeded random choice) keep their mask: the paper's "we only
    annotated N images per category" (Table 2) on a fully annotated benchmark."""

    def __init__(self, dataset: Dataset, per_class: int, seed: int = 0):
        if per_class < 0:
            raise ValueError(f"per_class={per_class}; use a count >= 0 of annotated images per class")
        self.dataset = dataset
        labels = torch.tensor([int(dataset[i][1]) for i in range(sized(dataset))])
        has = torch.tensor([bool(dataset[i][3]) for i in range(sized(dataset))])
        keep = pick_per_class(labels, per_class, seed, eligible=has) if per_class else torch.zeros(len(labels), dtype=torch.bool)
        self.keep = keep
        #: annotated images per class actually kept (fewer than ``per_class`` where a class has fewer)
        self.counts = {int(c): int((keep & (labels == c)).sum()) for c in labels.unique().tolist()}

    def __len__(self) -> int:
        return sized(self.dataset)

    def __getitem__(self, i: int):
        x, y, fg, has = self.dataset[i][:4]
        return x, y, fg, bool(has) and bool(self.keep[i])


class KeepMasks(Dataset):
    """View of a ``(image, label, foreground, has_mask)`` dataset in which only the images at
    ``positions`` keep their mask: the others (e.g. annotated images held out to measure
    background reliance) are seen by the constraints as unannotated."""

    def __init__(self, dataset: Dataset, positions):
        self.dataset, self.positions = dataset, frozenset(int(p) for p in positions)

    def __len__(self) -> int:
        return sized(self.dataset)

    def __getitem__(self, i: int):
        x, y, fg, has = self.dataset[i][:4]
        return x, y, fg, bool(has) and int(i) in self.positions
