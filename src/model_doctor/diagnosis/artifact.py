"""The :class:`Diagnosis` artifact: per-layer class x channel correlation matrices (Eq. 4).

Immutable once built; ``save(dir)`` writes ``diagnosis.safetensors`` (the matrices) and
``diagnosis.json`` (everything else), each atomically; ``Diagnosis.load(dir)`` reads them back
exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_save_safetensors, atomic_write_json, weights_fingerprint

__all__ = ["Diagnosis", "DEFAULT_THETA", "minmax_normalize"]

#: Official code's threshold on the per-class min-max normalised correlation (scripts/grad_calculate.sh).
DEFAULT_THETA = 0.2

_TENSORS = "diagnosis.safetensors"
_META = "diagnosis.json"


def minmax_normalize(matrix: torch.Tensor) -> torch.Tensor:
    """Per-row (per-class) min-max normalisation to [0, 1]; a constant row maps to zeros."""
    lo = matrix.min(dim=1, keepdim=True).values
    hi = matrix.max(dim=1, keepdim=True).values
    rng = hi - lo
    return torch.where(rng > 0, (matrix - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)),
                       torch.zeros_like(matrix))


@dataclass(frozen=True)
class Diagnosis:
    """Class x channel correlation ā^{n,r}_k for each diagnosed layer r.

    Attributes:
        layers: diagnosed layer names, in the order given.
        correlations: ``{layer: float64 [num_classes, channels]}``, the mean over each class's
            selected samples of ``(1/J) Σ_j Σ_{h,w} |∂y_n/∂(m_k+σ_j)|`` (Eq. 4).
        class_names: one name per class index.
        sample_indices: ``{class: [dataset indices]}`` used for that class, highest confidence first.
        settings: T, τ, J, δ, seed, reduce, θ and anything else that produced the numbers.
        model_fingerprint: hash of the weights that were diagnosed.
        version: the library version that wrote it.
    """

    layers: list[str]
    correlations: dict[str, torch.Tensor]
    class_names: list[str]
    sample_indices: dict[int, list[int]]
    settings: dict[str, Any]
    model_fingerprint: str
    version: str
    extra: dict[str, Any] = field(default_factory=dict)

    # -- queries ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> dict[str, int]:
        return {layer: int(self.correlations[layer].shape[1]) for layer in self.layers}

    def counts(self) -> list[int]:
        """Number of samples behind each class's profile."""
        return [len(self.sample_indices.get(c, [])) for c in range(self.num_classes)]

    def correlation(self, layer: str) -> torch.Tensor:
        """``[num_classes, channels]`` float64 matrix ā for ``layer``."""
        if layer not in self.correlations:
            raise ValueError(f"layer {layer!r} was not diagnosed; diagnosed layers: {', '.join(self.layers)}")
        return self.correlations[layer]

    def normalized(self, layer: str) -> torch.Tensor:
        """ā min-max normalised per class (the official code's scale for θ)."""
        return minmax_normalize(self.correlation(layer))

    def relevant_channels(self, layer: str, theta: float | None = None) -> torch.Tensor:
        """Bool ``[num_classes, channels]``: channels whose normalised correlation exceeds θ.

        Default θ comes from ``settings["theta"]`` (0.2, as in the official code). The paper's
        indicator ``1[ā < v]`` of Eq. 5 is ``~relevant_channels(layer, v)``.
        """
        theta = self.settings.get("theta", DEFAULT_THETA) if theta is None else theta
        if not 0.0 <= float(theta) <= 1.0:
            raise ValueError(f"theta={theta}; it is a fraction of each class's min-max range, use 0 <= theta <= 1")
        return self.normalized(layer) > float(theta)

    # -- compatibility ---------------------------------------------------------------------
    def check_compatible(self, model: nn.Module, feature_channels: dict[str, int] | None = None,
                         *, same_weights: bool = False) -> None:
        """Raise ``ValueError`` if ``model`` lacks a diagnosed layer or its channel counts differ.

        Args:
            feature_channels: measured ``{layer: channels}`` of the model's feature maps, if known.
            same_weights: also require the exact weights that were diagnosed.
        """
        names = dict(model.named_modules())
        for layer in self.layers:
            if layer not in names:
                raise ValueError(
                    f"this diagnosis is for layer {layer!r}, which {type(model).__name__} does not have; "
                    "re-run diagnose on this model"
                )
            want = self.channels[layer]
            got = (feature_channels or {}).get(layer, getattr(names[layer], "out_channels", want))
            if got != want:
                raise ValueError(
                    f"layer {layer!r} has {got} channels but the diagnosis has {want}; "
                    "it was made for another model, re-run diagnose on this one"
                )
        if same_weights and weights_fingerprint(model) != self.model_fingerprint:
            raise ValueError("the model's weights differ from the diagnosed ones; re-run diagnose on this checkpoint")

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact into folder ``path`` (created if needed); returns the folder."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(out / _TENSORS, {f"correlation/{k}": v for k, v in self.correlations.items()})
        atomic_write_json(out / _META, {
            "format": "model-doctor-diagnosis/1",
            "layers": self.layers,
            "class_names": self.class_names,
            "sample_indices": {str(k): v for k, v in self.sample_indices.items()},
            "settings": self.settings,
            "model_fingerprint": self.model_fingerprint,
            "version": self.version,
            "extra": self.extra,
        })
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> Diagnosis:
        """Read an artifact written by :meth:`save`."""
        from safetensors.torch import load_file

        folder = Path(path)
        meta_path, tensor_path = folder / _META, folder / _TENSORS
        if not meta_path.is_file() or not tensor_path.is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} holds no diagnosis ({_META} + {_TENSORS}); run `model-doctor diagnose --out {folder}`"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{str(meta_path)!r} is not valid JSON ({exc}); re-run `model-doctor diagnose`") from None
        if not isinstance(meta, dict) or meta.get("format") != "model-doctor-diagnosis/1":
            raise ValueError(f"{str(meta_path)!r} has unknown format {meta.get('format')!r}")
        try:
            tensors = load_file(str(tensor_path))
            missing = [k for k in ("layers", "class_names", "sample_indices", "settings", "model_fingerprint", "version")
                       if k not in meta]
            if missing:
                raise ValueError(f"{str(meta_path)!r} lacks {', '.join(missing)}; re-run `model-doctor diagnose`")
            for layer in meta["layers"]:
                t = tensors.get(f"correlation/{layer}")
                if t is None or t.dim() != 2:
                    raise ValueError(f"{str(tensor_path)!r} holds no 2-D correlation for layer {layer!r} (named in "
                                     f"{str(meta_path)!r}); re-run `model-doctor diagnose`")
                if t.shape[0] != len(meta["class_names"]):
                    raise ValueError(f"{str(meta_path)!r} holds {len(meta['class_names'])} class names but the correlation of "
                                     f"{layer!r} in {str(tensor_path)!r} has {t.shape[0]} rows (one per class); the two "
                                     "files are from different runs — re-run `model-doctor diagnose`")
                if not bool(t.isfinite().all()) or bool((t < 0).any()):
                    raise ValueError(f"{str(tensor_path)!r}: the correlation of {layer!r} holds NaN, infinite or negative "
                                     "values (a diagnosis is a sum of |gradients|); re-run `model-doctor diagnose`")
        except ValueError:
            raise
        except Exception as exc:  # a truncated or foreign safetensors file
            raise ValueError(f"cannot read {str(tensor_path)!r} ({type(exc).__name__}); re-run `model-doctor diagnose`") from None
        return cls(
            layers=list(meta["layers"]),
            correlations={layer: tensors[f"correlation/{layer}"] for layer in meta["layers"]},
            class_names=list(meta["class_names"]),
            sample_indices={int(k): list(v) for k, v in meta["sample_indices"].items()},
            settings=dict(meta["settings"]),
            model_fingerprint=meta["model_fingerprint"],
            version=meta["version"],
            extra=dict(meta.get("extra", {})),
        )
