"""Split a network at one layer into a *prefix* (input -> feature map) and a *tail*.

Why: Eq. 4 needs the logits of J noisy copies of the feature map ``m`` at layer r. Running the
whole network J times wastes the prefix, which does not depend on the noise. With the network
split, the prefix runs once per batch (without a graph when diagnosing) and only the tail sees
the ``B*J`` batched copies.

The split uses ``torch.fx``: the tail is every node that depends on layer r's output; any other
prefix value the tail still reads (e.g. a residual identity that skips layer r) is returned by
the prefix as an *extra* and repeated J times alongside ``m``. Models fx cannot trace, or whose
tail reads non-batch values, fall back to *hook mode*: the whole network is re-run with a forward
hook that swaps layer r's output for the noisy copy. Hook mode gives identical numbers, only
slower, and is reported by :attr:`LayerSplit.mode`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import fx, nn

from .hooks import FeatureCapture

__all__ = ["LayerSplit"]


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted feature map exists."""


class _LeafTracer(fx.Tracer):
    """Traces through every module except the named ones (and fx's default leaves)."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


_INPLACE_OPERATORS = {"iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "iand", "ior", "ixor"}


def _is_inplace(node: fx.Node, root: nn.Module) -> bool:
    """Whether ``node`` may modify its input in place (then the tail's input must be a copy)."""
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(str(node.target)), "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace", False)) or name.endswith("_") or name in _INPLACE_OPERATORS
    return False


def _descendants(start: fx.Node) -> set[fx.Node]:
    seen = {start}
    stack = [start]
    while stack:
        for user in stack.pop().users:
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return seen


class LayerSplit:
    """Prefix/tail decomposition of ``model`` at the output of the sub-module ``layer``.

    ``prefix(x) -> (m, extras)`` and ``tail(z, extras, repeats) -> logits`` satisfy
    ``tail(m, extras, 1) == model(x)``. ``repeats=J`` repeats every extra J times per sample
    (``repeat_interleave``), matching ``z`` laid out as ``[B*J, ...]`` with sample-major order.
    Parameters are shared with ``model`` (no copies), so gradients reach the user's model.
    """

    def __init__(self, model: nn.Module, layer: str, *, force_hook_mode: bool = False):
        self.model = model
        self.layer = layer
        self.mode = "hook"
        self._prefix_gm: fx.GraphModule | None = None
        self._tail_gm: fx.GraphModule | None = None
        if not force_hook_mode:
            try:
                self._build_fx()
                self.mode = "fx"
            except Exception as exc:  # any tracing failure: fall back, never fail
                warnings.warn(
                    f"model_doctor: torch.fx cannot split {type(model).__name__} at {layer!r} ({type(exc).__name__}: "
                    f"{str(exc)[:120]}); using hook mode (same numbers, slower)",
                    stacklevel=2,
                )

    # -- fx construction -------------------------------------------------------------------
    def _build_fx(self) -> None:
        tracer = _LeafTracer({self.layer})
        graph = tracer.trace(self.model)
        targets = [n for n in graph.nodes if n.op == "call_module" and n.target == self.layer]
        if len(targets) != 1:
            raise RuntimeError(f"layer is called {len(targets)} times in the traced graph (need exactly 1)")
        target = targets[0]
        tail_nodes = _descendants(target)
        output = next(n for n in graph.nodes if n.op == "output")
        if output not in tail_nodes:
            raise RuntimeError("the model output does not depend on this layer")
        tail_nodes.discard(output)

        extras: list[fx.Node] = []
        for node in graph.nodes:
            if node in tail_nodes and node is not target:
                for arg in node.all_input_nodes:
                    if arg not in tail_nodes and arg.op != "get_attr" and arg not in extras:
                        extras.append(arg)
        for arg in output.all_input_nodes:
            if arg not in tail_nodes and arg.op != "get_attr":
                raise RuntimeError("the model output also holds values that skip this layer")

        # prefix: original graph up to the values the tail needs
        prefix = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for node in graph.nodes:
            if node in tail_nodes and node is not target or node.op == "output":
                continue
            env[node] = prefix.node_copy(node, lambda n: env[n])
        prefix.output((env[target], *[env[e] for e in extras]))

        # tail: placeholders for m and the extras, then every node downstream of m
        tail = fx.Graph()
        tenv: dict[fx.Node, fx.Node] = {target: tail.placeholder("feature_map")}
        for i, e in enumerate(extras):
            tenv[e] = tail.placeholder(f"extra_{i}")
        for node in graph.nodes:
            if node.op == "get_attr" and any(u in tail_nodes for u in node.users):
                tenv[node] = tail.node_copy(node, lambda n: tenv[n])
            elif node in tail_nodes and node is not target:
                tenv[node] = tail.node_copy(node, lambda n: tenv[n])
        tail.output(tenv[output.args[0]] if isinstance(output.args[0], fx.Node) else output.args[0])
        self._clone_input = any(_is_inplace(u, self.model) for u in tenv[target].users)
        self._prefix_gm = fx.GraphModule(self.model, prefix)
        self._prefix_gm.graph.eliminate_dead_code()
        self._prefix_gm.recompile()
        self._tail_gm = fx.GraphModule(self.model, tail)
        self._n_extras = len(extras)

    # -- running ---------------------------------------------------------------------------
    def prefix(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """Return the layer's output ``m`` and the extra values the tail needs."""
        if self.mode == "fx":
            assert self._prefix_gm is not None
            out = self._prefix_gm(x)
            m, extras = out[0], tuple(out[1:])
            for e in extras:
                if not (isinstance(e, torch.Tensor) and e.dim() > 0 and e.shape[0] == x.shape[0]):
                    raise RuntimeError(
                        f"tail of {type(self.model).__name__} at {self.layer!r} reads a non-batch value; "
                        "use LayerSplit(..., force_hook_mode=True)"
                    )
            return m, extras
        module = dict(self.model.named_modules())[self.layer]
        captured: dict[str, torch.Tensor] = {}

        def stop(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            captured["m"] = out
            raise _StopForward

        handle = module.register_forward_hook(stop)
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "m" not in captured:
            raise RuntimeError(f"layer {self.layer!r} did not run during the forward pass")
        return captured["m"], (x,)

    def tail(self, z: torch.Tensor, extras: tuple, repeats: int = 1) -> torch.Tensor:
        """Logits for feature map(s) ``z`` ``[B*repeats, ...]`` given the prefix's ``extras``."""
        rep: Callable[[torch.Tensor], torch.Tensor] = (
            (lambda t: t) if repeats == 1 else (lambda t: t.repeat_interleave(repeats, dim=0))
        )
        extras = tuple(rep(e) for e in extras)
        if self.mode == "fx":
            assert self._tail_gm is not None
            # clone only when the first op after the layer works in place (e.g. ReLU(inplace=True))
            return self._tail_gm(z.clone() if self._clone_input else z, *extras)
        (x,) = extras
        module = dict(self.model.named_modules())[self.layer]
        with FeatureCapture([(self.layer, module)]) as cap:
            cap.replace[self.layer] = lambda _out: z.clone()
            return self.model(x)
