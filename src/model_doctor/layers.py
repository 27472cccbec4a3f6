"""Resolve the layers a user names into ``(qualified_name, module)`` pairs.

A layer may be given as a module, a dotted name (``"layer4.1.conv2"``), a list of those, a
predicate ``(name, module) -> bool``, or ``"auto"`` / ``"auto:k"`` = the last ``k`` ``Conv2d``
layers in *forward execution order*. Execution order is found with a traced forward pass because
registration order can differ from the order the layers run in (e.g. torchvision's GoogLeNet).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .hooks import RemovableHandleList

LayerSpec = str | nn.Module | Callable[[str, nn.Module], bool] | Sequence[str | nn.Module]

__all__ = ["LayerSpec", "resolve_layers", "conv_layers_in_order", "require_feature_maps", "describe_layers", "DEFAULT_AUTO_K"]

DEFAULT_AUTO_K = 1


def conv_layers_in_order(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Return the ``Conv2d`` layers of ``model`` in the order a forward pass calls them.

    Each module is listed once, at its first call. Runs one forward pass under ``no_grad`` with
    the model in eval mode (restored afterwards), so BatchNorm statistics are untouched.
    """
    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def hook(module: nn.Module, _inp: object, _out: object) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append((names[module], module))

    was_training = model.training
    handles = RemovableHandleList()
    try:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                handles.append(module.register_forward_hook(hook))
        model.eval()
        with torch.no_grad():
            model(example_input[:1])
    finally:
        handles.remove()
        model.train(was_training)
    return order


def _by_name(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    valid = [n for n in modules if n]
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.4)
    hint = f"closest valid names: {', '.join(close)}" if close else f"valid names include: {', '.join(valid[-5:])}"
    raise ValueError(f"unknown layer {name!r} in {type(model).__name__}; {hint}")


def _name_of(model: nn.Module, module: nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module and name:
            return name
    raise ValueError(
        f"module {type(module).__name__} is not a sub-module of {type(model).__name__}; "
        "pass a module of this model or its dotted name"
    )


def resolve_layers(
    model: nn.Module, spec: LayerSpec, example_input: torch.Tensor | None = None
) -> list[tuple[str, nn.Module]]:
    """Resolve ``spec`` to a list of ``(name, module)`` pairs, in the order given.

    Args:
        model: the network.
        spec: a module, a dotted name, a list of either, a predicate ``(name, module) -> bool``,
            ``"auto"`` (last conv layer) or ``"auto:k"`` (last ``k`` conv layers).
        example_input: one input batch; required for ``"auto"`` (execution order is traced).

    Returns:
        ``[(qualified_name, module), ...]`` without duplicates.

    Raises:
        ValueError: unknown name (with the closest valid names), empty result, bad ``auto:k``.
        TypeError: a spec of an unsupported type.
    """
    if isinstance(spec, str) and spec.startswith("auto"):
        k_text = spec[5:] if spec.startswith("auto:") else ("" if spec == "auto" else None)
        if k_text is None or (k_text and not k_text.isdigit()) or k_text == "0":
            raise ValueError(f"bad layer spec {spec!r}; use 'auto' or 'auto:K' with K a positive integer")
        k = int(k_text) if k_text else DEFAULT_AUTO_K
        if example_input is None:
            raise ValueError("layers='auto' needs an example input to trace execution order; pass example_input")
        convs = conv_layers_in_order(model, example_input)
        if not convs:
            raise ValueError(f"layers={spec!r}: {type(model).__name__} runs no nn.Conv2d; name the layers explicitly")
        return convs[-k:]
    if isinstance(spec, str):
        return [(spec, _by_name(model, spec))]
    if isinstance(spec, nn.Module):
        return [(_name_of(model, spec), spec)]
    if callable(spec):
        found = [(n, m) for n, m in model.named_modules() if n and spec(n, m)]
        if not found:
            raise ValueError("the layer predicate matched no module; check it against model.named_modules()")
        return found
    if isinstance(spec, Sequence):
        out: list[tuple[str, nn.Module]] = []
        for item in spec:
            if not isinstance(item, (str, nn.Module)) or (isinstance(item, str) and item.startswith("auto")):
                raise TypeError(f"layer list items must be names or modules, got {item!r}")
            for pair in resolve_layers(model, item, example_input):
                if pair[0] not in {n for n, _ in out}:
                    out.append(pair)
        if not out:
            raise ValueError("empty layer list; name at least one layer or use 'auto'")
        return out
    raise TypeError(f"unsupported layer spec {spec!r}; use a name, a module, a list, a predicate or 'auto'")


def require_feature_maps(model: nn.Module, named: Sequence[tuple[str, nn.Module]], example: torch.Tensor) -> None:
    """Every named layer must output a feature map ``[B, C, H, W]``: the method sums gradients over
    space, so a linear layer (``[B, C]``) has nothing to aggregate.

    Raises:
        ValueError: naming the layer, the shape it outputs and how to list the conv layers.
    """
    shapes: dict[str, object] = {}

    def record(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:   # returns None: the output is left as it is
            shapes.setdefault(name, getattr(out, "shape", type(out).__name__))
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in named]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    for n, _ in named:
        shape = shapes.get(n)
        if shape is None:
            raise ValueError(f"layer {n!r} does not run in the forward pass; pick a layer the model uses "
                             "(`model-doctor layers NAME` lists the conv layers)")
        if not isinstance(shape, torch.Size) or len(shape) != 4:
            raise ValueError(f"layer {n!r} outputs {tuple(shape) if isinstance(shape, torch.Size) else shape}, not a "
                             "feature map [B, C, H, W]; pick a conv layer or block (`model-doctor layers NAME` lists them)")


def describe_layers(name: str, in_channels: int = 3, image_size: int = 32, small: bool | None = None) -> list[dict[str, Any]]:
    """Conv layers of a model in forward execution order, with channel counts and default marks."""
    from .models import build_model, default_layers

    if image_size < 1 or in_channels < 1:
        raise ValueError(f"--image-size {image_size}, --in-channels {in_channels}; both must be positive")
    model = build_model(name, in_channels=in_channels, num_classes=10, image_size=image_size, small=small)
    defaults = default_layers(name)
    try:
        convs = conv_layers_in_order(model, torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as exc:
        raise ValueError(f"{name} cannot run on {image_size}x{image_size} images ({str(exc).splitlines()[0][:80]}); "
                         "pass a larger --image-size (e.g. 32)") from None
    chosen = {convs[-1][0]} if defaults == "auto" else {defaults}
    rows = [{"index": i, "name": n, "in": m.in_channels, "out": m.out_channels,
             "kernel": "x".join(str(k) for k in tuple(m.kernel_size)), "stride": tuple(m.stride)[0],  # type: ignore[arg-type]  # torch types conv attributes as Tensor | Module
             "default": n in chosen}
            for i, (n, m) in enumerate(convs)]
    if defaults != "auto" and not any(r["default"] for r in rows):
        mod = model.get_submodule(defaults)
        rows.append({"index": len(rows), "name": defaults, "in": "", "out": "", "kernel": type(mod).__name__,
                     "stride": "", "default": True, "block": True})
    return rows
