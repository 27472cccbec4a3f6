"""Capture, during the user's own forward pass, what the constraint losses need at each layer.

For J = 0 the captured feature map ``m`` is enough (``autograd.grad(y, m, create_graph=True)``).
For J > 0 the tail of the network must run again on ``m + σ_j``; with ``torch.fx`` the forward is
replaced (for the ``with`` block only) by an instrumented copy of the same graph that also
returns ``m`` and the other prefix values each tail reads (e.g. a residual identity), so nothing
before layer r runs twice. Untraceable models fall back to forward hooks, where the tail re-runs
the whole network on the repeated input with the layer's output swapped (slower, same maths).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import fx, nn

from ..hooks import FeatureCapture, RemovableHandleList
from ..split import LayerSplit, _descendants, _is_inplace, _LeafTracer

__all__ = ["Instrument"]


class Instrument:
    """Per-layer ``(m, extras)`` of the latest forward pass and a ``tail(layer, z, repeats)``."""

    def __init__(self, model: nn.Module, layers: Sequence[str], need_tail: bool):
        self.model, self.layers, self.need_tail = model, list(layers), need_tail
        self.captured: dict[str, tuple[torch.Tensor, tuple]] = {}
        self.inputs: torch.Tensor | None = None
        self.mode = "hook"
        self._splits: dict[str, LayerSplit] = {}
        self._gm: fx.GraphModule | None = None
        if need_tail:
            try:
                self._build_fx()
                self.mode = "fx"
            except Exception as exc:
                warnings.warn(f"model_doctor: torch.fx cannot instrument {type(model).__name__} ({type(exc).__name__}); "
                              "noisy tails re-run the whole network (slower, same maths)", stacklevel=3)
        if self.mode == "hook" and need_tail:
            self._splits = {n: LayerSplit(model, n, force_hook_mode=True) for n in self.layers}

    def _build_fx(self) -> None:
        graph = _LeafTracer(set(self.layers)).trace(self.model)
        output = next(n for n in graph.nodes if n.op == "output")
        outs: list[fx.Node] = []
        self._layout: dict[str, tuple[int, int]] = {}
        for name in self.layers:
            split = LayerSplit(self.model, name)  # per-layer tail graph (validated the same way)
            if split.mode != "fx":
                raise RuntimeError(f"cannot split at {name}")
            self._splits[name] = split
            targets = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
            if len(targets) != 1:
                raise RuntimeError(f"{name} is called {len(targets)} times")
            tail = _descendants(targets[0])
            extras = []
            for node in graph.nodes:
                if node in tail and node is not targets[0]:
                    for arg in node.all_input_nodes:
                        if arg not in tail and arg.op != "get_attr" and arg not in extras:
                            extras.append(arg)
            if len(extras) != split._n_extras:
                raise RuntimeError("instrumented graph disagrees with the layer split")
            self._layout[name] = (len(outs), len(extras))
            outs.extend([targets[0], *extras])
        for name in self.layers:  # an in-place op after layer r would overwrite the captured m
            target = outs[self._layout[name][0]]
            if any(_is_inplace(u, self.model) for u in target.users):
                with graph.inserting_after(target):
                    copy = graph.call_method("clone", (target,))
                target.replace_all_uses_with(copy, delete_user_cb=_not(copy))
        output.args = ((output.args[0], *outs),)
        self._gm = fx.GraphModule(self.model, graph)

    @contextlib.contextmanager
    def attach(self) -> Iterator[Instrument]:
        """Capture inside the block; the model's own forward and hooks are restored on exit."""
        if self.mode == "fx":
            assert self._gm is not None
            gm = self._gm

            def forward(*args, **kwargs):
                res = gm(*args, **kwargs)
                original, flat = res[0], res[1:]
                for name, (start, n_extra) in self._layout.items():
                    self.captured[name] = (flat[start], tuple(flat[start + 1:start + 1 + n_extra]))
                return original

            self.model.forward = forward  # instance attribute shadows the class's forward
            try:
                yield self
            finally:
                del self.model.forward
                self.captured.clear()
            return
        named = dict(self.model.named_modules())
        handles = RemovableHandleList()
        cap = FeatureCapture([(n, named[n]) for n in self.layers], clone_output=True)

        def pre(_m: nn.Module, args: tuple):
            self.inputs = args[0]

        try:
            handles.append(self.model.register_forward_pre_hook(pre))
            with cap:
                self._cap = cap
                yield self
        finally:
            handles.remove()
            self.captured.clear()
            self.inputs = None

    def feature(self, layer: str) -> tuple[torch.Tensor, tuple]:
        if self.mode == "fx":
            if layer not in self.captured:
                raise RuntimeError("no forward pass was captured; call the model inside attach()")
            return self.captured[layer]
        return self._cap.outputs[layer], (self.inputs,)

    def tail(self, layer: str, z: torch.Tensor, extras: tuple, repeats: int, bn_eval: bool = True) -> torch.Tensor:
        """Logits for ``z`` [B*repeats, ...], BatchNorm running statistics left untouched.

        Train-mode BatchNorm would update its running statistics in place, which both changes
        them and invalidates tensors the CE forward saved for backward; so each buffer is swapped
        for a throw-away copy during the pass and the original object put back afterwards.

        In hook mode the tail is a whole forward of the model, which runs this block's own
        capture hooks: the maps and the input they captured from the training forward are put
        back afterwards, so the next layer's term reads the training forward, not this re-run.
        """
        if self.mode == "hook":  # the re-run passes through this block's own hooks: keep what they captured
            cap, inputs = self._cap, self.inputs
            saved_maps = dict(cap.outputs)
            try:
                return self._tail(layer, z, extras, repeats, bn_eval)
            finally:
                cap.outputs.clear()
                cap.outputs.update(saved_maps)
                self.inputs = inputs
        return self._tail(layer, z, extras, repeats, bn_eval)

    def _tail(self, layer: str, z: torch.Tensor, extras: tuple, repeats: int, bn_eval: bool) -> torch.Tensor:
        names = ("running_mean", "running_var", "num_batches_tracked")
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        if bn_eval:  # per-image derivatives: running statistics, no coupling through the batch
            try:
                for m in bns:
                    m.training = False
                return self._splits[layer].tail(z, extras, repeats)
            finally:
                for m in bns:
                    m.training = True
        saved = [(m, {k: getattr(m, k) for k in names}) for m in bns]
        try:
            for m, bufs in saved:
                for k, v in bufs.items():
                    if v is not None:
                        setattr(m, k, v.clone())
            return self._splits[layer].tail(z, extras, repeats)
        finally:
            for m, bufs in saved:
                for k, v in bufs.items():
                    setattr(m, k, v)


def _not(node: object) -> Callable[[object], bool]:
    """``user is not node`` (replace every use of a map except by its own clone)."""
    return lambda user: user is not node
