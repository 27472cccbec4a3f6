"""Per-sample examination (paper Fig. 2b and "diagnosing the wrong prediction samples").

For each image and layer: the channel-gradient vector of the predicted class (the same Eq. 4
quantity the diagnosis averages, with the diagnosis's own J, δ and reduce) is compared with that
class's profile ā^{n,r}.

Deviation score (documented in docs/diagnosis.md): with ``p = g / Σg`` the sample's share of
gradient mass per channel and ``q = ā^n / Σā^n`` the class's, ``deviation = ½ Σ_k |p_k - q_k|``,
the total-variation distance: 0 when the sample leans on channels exactly as its predicted class
usually does, 1 when it uses none of them. The score over several layers is their mean. The most
deviating channels are those with the largest ``p_k - q_k`` (used by the sample, not by the class).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import IndexedSubset, as_dataset, check_sample, loader_for, sized
from ..gradients import feature_gradients
from ..hooks import preserved_state
from ..io import atomic_save_safetensors, atomic_write_json
from ..precision import autocast, check_precision
from ..progress import progress
from ..split import LayerSplit
from .artifact import Diagnosis

__all__ = ["Examination", "examine", "deviation_scores"]


def deviation_scores(channel: torch.Tensor, profile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Total-variation distance between per-sample and class channel distributions.

    Args:
        channel: ``[B, K]`` sample channel-gradient vectors (non-negative).
        profile: ``[B, K]`` the predicted class's ā row for each sample.

    Returns:
        ``(score [B], p - q [B, K])``.
    """
    eps = torch.finfo(torch.float64).tiny
    p = channel.double() / channel.double().sum(1, keepdim=True).clamp(min=eps)
    q = profile.double() / profile.double().sum(1, keepdim=True).clamp(min=eps)
    diff = p - q
    return 0.5 * diff.abs().sum(1), diff


@dataclass
class Examination:
    """Per-sample results; row ``i`` belongs to ``indices[i]`` of the examined dataset."""

    indices: torch.Tensor            # [B] dataset indices
    labels: torch.Tensor             # [B] true labels
    predictions: torch.Tensor        # [B] predicted classes (the examined target)
    confidence: torch.Tensor         # [B] max softmax probability
    deviation: torch.Tensor          # [B] mean over layers of the per-layer score
    layer_deviation: dict[str, torch.Tensor] = field(default_factory=dict)   # {layer: [B]}
    top_channels: dict[str, torch.Tensor] = field(default_factory=dict)      # {layer: [B, top_k]}
    derivative_maps: dict[str, torch.Tensor] = field(default_factory=dict)   # {layer: [B, H, W] at image size}
    images: torch.Tensor | None = None  # [B, C, H, W] kept when small enough, for the report's pictures

    @property
    def misclassified(self) -> torch.Tensor:
        return self.predictions != self.labels

    def save(self, path) -> None:
        """``examination.safetensors`` (all tensors) + ``examination.json`` (ranked summary)."""
        from pathlib import Path

        out = Path(path)
        tensors = {"indices": self.indices, "labels": self.labels, "predictions": self.predictions,
                   "confidence": self.confidence, "deviation": self.deviation}
        for layer in self.layer_deviation:
            tensors[f"layer_deviation/{layer}"] = self.layer_deviation[layer]
            tensors[f"top_channels/{layer}"] = self.top_channels[layer]
            tensors[f"derivative_maps/{layer}"] = self.derivative_maps[layer].float()
        if self.images is not None:  # a few pictures for the report: most/least confident, worst errors
            conf_order = torch.argsort(self.confidence, descending=True)
            wrong = torch.nonzero(self.misclassified).flatten()
            wrong = wrong[torch.argsort(self.deviation[wrong], descending=True)]
            pick = {"high": conf_order[:8], "low": conf_order.flip(0)[:8], "wrong": wrong[:8]}
            for key, rows in pick.items():
                tensors[f"highlight/{key}/rows"] = rows
                tensors[f"highlight/{key}/images"] = self.images[rows].float()
                for layer, maps in self.derivative_maps.items():
                    tensors[f"highlight/{key}/maps/{layer}"] = maps[rows].float()
        atomic_save_safetensors(out / "examination.safetensors", tensors)
        order = torch.argsort(self.deviation, descending=True).tolist()
        atomic_write_json(out / "examination.json", {
            "format": "model-doctor-examination/1",
            "layers": list(self.layer_deviation),
            "num_samples": len(order),
            "num_misclassified": int(self.misclassified.sum()),
            "ranked": [{
                "index": int(self.indices[i]), "label": int(self.labels[i]), "prediction": int(self.predictions[i]),
                "confidence": float(self.confidence[i]), "deviation": float(self.deviation[i]),
                "top_channels": {k: v[i].tolist() for k, v in self.top_channels.items()},
            } for i in order],
        })


def examine(model: nn.Module, diagnosis: Diagnosis, data: Dataset | DataLoader, *,
            indices: list[int] | None = None, batch_size: int | None = None, top_k: int = 5,
            derivative_maps: bool = True, num_workers: int = 0, precision: str = "fp32") -> Examination:
    """Examine samples of ``data`` (all, or ``indices``) against ``diagnosis``.

    Uses the diagnosis's layers, J, δ, seed and reduce. ``precision="bf16"``: bfloat16 autocast. The derivative map is the summed
    ``Σ_k |∂y_n/∂m_k|`` (mean over draws) bilinearly upsampled to the image size.

    Raises:
        ValueError: the diagnosis does not fit the model (layers, channels), bad data.
    """
    ds, loader_bs = as_dataset(data)
    batch_size = batch_size or loader_bs or 64
    if sized(ds) == 0:
        raise ValueError("nothing to examine: the dataset is empty")
    check_precision(precision)
    check_sample(ds[0], diagnosis.num_classes)
    diagnosis.check_compatible(model)
    s = diagnosis.settings
    p = next(model.parameters())
    device, dtype = p.device, p.dtype
    subset = IndexedSubset(ds, indices)
    kept_lists: list[list[torch.Tensor]] = [[] for _ in range(5)]
    all_idx, all_lab, all_pred, all_conf, all_img = kept_lists
    keep_images = len(subset) * ds[0][0].numel() <= 20_000_000
    per_layer: list[dict[str, list[torch.Tensor]]] = [{n: [] for n in diagnosis.layers} for _ in range(3)]
    layer_dev, tops, maps = per_layer
    with preserved_state(model), autocast(device, precision):
        splits = [LayerSplit(model, n) for n in diagnosis.layers]
        for x, y, idx in progress(loader_for(subset, batch_size, num_workers=num_workers, device=device), desc="examine"):
            x = x.to(device, dtype, non_blocking=True)
            with torch.no_grad():
                prob = torch.softmax(model(x).double(), 1).cpu()
            conf, pred = prob.max(1)
            for kept, value in ((all_idx, idx), (all_lab, y), (all_pred, pred), (all_conf, conf)):
                kept.append(value)
            if keep_images:
                all_img.append(x.detach().cpu().half())
            for li, (name, split) in enumerate(zip(diagnosis.layers, splits)):
                res = feature_gradients(split, x, pred.to(device), draws=int(s["noise_draws"]),
                                        delta=float(s["noise"]), seed=int(s["seed"]), layer_index=li,
                                        sample_keys=idx, reduce=s["reduce"])
                if res.channel.shape[1] != diagnosis.channels[name]:
                    raise ValueError(f"layer {name!r} has {res.channel.shape[1]} channels, the diagnosis {diagnosis.channels[name]}; re-run diagnose")
                profile = diagnosis.correlation(name)[pred]
                score, diff = deviation_scores(res.channel.cpu(), profile)
                layer_dev[name].append(score)
                tops[name].append(torch.topk(diff, min(top_k, diff.shape[1]), dim=1).indices)
                if derivative_maps and res.spatial is not None and res.spatial.dim() == 3:
                    up = F.interpolate(res.spatial[:, None].double(), size=x.shape[-2:], mode="bilinear", align_corners=False)
                    maps[name].append(up[:, 0].cpu())
    ld = {n: torch.cat(v) for n, v in layer_dev.items()}
    return Examination(
        indices=torch.cat(all_idx).long(), labels=torch.cat(all_lab).long(), predictions=torch.cat(all_pred).long(),
        confidence=torch.cat(all_conf), deviation=torch.stack(list(ld.values())).mean(0), layer_deviation=ld,
        top_channels={n: torch.cat(v) for n, v in tops.items()},
        derivative_maps={n: torch.cat(v) for n, v in maps.items() if v},
        images=torch.cat(all_img) if all_img else None,
    )
