"""Analyses that produce artifacts for the report: the Discovery-2 robustness curves (paper
Fig. 3) and before/after derivative maps with Grad-CAM (paper Fig. 5)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .data.base import sized
from .hooks import preserved_state
from .noise import batch_noise
from .split import LayerSplit

__all__ = ["robustness_curves", "derivative_and_gradcam"]


def _batch(dataset: Dataset, indices: list[int], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in indices]
    return torch.stack([it[0] for it in items]).to(device, dtype), torch.tensor([int(it[1]) for it in items], device=device)


def robustness_curves(model: nn.Module, dataset: Dataset, layer: str, *, samples: int = 100, eps: float = 0.1,
                      ranges: list[float] | None = None, draws: int = 10, seed: int = 0) -> dict[str, Any]:
    """Accuracy (w.r.t. the true label) of normal samples and their FGSM adversarial versions
    (Goodfellow et al. 2015) when uniform noise of growing range is added at ``layer``
    (``draws`` draws each), as in the paper's Discovery 2.

    Samples: the first ``samples`` test images the model classifies correctly whose FGSM version
    (step ``eps`` in input units) it misclassifies.
    """
    ranges = ranges if ranges is not None else [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]
    p = next(model.parameters())
    device, dtype = p.device, p.dtype
    picked_x, picked_adv, picked_y = [], [], []
    with preserved_state(model, freeze_params=True):
        for start in range(0, sized(dataset), 128):
            idx = list(range(start, min(start + 128, sized(dataset))))
            x, y = _batch(dataset, idx, device, dtype)
            x.requires_grad_(True)
            logits = model(x)
            (gx,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
            adv = (x + eps * gx.sign()).detach()
            with torch.no_grad():
                ok = (logits.argmax(1) == y) & (model(adv).argmax(1) != y)
            picked_x.append(x.detach()[ok])
            picked_adv.append(adv[ok])
            picked_y.append(y[ok])
            if sum(len(t) for t in picked_y) >= samples:
                break
        xs, advs, ys = (torch.cat(t)[:samples] for t in (picked_x, picked_adv, picked_y))
        if len(ys) == 0:
            raise ValueError(f"no test sample is correct and flipped by FGSM with eps={eps}; raise --eps")
        split = LayerSplit(model, layer)
        curves: dict[str, list[float]] = {"normal": [], "adversarial": [], "adversarial_same_wrong": []}
        keys = list(range(len(ys)))
        with torch.no_grad():
            adv_pred = model(advs).argmax(1)
            for r in ranges:
                for name, inp in (("normal", xs), ("adversarial", advs)):
                    m, extras = split.prefix(inp)
                    noise = batch_noise(seed, 0, keys, draws, tuple(m.shape[1:]), r, m.dtype, m.device)
                    z = (noise.view(len(ys), draws, *m.shape[1:]) + m[:, None]).view(len(ys) * draws, *m.shape[1:])
                    pred = split.tail(z, extras, draws).argmax(1).view(len(ys), draws)
                    curves[name].append(float((pred == ys[:, None]).double().mean()))
                    if name == "adversarial":
                        curves["adversarial_same_wrong"].append(float((pred == adv_pred[:, None]).double().mean()))
    return {"layer": layer, "eps": eps, "draws": draws, "samples": int(len(ys)), "ranges": ranges, **curves}


def derivative_and_gradcam(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the predicted class: ``Σ_k |∂y/∂m_k|`` and Grad-CAM (Selvaraju et al. 2017:
    ``relu(Σ_k mean_hw(∂y/∂m_k) · m_k)``), both upsampled to the image and scaled to [0, 1] per
    image, from one forward/backward through the same split. Returns ``(deriv, cam, pred)``."""
    with preserved_state(model):
        split = LayerSplit(model, layer)
        with torch.no_grad():
            m, extras = split.prefix(x)
        z = m.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = split.tail(z, extras, 1)
            pred = logits.argmax(1)
            (g,) = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), z)
    deriv = g.abs().sum(1, keepdim=True)
    cam = torch.relu((g.mean((2, 3), keepdim=True) * z.detach()).sum(1, keepdim=True))

    def up(t: torch.Tensor) -> torch.Tensor:
        t = F.interpolate(t.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        lo = t.flatten(1).min(1).values[:, None, None]
        hi = t.flatten(1).max(1).values[:, None, None]
        return (t - lo) / (hi - lo).clamp(min=1e-12)

    return up(deriv), up(cam), pred.detach()
