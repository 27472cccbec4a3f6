"""The architecture registry (timm's ``@register_model`` pattern): each entry carries its factory,
its default layers and where its pretrained weights come from. Modules that define architectures
import this module only, so nothing imports in a circle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["ModelEntry", "register_model", "model_names", "model_entry", "default_layers"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: how to build it and what to diagnose by default."""

    name: str
    factory: Callable[..., nn.Module]
    source: str                      # "ours" | "torchvision" | "timm"
    default_layers: str = "auto"     # a dotted name, or "auto" (last conv in execution order)
    paper_name: str = ""
    small_variant: str = ""          # what the small-image variant changes
    pretrained: str = ""             # "torchvision:NAME" | "timm:NAME" (ImageNet weights), "" = none


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, source: str = "ours", default_layers: str = "auto", paper_name: str = "",
                   small_variant: str = "", pretrained: str = "") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(in_channels, num_classes, image_size, small) -> nn.Module`` under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered; pick another name")
        _REGISTRY[name] = ModelEntry(name, factory, source, default_layers, paper_name or name, small_variant, pretrained)
        return factory

    return deco


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(model_names())}")
    return _REGISTRY[name]


def default_layers(spec: str) -> str:
    """Default layers to diagnose/treat for a model spec (``"auto"`` for unregistered ones)."""
    return _REGISTRY[spec].default_layers if spec in _REGISTRY else "auto"
