"""What every constraint term shares: the ``attach``/``__call__`` contract, the weight check, the
zero-weight shortcut, the "call inside attach" check, and the batch read by field name.

A term is used as::

    with term.attach(model):                      # hooks (if any) live only inside the block
        parts = term(logits, labels, batch, step)  # {name: weighted value}, added to the CE loss

A subclass sets ``name`` and writes :meth:`LossTerm.value` (and :meth:`LossTerm.hooks` when it
needs the layer's maps); the base class does the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = ["LossTerm", "MaskedBatch"]


class MaskedBatch(NamedTuple):
    """A training batch with annotations: ``foreground`` ``[B, 1, H, W]`` and ``has_mask`` ``[B]``."""

    images: torch.Tensor
    labels: torch.Tensor
    foreground: torch.Tensor
    has_mask: torch.Tensor

    @classmethod
    def of(cls, batch: Sequence[Any], what: str, device: torch.device | None = None) -> MaskedBatch:
        """``batch`` as a MaskedBatch (on ``device``); ``what`` names the term in the error."""
        if len(batch) < 4:
            raise ValueError(f"{what} needs batches of (image, label, foreground_mask, has_mask); use a MaskedDataset")
        x, y, fg, has = batch[:4]
        fg = fg if fg.dim() == 4 else fg[:, None]
        if device is not None:
            x, y, fg, has = x.to(device), y.to(device), fg.to(device), has.to(device)
        return cls(x, y, fg, has.bool())


class LossTerm:
    """Base of the constraint terms: ``weight`` ≥ 0 and the model held between ``attach`` and exit."""

    name = "term"

    def __init__(self, weight: float = 1.0):
        if weight < 0:
            raise ValueError(f"weight={weight}; constraint weights must be >= 0")
        self.weight = float(weight)
        self._model: nn.Module | None = None

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator[Any]:
        """Hold the model (and the term's hooks, :meth:`hooks`) for the block."""
        with self.hooks(model):
            self._model = model
            try:
                yield self
            finally:
                self._model = None

    def hooks(self, model: nn.Module) -> contextlib.AbstractContextManager[Any]:
        """The term's hooks on ``model`` for the block (none by default)."""
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def instrumented(self, model: nn.Module, layers: Sequence[str], need_tail: bool) -> Iterator[None]:
        """Capture ``layers`` of ``model`` (``self._inst``, :class:`~.instrument.Instrument`) for the block."""
        from .instrument import Instrument

        inst = Instrument(model, layers, need_tail=need_tail)
        with inst.attach():
            self._inst: Instrument | None = inst
            try:
                yield
            finally:
                self._inst = None

    def need_model(self) -> nn.Module:
        if self._model is None:
            raise RuntimeError("call the loss inside `with loss.attach(model):`")
        return self._model

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any] = (),
                 step: int = 0) -> dict[str, torch.Tensor]:
        model = self.need_model()
        if self.weight == 0.0:
            return {self.name: logits.sum() * 0.0}
        return {self.name: self.weight * self.value(model, logits, labels, batch, step)}

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        """The unweighted term for this step."""
        raise NotImplementedError
