"""What a job saves for the report's figures (tensors only; the report draws them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_save_safetensors

__all__ = ["save_annotations", "save_treatment_maps"]


def save_annotations(out: Path, pools: Any, count: int = 10) -> None:
    """Up to ``count`` annotated images (report set first) with their annotation and the refined
    foreground, for the report: ``annotations.safetensors``."""
    parts = [p for p in (pools.report, pools.select, pools.train) if p is not None]
    take = [(p, i) for p in parts for i in range(len(p))][:count]
    atomic_save_safetensors(out / "annotations.safetensors", {
        "images": torch.stack([p.images[i] for p, i in take]).float().cpu(),
        "coarse": torch.stack([p.coarse[i, 0] for p, i in take]).float().cpu(),
        "refined": torch.stack([p.foreground[i, 0] for p, i in take]).float().cpu(),
        "refined_ok": torch.tensor([bool(p.refined[i]) for p, i in take])}, metadata={"refine": pools.refine})


def save_treatment_maps(out: Path, original: nn.Module, models: dict[str, nn.Module], test: Any, layer: str,
                        count: int = 8) -> None:
    """Derivative maps and Grad-CAM of the same test images for the original and ``models``
    (e.g. treated and control of the first seed), for the report's Fig. 5 view: ``maps.safetensors``."""
    from ..analysis import derivative_and_gradcam

    p = next(original.parameters())
    n = min(count, len(test))
    x = torch.stack([test[i][0] for i in range(n)]).to(p.device, p.dtype)
    y = torch.tensor([int(test[i][1]) for i in range(n)])
    tensors = {"images": x.cpu().float(), "labels": y}
    for name, model in {"original": original, **models}.items():
        d, c, pred = derivative_and_gradcam(model, layer, x)
        tensors.update({f"{name}/derivative": d.cpu(), f"{name}/gradcam": c.cpu(), f"{name}/pred": pred.cpu()})
    atomic_save_safetensors(out / "maps.safetensors", tensors, metadata={"layer": layer})
