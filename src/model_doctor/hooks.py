"""Scoped hooks and model-state guards.

Every hook lives inside a context manager and is removed in ``finally`` (the zennit
``RemovableHandleList`` pattern), so neither success nor an exception leaves a hook behind.
Gradients w.r.t. feature maps are taken with ``torch.autograd.grad`` on tensors captured by
*forward* hooks; backward hooks are never used (they break before ``ReLU(inplace=True)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["RemovableHandleList", "FeatureCapture", "preserved_state", "count_hooks"]


class RemovableHandleList(list):
    """A list of hook handles that removes (and forgets) all of them at once."""

    def remove(self) -> None:  # type: ignore[override]  # list.remove(x) becomes "remove every handle"
        for handle in self:
            handle.remove()
        self.clear()


def count_hooks(model: nn.Module) -> int:
    """Number of forward/backward hooks registered on any sub-module (for leak tests)."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks)
        total += len(m._backward_hooks) + len(getattr(m, "_backward_pre_hooks", {}))
    return total


class FeatureCapture(contextlib.AbstractContextManager):
    """Record (and optionally replace) the outputs of named modules during forward passes.

    Inside the ``with`` block ``capture.outputs[name]`` holds the latest output of each module,
    still attached to the autograd graph, so ``torch.autograd.grad(y, capture.outputs[name])``
    gives the paper's derivative w.r.t. the feature map. ``replace[name] = fn`` makes the hook
    return ``fn(output)`` instead, which is how noise is injected at one layer only.
    """

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], clone_output: bool = False):
        self.layers = list(layers)
        self.clone_output = clone_output  # keep the captured map safe from a following in-place op
        self.outputs: dict[str, torch.Tensor] = {}
        self.replace: dict[str, object] = {}
        self._handles = RemovableHandleList()

    def _make_hook(self, name: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor; pick a layer that outputs a feature map"
                )
            fn = self.replace.get(name)
            if fn is not None:
                output = fn(output)  # type: ignore[operator]  # a callable by the hook's contract
            self.outputs[name] = output
            return output.clone() if self.clone_output else output

        return hook

    def __enter__(self) -> FeatureCapture:
        try:
            for name, module in self.layers:
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._handles.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:  # never swallows the exception
        self._handles.remove()
        self.outputs.clear()
        return None


@contextlib.contextmanager
def preserved_state(model: nn.Module, *, eval_mode: bool = True, freeze_params: bool = True) -> Iterator[nn.Module]:
    """Run a block with the model in eval mode and parameters frozen, then restore both exactly.

    Freezing parameters means the part of the network before a diagnosed layer builds no
    autograd graph at all; the per-module ``training`` flags and every ``requires_grad`` flag
    are restored in ``finally``.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        if freeze_params:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)

