"""Which pixels inside a coarse annotation are background: boxes are not masks.

A box (or a coarse polygon) holds the object *and* whatever background shows between its
pixels. Pasting the whole box as "foreground" carries a cue that sits in that background (a
texture, a colour, a watermark) along with the object, and a background swap that keeps the box
cannot see such a cue. :func:`refine_foreground` estimates the object's own pixels with OpenCV's
GrabCut (Rother et al. 2004): everything outside the annotation is definite background, everything
inside probable foreground, and colour models of both decide each pixel inside.

It runs once per annotated image (at model-input resolution, in the pool), never per step. Where
it cannot work it keeps the annotation as it is and says why (:class:`Refined`), so that the
reliance measure and the verdict can report that part of the image is invisible to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["REFINE_METHODS", "Refined", "refine_foreground", "erode", "to_uint8", "is_box"]

#: ``--refine`` choices: ``grabcut`` (default) or ``none`` (use the annotation as the foreground)
REFINE_METHODS = ("grabcut", "none")
#: an annotation covering more than this share of the image leaves no background to model
MAX_COVER = 0.98
#: a refinement keeping less than this share of the annotation is taken as a failure
MIN_KEEP = 0.05


@dataclass(frozen=True)
class Refined:
    """The foreground ``[H, W]`` bool and whether refinement produced it (``ok``); ``reason`` says
    why not (the annotation is then used as it is)."""

    mask: torch.Tensor
    ok: bool
    reason: str = ""


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ``[C, H, W]`` model-input tensor (any normalisation) as ``[H, W, 3]`` uint8, min-max per image."""
    x = image.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    arr = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] != 3:
        arr = np.repeat(arr.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
    return np.ascontiguousarray(arr)


def is_box(mask: torch.Tensor) -> bool:
    """True when a non-empty ``[H, W]`` mask is exactly the rectangle it spans (a box annotation)."""
    m = mask.reshape(mask.shape[-2:]) != 0
    if not m.any():
        return False
    ys, xs = torch.nonzero(m, as_tuple=True)
    return int(m.sum()) == (int(ys.max()) - int(ys.min()) + 1) * (int(xs.max()) - int(xs.min()) + 1)


def erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """``mask`` (``[H, W]`` bool) shrunk by ``pixels`` (a square structuring element), or unchanged when
    that would keep under :data:`MIN_KEEP` of it. Why: an object's outermost pixels blend with the
    background it was photographed on (anti-aliasing, blur), so a colour cue shows in them too."""
    if pixels <= 0 or not mask.any():
        return mask
    import cv2

    k = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    out = torch.from_numpy(cv2.erode(mask.numpy().astype(np.uint8), k, borderType=cv2.BORDER_REPLICATE) != 0)
    return out if int(out.sum()) >= MIN_KEEP * int(mask.sum()) else mask


def refine_foreground(image: torch.Tensor, coarse: torch.Tensor, method: str = "grabcut",
                      iterations: int = 5, seed: int = 0, erode_px: int = 0) -> Refined:
    """The object's pixels inside ``coarse`` (``[H, W]``, non-zero = annotated) of ``image`` (``[C, H, W]``),
    eroded by ``erode_px`` (:func:`erode`; applied with either method).

    Raises:
        ValueError: an unknown ``method``.
    """
    if method not in REFINE_METHODS:
        raise ValueError(f"refine={method!r}; use one of {', '.join(REFINE_METHODS)}")
    fg = coarse.reshape(coarse.shape[-2:]) != 0
    if method == "none":
        return Refined(erode(fg, erode_px), False, "not refined (--refine none)")
    area = int(fg.sum())
    if area == 0:
        return Refined(fg, False, "empty annotation")
    if area > MAX_COVER * fg.numel():
        return Refined(fg, False, "the annotation covers the whole image: no background to model")
    import cv2

    cv2.setRNGSeed(seed)
    gc = np.where(fg.numpy(), cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(to_uint8(image), gc, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]  # rect is unused with INIT_WITH_MASK; the stubs omit None
    except cv2.error:
        return Refined(fg, False, "GrabCut raised an error")
    out = torch.from_numpy((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)) & fg
    if int(out.sum()) < MIN_KEEP * area:   # a category, not a count: reports group images by reason
        return Refined(erode(fg, erode_px), False, f"GrabCut kept under {MIN_KEEP:.0%} of the annotation")
    return Refined(erode(out, erode_px), True)
