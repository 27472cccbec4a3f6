"""Reading a model's weights safely: the model.json beside them, ``--init``'s partial load, and the
refusal of weights that hold NaN. Why apart from :mod:`model_doctor.runtime`: every path that
loads a file the user named goes through these few checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .io import load_state_dict

if TYPE_CHECKING:
    from .config import Config

__all__ = ["sidecar", "model_json", "init_from", "check_finite", "shape_hints"]


def shape_hints(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """What a weights file without model.json says about its model: ``in_channels`` from the first
    conv weight, ``num_classes`` from the last linear weight (the classifier). Why: a checkpoint from
    another script has no model.json, and 1 channel / 10 classes would only fail its load; a wrong
    guess here fails that load too, with the error that names the flags."""
    convs = [v for v in state.values() if v.ndim == 4]
    linears = [v for k, v in state.items() if v.ndim == 2 and k.endswith("weight")]
    out = {"in_channels": int(convs[0].shape[1])} if convs else {}
    return out | ({"num_classes": int(linears[-1].shape[0])} if linears else {})


def sidecar(weights: str | None) -> dict[str, Any]:
    if not weights:
        return {}
    side = Path(weights).with_name("model.json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(side)!r} is not valid JSON ({exc}); fix or delete it and pass --model") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(side)!r} must hold a JSON object; fix or delete it and pass --model")
    return data


def model_json(cfg: Config) -> dict[str, Any]:
    """The model.json beside ``--weights`` (or ``--init``, less its classes: the new task's come from
    its data), refusing one that names code to run."""
    if cfg.model.init and (cfg.model.weights or cfg.model.pretrained):
        raise ValueError(f"--init {cfg.model.init!r} starts a new model from pretrained weights, so it cannot go with "
                         f"{'--weights' if cfg.model.weights else '--pretrained'}; pass one of them")
    source = cfg.model.weights or cfg.model.init
    side = sidecar(source)
    if cfg.model.init:
        side = {k: v for k, v in side.items() if k not in ("num_classes", "classes")}
    if not cfg.model.name and str(side.get("model", "")).startswith("file:"):
        # a weights folder must never make us run code: file: models only from the user's own --model/config
        raise ValueError(f"{str(Path(source or '').with_name('model.json'))!r} names the code model "
                         f"{side['model']!r}; a model.json beside weights may not run code — pass --model "
                         f"{side['model']} yourself if you trust that file")
    return side


def init_from(model: nn.Module, path: str, name: str) -> dict[str, Any]:
    """``--init``: the file's tensors where name and shape fit; what was taken and what starts fresh."""
    from .models import load_matching

    if not Path(path).is_file():
        raise ValueError(f"--init {str(path)!r} is not a file; pass your pretrained weights (.safetensors or a "
                         "state-dict .pt)")
    taken, fresh = load_matching(model, load_state_dict(path))
    if not taken:
        raise ValueError(f"--init {path!r}: none of its tensors fits model {name!r} by name and shape; pass the --model "
                         "and --in-channels the file was trained with")
    return {"file": str(path), "taken": len(taken), "fresh": fresh}


def check_finite(model: nn.Module, source: str) -> None:
    """Weights with NaN or infinite values make every later figure meaningless: refuse them, naming the file."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        origin = f"the weights in {source!r}" if not source.startswith("file:") else f"the model {source!r} returned"
        raise ValueError(f"{origin} hold NaN or infinite values in {len(bad)} of {len(model.state_dict())} tensors "
                         f"(first: {bad[0]}); the training that wrote them diverged — retrain it (a lower --lr) or "
                         "pass other weights")
