"""``NAME`` | ``torchvision:NAME`` | ``timm:NAME`` | ``file:path.py:factory`` -> ``nn.Module``, and
ImageNet weights for the registered names that have them (each entry's ``pretrained``)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import torch
from torch import nn

from .paper import set_in_channels, timm_model
from .registry import _REGISTRY, model_names

__all__ = ["build_model", "load_pretrained", "load_matching", "SMALL_IMAGE_THRESHOLD"]

#: Inputs smaller than this (px) get each architecture's small-image variant by default.
SMALL_IMAGE_THRESHOLD = 64


def _torchvision(name: str, in_channels: int, num_classes: int) -> nn.Module:
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError:
        raise ValueError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()") from None
    return set_in_channels(model, in_channels)


def _from_file(spec: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    path_text, _, factory_name = spec.rpartition(":")
    if not path_text or not factory_name:
        raise ValueError(f"bad model spec 'file:{spec}'; use file:path/to/model.py:factory_function")
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"model file {path_text!r} does not exist; use file:path/to/model.py:factory_function")
    mod_spec = importlib.util.spec_from_file_location(f"model_doctor_user_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ValueError(f"cannot import {path_text!r} as a Python module; name a .py file")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"{path_text!r} has no callable {factory_name!r}; name a function that returns an nn.Module")
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in {"in_channels": in_channels, "num_classes": num_classes,
                                 "image_size": image_size}.items() if k in params}
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{factory_name}() returned {type(model).__name__}, not an nn.Module")
    return model


def load_pretrained(model: nn.Module, spec: str) -> nn.Module:
    """Copy torchvision/timm ImageNet weights into ``model`` where shapes match (the stem and the
    classifier are skipped when they were changed for ``in_channels``/``num_classes``/small images).

    Raises:
        ValueError: no pretrained weights for this spec, or they cannot be fetched (offline).
    """
    source = spec if spec.startswith(("timm:", "torchvision:")) else (
        _REGISTRY[spec].pretrained if spec in _REGISTRY else "")
    if not source:
        raise ValueError(f"no pretrained weights known for {spec!r}; pass --weights with your own checkpoint")
    name = source.split(":", 1)[1]
    try:
        if source.startswith("timm:"):
            import timm

            ref = timm.create_model(name, pretrained=True)
        else:
            import torchvision

            ref = torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as exc:
        raise ValueError(f"cannot load pretrained weights for {spec!r} ({type(exc).__name__}: {str(exc)[:100]}); "
                         "they download on first use, so run once with network access or pass --weights") from None
    load_matching(model, ref.state_dict())
    return model


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``state`` whose name (a ``net.`` wrapper prefix aside) and shape match
    into ``model``; returns (the model's keys taken, the model's keys left as initialised). Why: a
    pretrained backbone fits a new task everywhere but its classifier."""
    own = model.state_dict()
    src = {k[4:] if k.startswith("net.") else k: v for k, v in state.items()}
    prefix = "net." if any(k.startswith("net.") for k in own) else ""
    matched = {prefix + k: v for k, v in src.items() if prefix + k in own and own[prefix + k].shape == v.shape}
    own.update(matched)
    model.load_state_dict(own)
    return list(matched), [k for k in own if k not in matched]


def build_model(spec: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 32,
                small: bool | None = None) -> nn.Module:
    """Build a freshly initialised model from a name or spec.

    Args:
        spec: a registered name, ``torchvision:NAME``, ``timm:NAME`` or ``file:path.py:factory``.
        small: use the architecture's small-image variant (CIFAR-style stem, no early
            down-sampling); default: ``image_size < SMALL_IMAGE_THRESHOLD`` (64 px).

    Raises:
        ValueError: unknown name (listing the registered ones), a bad ``file:`` spec, an input
            an architecture cannot take.
    """
    if in_channels < 1 or num_classes < 2:
        raise ValueError(f"in_channels={in_channels}, num_classes={num_classes}; need >= 1 channel and >= 2 classes")
    if spec.startswith("file:"):
        return _from_file(spec[5:], in_channels, num_classes, image_size)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], in_channels, num_classes)
    if spec.startswith("timm:"):
        return timm_model(spec.split(":", 1)[1], in_channels, num_classes)
    if spec not in _REGISTRY:
        raise ValueError(
            f"unknown model {spec!r}; use one of {', '.join(model_names())}, torchvision:NAME, timm:NAME "
            "or file:path.py:factory"
        )
    small = image_size < SMALL_IMAGE_THRESHOLD if small is None else small
    return _REGISTRY[spec].factory(in_channels=in_channels, num_classes=num_classes, image_size=image_size, small=small)
