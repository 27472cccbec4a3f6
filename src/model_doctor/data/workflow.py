"""The paper's annotation workflow: pick low-confidence training images per class, annotate them
in LabelMe, feed the masks back into ``treat`` (paper: "we only annotated 20 low-confidence
images for each category")."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..io import atomic_write_bytes, atomic_write_text
from ..rundir import annotated
from .annotations import MaskFn
from .base import sized
from .folder import MaskedImageFolder
from .masks import MaskedDataset

__all__ = ["export_low_confidence", "with_masks"]


def _to_png(x: torch.Tensor) -> Image.Image:
    """A normalised ``[C,H,W]`` tensor back to a viewable 8-bit image (min-max per image)."""
    x = x.detach().float()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    arr = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def export_low_confidence(dataset: Dataset, labels: torch.Tensor, probs: torch.Tensor, per_class: int,
                          out: str | Path, class_names: list[str]) -> list[dict]:
    """Copy the ``per_class`` training images with the lowest true-class probability per class to
    ``out/<class index>/...`` with an empty LabelMe JSON beside each, plus ``index.csv``.

    Images of an ImageFolder keep their relative path; in-memory datasets are written as
    ``<class index>/<dataset index>.png``. A LabelMe JSON that already holds shapes (the user's
    annotation) is never overwritten. Returns the index rows (``kept``: such a JSON was kept).
    """
    out = Path(out)
    conf = probs[torch.arange(len(labels)), labels]
    pred = probs.argmax(1)
    rows = []
    for c in range(len(class_names)):
        idx = torch.nonzero(labels == c).flatten()
        order = idx[torch.argsort(conf[idx], stable=True)][:per_class].tolist()
        for i in order:
            if isinstance(dataset, MaskedImageFolder):
                rel = dataset.samples[i][0]
                dst = out / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dataset.path(i), dst)
                with Image.open(dst) as im:
                    w, h = im.size
            else:
                rel = f"{c}/{i:06d}.png"
                img = _to_png(dataset[i][0])
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(out / rel, buf.getvalue())
                w, h = img.size
            stub = {"version": "5.0.1", "flags": {}, "shapes": [], "imagePath": Path(rel).name, "imageData": None,
                    "imageHeight": h, "imageWidth": w}
            kept = annotated((out / rel).with_suffix(".json"))  # the user's shapes are never overwritten
            if not kept:
                atomic_write_text((out / rel).with_suffix(".json"), json.dumps(stub, indent=2))
            rows.append({"kept": kept, "file": rel, "dataset_index": i, "label": c, "class": class_names[c],
                         "true_class_probability": round(float(conf[i]), 6), "prediction": int(pred[i])})
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[k for k in rows[0] if k != "kept"] if rows else ["file"],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "index.csv", table.getvalue())
    return rows


def with_masks(dataset: Dataset, masks: Mapping[str, MaskFn], expand: int) -> Dataset:
    """Pair ``masks`` (keyed by relative path without extension) with ``dataset``'s images.

    ImageFolder trees pair by their own relative paths; in-memory datasets by the
    ``<class>/<dataset index>`` names :func:`export_low_confidence` writes.

    Raises:
        ValueError: a key that names no image (with the key), a mask of the wrong size.
    """
    if isinstance(dataset, MaskedImageFolder):
        return MaskedImageFolder(dataset.root, masks, image_size=dataset.image_size, in_channels=dataset.in_channels,
                                 expand=expand, on_error=dataset.on_error)
    by_index: dict[int, torch.Tensor] = {}
    n = sized(dataset)
    for key, fn in masks.items():
        name = key.rsplit("/", 1)[-1]
        if not name.isdigit() or int(name) >= n:
            raise ValueError(f"mask {key!r} names no image of this dataset; in-memory datasets pair masks by "
                             "'<class>/<dataset index>' (as `model-doctor select` writes them)")
        x = dataset[int(name)][0]
        by_index[int(name)] = fn(int(x.shape[-2]), int(x.shape[-1]))
    return MaskedDataset(dataset, by_index, expand=expand)
