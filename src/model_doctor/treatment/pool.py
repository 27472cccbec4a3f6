"""The annotated training images, in memory: what the pool-based space methods draw from each
step and what the reliance measures swap backgrounds between."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..data.base import sized

__all__ = ["AnnotatedPool", "composite", "match_colour", "transfer_colour", "silhouette"]


class AnnotatedPool:
    """The annotated images of a ``(image, label, foreground, has_mask)`` dataset, in memory.

    Args:
        images: ``[N, C, H, W]``; labels: ``[N]``; foreground: ``[N, 1, H, W]`` in [0, 1].
        indices: the dataset index of each (for reporting).

    Raises:
        ValueError: no images, or shapes that disagree.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, foreground: torch.Tensor,
                 indices: Sequence[int] | None = None, coarse: torch.Tensor | None = None,
                 refined: torch.Tensor | None = None, reasons: Sequence[str] | None = None):
        if len(images) == 0:
            raise ValueError("no annotated images: the pool needs at least one image with a foreground mask; "
                             "check that --masks pair with the training images")
        if foreground.dim() == 3:
            foreground = foreground[:, None]
        if len(labels) != len(images) or tuple(foreground.shape[-2:]) != tuple(images.shape[-2:]) \
                or len(foreground) != len(images):
            raise ValueError(f"pool shapes disagree: images {tuple(images.shape)}, labels {tuple(labels.shape)}, "
                             f"foreground {tuple(foreground.shape)}")
        self.images = images if images.is_floating_point() else images.float()
        self.labels = labels.long()
        self.foreground = foreground.to(self.images.dtype).clamp(0, 1)
        self.indices = list(indices) if indices is not None else list(range(len(images)))
        #: the annotation as given (before :meth:`refine`), for figures
        self.coarse = self.foreground if coarse is None else coarse.to(self.images.dtype)
        #: per image: True where :meth:`refine` estimated the object's pixels, False where the
        #: annotation is used as it is (``reasons`` says why)
        self.refined = torch.zeros(len(labels), dtype=torch.bool) if refined is None else refined.bool()
        self.reasons = list(reasons) if reasons is not None else ["not refined"] * len(labels)

    def refine(self, method: str = "grabcut", seed: int = 0, erode_px: int = 0) -> AnnotatedPool:
        """A pool whose foregrounds are the object's estimated pixels inside each annotation
        (:func:`model_doctor.data.refine.refine_foreground`, once per image); ``coarse`` keeps the annotation."""
        from ..data.refine import refine_foreground

        out = [refine_foreground(x, c[0], method, seed=seed, erode_px=erode_px) for x, c in zip(self.images, self.coarse)]
        fg = torch.stack([r.mask for r in out])[:, None].to(self.images.dtype)
        return AnnotatedPool(self.images, self.labels, fg, self.indices, self.coarse,
                             torch.tensor([r.ok for r in out], dtype=torch.bool), [r.reason for r in out])

    def refine_report(self) -> dict[str, Any]:
        """How many foregrounds were refined, and why the others were not (counts per reason)."""
        why: dict[str, int] = {}
        for ok, r in zip(self.refined.tolist(), self.reasons):
            if not ok:
                why[r] = why.get(r, 0) + 1
        return {"images": len(self), "refined": int(self.refined.sum()), "not_refined": why}

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_dataset(cls, dataset: Dataset, indices: Sequence[int] | None = None) -> AnnotatedPool:
        """Every item with ``has_mask`` (or only ``indices``) of a masked dataset."""
        xs, ys, fgs, keep = [], [], [], []
        for i in (range(sized(dataset)) if indices is None else indices):
            item = dataset[i]
            if len(item) < 4:
                raise ValueError("the dataset has no masks; use a MaskedDataset (or a decoy-* dataset)")
            if bool(item[3]):
                xs.append(torch.as_tensor(item[0]))
                ys.append(int(item[1]))
                fgs.append(torch.as_tensor(item[2]).float().reshape(1, *item[0].shape[-2:]))
                keep.append(int(i))
        if not xs:
            raise ValueError("no annotated images: the pool needs at least one image with a foreground mask; "
                             "check that --masks pair with the training images")
        return cls(torch.stack(xs), torch.tensor(ys), torch.stack(fgs), keep)

    def split_holdout(self, fraction: float, seed: int = 0) -> tuple[AnnotatedPool, AnnotatedPool | None]:
        """(train pool, held-out pool): per class ``round(fraction · n)`` images are held out, at least
        one where a class has two or more and ``fraction > 0``; the rest train."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"holdout fraction={fraction}; use 0 <= fraction < 1 (e.g. 0.25)")
        g = torch.Generator().manual_seed(seed)
        held = torch.zeros(len(self), dtype=torch.bool)
        if fraction > 0:
            for c in self.labels.unique().tolist():
                idx = torch.nonzero(self.labels == c).flatten()
                idx = idx[torch.randperm(len(idx), generator=g)]
                k = max(1, int(round(fraction * len(idx)))) if len(idx) >= 2 else 0
                held[idx[:k]] = True
        if not held.any():
            return self, None
        return self._take(~held), self._take(held)

    def _take(self, sel: torch.Tensor) -> AnnotatedPool:
        idx = torch.nonzero(sel).flatten().tolist()
        return AnnotatedPool(self.images[idx], self.labels[idx], self.foreground[idx], [self.indices[i] for i in idx],
                             self.coarse[idx], self.refined[idx], [self.reasons[i] for i in idx])

    def counts(self) -> dict[int, int]:
        return {int(c): int((self.labels == c).sum()) for c in self.labels.unique().tolist()}

    def draw(self, k: int, seed: int, step: int) -> torch.Tensor:
        """``k`` pool positions (with replacement when ``k`` > pool size), a function of (seed, step)."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        if k <= len(self):
            return torch.randperm(len(self), generator=g)[:k]
        return torch.randint(0, len(self), (k,), generator=g)

    def partners(self, a: torch.Tensor, seed: int, step: int, any_class: bool = False) -> torch.Tensor:
        """For each position in ``a``, another pool image: of a different class where the pool has
        one, or (``any_class``) any other image, so that the partner's class is independent of a's."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
        out = torch.empty_like(a)
        idx = torch.arange(len(self))
        for j, i in enumerate(a.tolist()):
            other = torch.nonzero(idx != i if any_class else self.labels != self.labels[i]).flatten()
            if len(other) == 0:
                other = torch.tensor([p for p in range(len(self)) if p != i] or [i])
            out[j] = other[torch.randint(0, len(other), (1,), generator=g)]
        return out


def composite(x_fg: torch.Tensor, fg: torch.Tensor, x_bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """``x_fg``'s foreground pasted on ``x_bg``'s background: ``fg ⊙ x_fg + (1 − fg) ⊙ b`` where
    ``b`` is ``x_bg`` with its own foreground replaced by the per-channel mean of its background
    (so the background image's object does not show through). Shapes ``[B, C, H, W]`` / ``[B, 1, H, W]``."""
    bg_w = 1.0 - fg_bg
    fill = (x_bg * bg_w).sum((2, 3), keepdim=True) / bg_w.sum((2, 3), keepdim=True).clamp(min=1e-6)
    b = bg_w * x_bg + fg_bg * fill
    return fg * x_fg + (1.0 - fg) * b


def match_colour(x: torch.Tensor, fg: torch.Tensor, x_ref: torch.Tensor, fg_ref: torch.Tensor) -> torch.Tensor:
    """``x`` with the per-channel mean and standard deviation of its foreground ``fg`` set to those
    of ``x_ref`` over ``fg_ref`` (soft masks as weights). Why: pasted this way, a's object keeps
    its structure but takes b's colour statistics, so a cue that covers the whole image (a colour
    cast, a white balance, a stain) moves with b's background instead of riding on a's object.
    Shapes ``[B, C, H, W]`` / ``[B, 1, H, W]``."""
    def stats(v: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = m.sum((2, 3), keepdim=True).clamp(min=1e-6)
        mean = (v * m).sum((2, 3), keepdim=True) / w
        return mean, ((((v - mean) ** 2) * m).sum((2, 3), keepdim=True) / w).clamp(min=1e-12).sqrt()

    (ma, sa), (mb, sb) = stats(x, fg), stats(x_ref, fg_ref)
    return (x - ma) / sa * sb + mb


def silhouette(x: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """``x`` with its foreground ``fg`` filled flat with the foreground's own per-channel mean (soft
    mask as weights): ``fg ⊙ μ + (1 − fg) ⊙ x``. Why: every other paste moves whatever lies on the
    object's pixels with it (stripes or noise over the whole image, a watermark); filled flat, the
    object keeps its outline and its mean colour and loses everything drawn inside it, so a model
    that reads the object's shape keeps its answer and one that reads what lies over the object
    loses it. Shapes ``[B, C, H, W]`` / ``[B, 1, H, W]``."""
    mean = (x * fg).sum((2, 3), keepdim=True) / fg.sum((2, 3), keepdim=True).clamp(min=1e-6)
    return fg * mean + (1.0 - fg) * x


def transfer_colour(x: torch.Tensor, fg: torch.Tensor, x_ref: torch.Tensor, fg_ref: torch.Tensor,
                    eps: float = 1e-4) -> torch.Tensor:
    """``x`` with the colour mean and covariance of its foreground ``fg`` set to those of ``x_ref``
    over ``fg_ref``: ``Σ_b^½ Σ_a^−½ (x − μ_a) + μ_b`` (symmetric square roots, ``eps`` on the
    diagonal; soft masks as weights). Why beside :func:`match_colour`: per-channel statistics keep
    how the channels move together, so a cue that is a colour *direction* over the whole image
    (noise along a class-coded hue) keeps its strength after per-channel matching; here a's
    colours take b's covariance, so along a's direction only what b has there is left. Grey
    images (one channel) are what :func:`match_colour` gives. Shapes as there."""
    def stats(v: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = m.flatten(2)                                                   # [B, 1, P]
        flat = v.flatten(2).double()                                       # [B, C, P]
        total = w.sum(-1, keepdim=True).clamp(min=1e-6).double()
        mean = (flat * w).sum(-1, keepdim=True) / total                     # [B, C, 1]
        dev = flat - mean
        cov = (dev * w) @ dev.transpose(1, 2) / total                      # [B, C, C]
        return mean, cov + eps * torch.eye(v.shape[1], dtype=torch.float64)

    def roots(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        val, vec = torch.linalg.eigh(cov)
        val = val.clamp(min=eps)
        return (vec * val.sqrt()[:, None]) @ vec.transpose(1, 2), (vec * val.rsqrt()[:, None]) @ vec.transpose(1, 2)

    (ma, ca), (mb, cb) = stats(x, fg), stats(x_ref, fg_ref)
    _, inv_a = roots(ca)
    root_b, _ = roots(cb)
    out = root_b @ inv_a @ (x.flatten(2).double() - ma) + mb
    return out.view_as(x).to(x.dtype)

