"""Space-wise constraints that reach the feature extractor, and their registry (``SPACE_METHODS``).

Eq. 6 (``ModelDoctorLoss(beta=...)``, space method ``paper``) penalises ``|∂y/∂m|`` on the
background at layer r. For a piecewise-linear tail that derivative does not depend on the
weights before r, so the penalty can only be lowered by the layers after r or by raising the
batch std of the BatchNorm after r (``docs/results/e2/e2_space.md``). The methods here do not have
that escape:

- ``attribution``: the background share of ``|m ⊙ ∂y/∂m|`` (gradient x activation) at layer r.
  ``m`` itself carries a first-order gradient into every layer before r, and the share is
  invariant to rescaling ``m`` or the gradient.
- ``input``: penalties on the input gradient ``∂/∂x`` (reaches every layer through the weights):
  ``rrr`` (Ross et al. 2017, squared log-probability gradient on the background) or ``share``
  (the background share of ``|∂y/∂x|``, scale-invariant).
- ``counterfactual``: paste an annotated image's foreground onto another annotated image's
  background and train the model to give the pasted image the foreground's label and the same
  prediction as the original (CE + KL). No gradient of a gradient: the model is simply shown
  that the background does not carry the class.

All of them take an :class:`AnnotatedPool` — the annotated training images, kept in memory — and
each step draw ``pool_batch`` of them (seeded by step), so a method sees annotated images at the
same rate whatever their share of the training set (20 per class is ~0.3 % of ImageNet-sized
data; in-batch masked images would be rare). Each step adds one extra forward on the drawn
images. Derivations: ``docs/method.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TreatConfig
from ..hooks import RemovableHandleList
from .instrument import Instrument
from .losses import resize_background
from .pool import AnnotatedPool, composite, match_colour
from .terms import LossTerm, MaskedBatch

__all__ = ["AttributionLoss", "InputGradientLoss", "RRRLoss", "CounterfactualLoss", "background_share",
           "SPACE_METHODS", "SpaceMethod"]



def background_share(attr: torch.Tensor, background: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per image ``Σ_hw bg ⊙ A / Σ_hw A`` for a non-negative map ``A`` ``[B, h, w]`` -> ``[B]``."""
    return (attr * background).flatten(1).sum(1) / (attr.flatten(1).sum(1) + eps)


def _device(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


class _PoolTerm(LossTerm):
    """A term that draws ``pool_batch`` annotated images per step from a pool (seeded by step)."""

    name = "space"

    def __init__(self, pool: AnnotatedPool, weight: float, pool_batch: int, seed: int):
        super().__init__(weight)
        if pool_batch < 1:
            raise ValueError(f"pool_batch={pool_batch}; use a positive number of annotated images per step")
        self.pool, self.pool_batch, self.seed = pool, int(pool_batch), int(seed)

    def _batch(self, model: nn.Module, step: int) -> MaskedBatch:
        dev, dt = _device(model)
        idx = self.pool.draw(self.pool_batch, self.seed, step)
        return MaskedBatch(self.pool.images[idx].to(dev, dt), self.pool.labels[idx].to(dev),
                           self.pool.foreground[idx].to(dev, dt), torch.ones(len(idx), dtype=torch.bool, device=dev))


class AttributionLoss(_PoolTerm):
    """λ · mean over drawn annotated images of the background share of ``Σ_k |m_k ⊙ ∂y_c/∂m_k|``.

    ``c`` is the image's label (the annotation says where *its* evidence should be). The map is
    at layer r (a module name); the foreground is area-resized to the map (as Eq. 6).
    """

    name = "attribution"

    def __init__(self, pool: AnnotatedPool, layers: Sequence[str], weight: float = 1.0, pool_batch: int = 32,
                 seed: int = 0):
        super().__init__(pool, weight, pool_batch, seed)
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError("attribution needs at least one layer")
        self._inst: Instrument | None = None

    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        with self.instrumented(model, self.layers, need_tail=False):
            yield

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        x, y, fg, _ = self._batch(model, step)
        out = model(x)
        assert self._inst is not None
        total = out.sum() * 0.0
        score = out.gather(1, y[:, None]).sum()
        for layer in self.layers:
            m, _extras = self._inst.feature(layer)
            (g,) = torch.autograd.grad(score, m, create_graph=True, retain_graph=True)
            attr = (m * g).abs().sum(1)                                        # Σ_k |m ⊙ g| -> [B, h, w]
            total = total + background_share(attr, resize_background(fg, attr.shape[-2:])).mean()
        return total / len(self.layers)


class InputGradientLoss(LossTerm):
    """Input-gradient penalties on annotated images: drawn from ``pool``, or (``pool=None``) the
    annotated images of the training batch itself, read from its masks.

    ``mode="rrr"``: λ · mean over images of ``Σ_pixels (I_bg ⊙ ∂Σ_c log p_c/∂x)²`` (Ross et al.
    2017), divided by the pixel count when ``normalize`` (default). ``mode="share"``: λ · mean of
    the background share of ``Σ_channels |∂y_label/∂x|`` (scale-invariant). On the training batch
    the input gradient is that of the CE forward (a pre-hook makes the input require grad), and
    images without a mask contribute zero.
    """

    def __init__(self, pool: AnnotatedPool | None, weight: float = 1.0, mode: str = "share", pool_batch: int = 32,
                 seed: int = 0, normalize: bool = True):
        if mode not in ("rrr", "share"):
            raise ValueError(f"input-gradient mode={mode!r}; use 'share' (scale-invariant) or 'rrr' (Ross et al.)")
        super().__init__(weight)
        self._draw = _PoolTerm(pool, weight, pool_batch, seed) if pool is not None else None
        self.mode, self.normalize = mode, normalize
        self.name = "input" if pool is not None else mode
        self._x: torch.Tensor | None = None

    @contextlib.contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        if self._draw is not None:   # the pool's images go through their own forward
            yield
            return

        def pre(_m: nn.Module, args: tuple):
            self._x = args[0].detach().requires_grad_(True)
            return (self._x, *args[1:])

        handles = RemovableHandleList([model.register_forward_pre_hook(pre)])
        try:
            yield
        finally:
            handles.remove()
            self._x = None

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        if self._draw is not None:
            b = self._draw._batch(model, step)
            x = b.images.detach().requires_grad_(True)
            out, y, bg = model(x), b.labels, 1.0 - b.foreground
        else:
            b = MaskedBatch.of(batch, f"{self.mode.upper()} on the training batch", logits.device)
            x, out, y = self._x, logits, labels  # type: ignore[assignment]  # x: the hook's input, checked below
            bg = (1.0 - b.foreground.to(logits.dtype)) * b.has_mask.to(logits.dtype).view(-1, 1, 1, 1)
        assert x is not None
        if self.mode == "rrr":
            (gx,) = torch.autograd.grad(torch.log_softmax(out, 1).sum(), x, create_graph=True)
            return (bg * gx).pow(2).sum((1, 2, 3)).mean() / (gx[0].numel() if self.normalize else 1)
        (gx,) = torch.autograd.grad(out.gather(1, y[:, None]).sum(), x, create_graph=True)
        return background_share(gx.abs().sum(1), bg[:, 0]).mean()


def RRRLoss(weight: float = 1.0, normalize: bool = True) -> InputGradientLoss:
    """"Right for the right reasons" (Ross et al. 2017) on the training batch's masks: the
    input-gradient term in ``rrr`` mode with no pool."""
    return InputGradientLoss(None, weight, mode="rrr", normalize=normalize)


#: whose background a counterfactual borrows: ``other`` (another class's, always) or ``any`` (any
#: other annotated image's, so the background's class says nothing about the label). Why ``any``
#: exists: with two classes ``other`` makes the composites a perfect *reversed* shortcut (the
#: background of class B always carries label A), which a model can learn instead of the object.
PARTNERS = ("other", "any")


class CounterfactualLoss(_PoolTerm):
    """λ · [CE(f(x̃), y_a) + KL(p(x_a) ‖ p(x̃))] with ``x̃`` = image a's foreground on image b's
    background (:func:`composite`), b another annotated image of a different class.

    The KL term's gradient flows through both predictions (a consistency loss); both images go
    through one forward, so BatchNorm sees them in one batch.

    ``colour_cue``: a's foreground takes b's foreground's per-channel colour statistics before it
    is pasted (:func:`~model_doctor.treatment.pool.match_colour`), for users who say an object's
    colour may be a cue (``--object-colour cue``: a stain, a cast over the whole image). Why: a
    plain paste carries a's colour with a's object, so a cue that colours the object stays on
    every counterfactual's label and is never unlearned; matched, it belongs to b's background.
    """

    name = "counterfactual"

    def __init__(self, pool: AnnotatedPool, weight: float = 1.0, kl_weight: float = TreatConfig.kl_weight,
                 pool_batch: int = TreatConfig.pool_batch,
                 seed: int = 0, partners: str = "other", colour_cue: bool = False):
        if kl_weight < 0:
            raise ValueError(f"kl_weight={kl_weight}; must be >= 0")
        if partners not in PARTNERS:
            raise ValueError(f"partners={partners!r}; use one of {', '.join(PARTNERS)}")
        super().__init__(pool, weight, pool_batch, seed)
        self.kl_weight, self.partners, self.colour_cue = float(kl_weight), partners, bool(colour_cue)

    def pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.pool.draw(self.pool_batch, self.seed, step)
        return a, self.pool.partners(a, self.seed, step, any_class=self.partners == "any")

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        dev, dt = _device(model)
        a, b = self.pairs(step)
        p = self.pool
        xa, fa, ya = p.images[a].to(dev, dt), p.foreground[a].to(dev, dt), p.labels[a].to(dev)
        xb, fb = p.images[b].to(dev, dt), p.foreground[b].to(dev, dt)
        xt = composite(match_colour(xa, fa, xb, fb) if self.colour_cue else xa, fa, xb, fb)
        out = model(torch.cat([xa, xt]))
        if out.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in fp32
            out = out.float()
        la, lt = out[: len(a)], out[len(a):]
        value = F.cross_entropy(lt, ya)
        if self.kl_weight:
            value = value + self.kl_weight * F.kl_div(torch.log_softmax(lt, 1), torch.log_softmax(la, 1),
                                                      reduction="batchmean", log_target=True)
        return value


class SpaceMethod(NamedTuple):
    """A ``--space-method``: how to build its term from the pool, and whether it reads the pool
    with expanded foregrounds (gradient penalties) or as annotated (pasting must not carry background)."""

    build: Callable[..., LossTerm]
    expanded: bool


def _attribution(pool: AnnotatedPool, weight: float, *, layers: Sequence[str], pool_batch: int, seed: int,
                 **_: Any) -> LossTerm:
    return AttributionLoss(pool, layers, weight, pool_batch=pool_batch, seed=seed)


def _input(pool: AnnotatedPool, weight: float, *, pool_batch: int, seed: int, input_mode: str = TreatConfig.input_mode,
           **_: Any) -> LossTerm:
    return InputGradientLoss(pool, weight, mode=input_mode, pool_batch=pool_batch, seed=seed)


def _counterfactual(pool: AnnotatedPool, weight: float, *, pool_batch: int, seed: int, partners: str = TreatConfig.partners,
                    kl_weight: float = TreatConfig.kl_weight, colour_cue: bool = False, **_: Any) -> LossTerm:
    return CounterfactualLoss(pool, weight, kl_weight=kl_weight, pool_batch=pool_batch, seed=seed, partners=partners,
                              colour_cue=colour_cue)


#: ``--space-method`` -> its term; a new method is one class and one line here. ``paper`` (Eq. 6)
#: is the β of :class:`~model_doctor.treatment.losses.ModelDoctorLoss`, built with the channel term.
SPACE_METHODS: dict[str, SpaceMethod | None] = {
    "paper": None,
    "attribution": SpaceMethod(_attribution, expanded=True),
    "input": SpaceMethod(_input, expanded=True),
    "counterfactual": SpaceMethod(_counterfactual, expanded=False),
}
