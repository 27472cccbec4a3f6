"""Space-wise constraints that reach the feature extractor, and the pool of annotated images.

Eq. 6 (``ModelDoctorLoss(beta=...)``, space method ``paper``) penalises ``|∂y/∂m|`` on the
background at layer r. For a piecewise-linear tail that derivative does not depend on the
weights before r, so the penalty can only be lowered by the layers after r or by raising the
batch std of the BatchNorm after r (``docs/results/e2_space.md``). The methods here do not have
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
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..hooks import RemovableHandleList
from .instrument import Instrument
from .losses import resize_background
from .terms import LossTerm, MaskedBatch

__all__ = ["AnnotatedPool", "AttributionLoss", "InputGradientLoss", "RRRLoss", "CounterfactualLoss", "background_share",
           "composite", "bounding_boxes", "background_reliance", "selection_score", "SPACE_METHODS", "SpaceMethod"]



class AnnotatedPool:
    """The annotated images of a ``(image, label, foreground, has_mask)`` dataset, in memory.

    Args:
        images: ``[N, C, H, W]``; labels: ``[N]``; foreground: ``[N, 1, H, W]`` in [0, 1].
        indices: the dataset index of each (for reporting).

    Raises:
        ValueError: no images, or shapes that disagree.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, foreground: torch.Tensor,
                 indices: Sequence[int] | None = None, coarse: torch.Tensor | None = None,
                 refined: torch.Tensor | None = None, reasons: Sequence[str] | None = None):
        if len(images) == 0:
            raise ValueError("no annotated images: the pool needs at least one image with a foreground mask; "
                             "check that --masks pair with the training images")
        if foreground.dim() == 3:
            foreground = foreground[:, None]
        if len(labels) != len(images) or tuple(foreground.shape[-2:]) != tuple(images.shape[-2:]) \
                or len(foreground) != len(images):
            raise ValueError(f"pool shapes disagree: images {tuple(images.shape)}, labels {tuple(labels.shape)}, "
                             f"foreground {tuple(foreground.shape)}")
        self.images = images if images.is_floating_point() else images.float()
        self.labels = labels.long()
        self.foreground = foreground.to(self.images.dtype).clamp(0, 1)
        self.indices = list(indices) if indices is not None else list(range(len(images)))
        #: the annotation as given (before :meth:`refine`), for figures
        self.coarse = self.foreground if coarse is None else coarse.to(self.images.dtype)
        #: per image: True where :meth:`refine` estimated the object's pixels, False where the
        #: annotation is used as it is (``reasons`` says why)
        self.refined = torch.zeros(len(labels), dtype=torch.bool) if refined is None else refined.bool()
        self.reasons = list(reasons) if reasons is not None else ["not refined"] * len(labels)

    def refine(self, method: str = "grabcut", seed: int = 0, erode_px: int = 0) -> "AnnotatedPool":
        """A pool whose foregrounds are the object's estimated pixels inside each annotation
        (:func:`model_doctor.data.refine.refine_foreground`, once per image); ``coarse`` keeps the annotation."""
        from ..data.refine import refine_foreground

        out = [refine_foreground(x, c[0], method, seed=seed, erode_px=erode_px) for x, c in zip(self.images, self.coarse)]
        fg = torch.stack([r.mask for r in out])[:, None].to(self.images.dtype)
        return AnnotatedPool(self.images, self.labels, fg, self.indices, self.coarse,
                             torch.tensor([r.ok for r in out], dtype=torch.bool), [r.reason for r in out])

    def refine_report(self) -> dict[str, Any]:
        """How many foregrounds were refined, and why the others were not (counts per reason)."""
        why: dict[str, int] = {}
        for ok, r in zip(self.refined.tolist(), self.reasons):
            if not ok:
                why[r] = why.get(r, 0) + 1
        return {"images": len(self), "refined": int(self.refined.sum()), "not_refined": why}

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_dataset(cls, dataset: Dataset, indices: Sequence[int] | None = None) -> "AnnotatedPool":
        """Every item with ``has_mask`` (or only ``indices``) of a masked dataset."""
        xs, ys, fgs, keep = [], [], [], []
        for i in (range(len(dataset)) if indices is None else indices):  # type: ignore[arg-type]
            item = dataset[i]
            if len(item) < 4:
                raise ValueError("the dataset has no masks; use a MaskedDataset (or a decoy-* dataset)")
            if bool(item[3]):
                xs.append(torch.as_tensor(item[0]))
                ys.append(int(item[1]))
                fgs.append(torch.as_tensor(item[2]).float().reshape(1, *item[0].shape[-2:]))
                keep.append(int(i))
        if not xs:
            raise ValueError("no annotated images: the pool needs at least one image with a foreground mask; "
                             "check that --masks pair with the training images")
        return cls(torch.stack(xs), torch.tensor(ys), torch.stack(fgs), keep)

    def split_holdout(self, fraction: float, seed: int = 0) -> tuple["AnnotatedPool", "AnnotatedPool | None"]:
        """(train pool, held-out pool): per class ``round(fraction · n)`` images are held out, at least
        one where a class has two or more and ``fraction > 0``; the rest train."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"holdout fraction={fraction}; use 0 <= fraction < 1 (e.g. 0.25)")
        g = torch.Generator().manual_seed(seed)
        held = torch.zeros(len(self), dtype=torch.bool)
        if fraction > 0:
            for c in self.labels.unique().tolist():
                idx = torch.nonzero(self.labels == c).flatten()
                idx = idx[torch.randperm(len(idx), generator=g)]
                k = max(1, int(round(fraction * len(idx)))) if len(idx) >= 2 else 0
                held[idx[:k]] = True
        if not held.any():
            return self, None
        return self._take(~held), self._take(held)

    def _take(self, sel: torch.Tensor) -> "AnnotatedPool":
        idx = torch.nonzero(sel).flatten().tolist()
        return AnnotatedPool(self.images[idx], self.labels[idx], self.foreground[idx], [self.indices[i] for i in idx],
                             self.coarse[idx], self.refined[idx], [self.reasons[i] for i in idx])

    def counts(self) -> dict[int, int]:
        return {int(c): int((self.labels == c).sum()) for c in self.labels.unique().tolist()}

    def draw(self, k: int, seed: int, step: int) -> torch.Tensor:
        """``k`` pool positions (with replacement when ``k`` > pool size), a function of (seed, step)."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        if k <= len(self):
            return torch.randperm(len(self), generator=g)[:k]
        return torch.randint(0, len(self), (k,), generator=g)

    def partners(self, a: torch.Tensor, seed: int, step: int) -> torch.Tensor:
        """For each position in ``a``, another pool image, of a different class where the pool has one."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7)
        out = torch.empty_like(a)
        for j, i in enumerate(a.tolist()):
            other = torch.nonzero(self.labels != self.labels[i]).flatten()
            if len(other) == 0:
                other = torch.tensor([p for p in range(len(self)) if p != i] or [i])
            out[j] = other[torch.randint(0, len(other), (1,), generator=g)]
        return out


def composite(x_fg: torch.Tensor, fg: torch.Tensor, x_bg: torch.Tensor, fg_bg: torch.Tensor) -> torch.Tensor:
    """``x_fg``'s foreground pasted on ``x_bg``'s background: ``fg ⊙ x_fg + (1 − fg) ⊙ b`` where
    ``b`` is ``x_bg`` with its own foreground replaced by the per-channel mean of its background
    (so the background image's object does not show through). Shapes ``[B, C, H, W]`` / ``[B, 1, H, W]``."""
    bg_w = 1.0 - fg_bg
    fill = (x_bg * bg_w).sum((2, 3), keepdim=True) / bg_w.sum((2, 3), keepdim=True).clamp(min=1e-6)
    b = bg_w * x_bg + fg_bg * fill
    return fg * x_fg + (1.0 - fg) * b


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
        inst = Instrument(model, self.layers, need_tail=False)
        with inst.attach():
            self._inst = inst
            try:
                yield
            finally:
                self._inst = None

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
            x, out, y = self._x, logits, labels
            bg = (1.0 - b.foreground.to(logits.dtype)) * b.has_mask.to(logits.dtype).view(-1, 1, 1, 1)
        assert x is not None
        if self.mode == "rrr":
            (gx,) = torch.autograd.grad(torch.log_softmax(out, 1).sum(), x, create_graph=True)
            return (bg * gx).pow(2).sum((1, 2, 3)).mean() / (gx[0].numel() if self.normalize else 1)
        (gx,) = torch.autograd.grad(out.gather(1, y[:, None]).sum(), x, create_graph=True)
        return background_share(gx.abs().sum(1), bg[:, 0]).mean()


def RRRLoss(weight: float = 1.0, normalize: bool = True) -> InputGradientLoss:  # noqa: N802  (kept as the class name it replaced)
    """"Right for the right reasons" (Ross et al. 2017) on the training batch's masks: the
    input-gradient term in ``rrr`` mode with no pool."""
    return InputGradientLoss(None, weight, mode="rrr", normalize=normalize)


class CounterfactualLoss(_PoolTerm):
    """λ · [CE(f(x̃), y_a) + KL(p(x_a) ‖ p(x̃))] with ``x̃`` = image a's foreground on image b's
    background (:func:`composite`), b another annotated image of a different class.

    The KL term's gradient flows through both predictions (a consistency loss); both images go
    through one forward, so BatchNorm sees them in one batch.
    """

    name = "counterfactual"

    def __init__(self, pool: AnnotatedPool, weight: float = 1.0, kl_weight: float = 1.0, pool_batch: int = 32,
                 seed: int = 0):
        if kl_weight < 0:
            raise ValueError(f"kl_weight={kl_weight}; must be >= 0")
        super().__init__(pool, weight, pool_batch, seed)
        self.kl_weight = float(kl_weight)

    def pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.pool.draw(self.pool_batch, self.seed, step)
        return a, self.pool.partners(a, self.seed, step)

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        dev, dt = _device(model)
        a, b = self.pairs(step)
        p = self.pool
        xa, fa, ya = p.images[a].to(dev, dt), p.foreground[a].to(dev, dt), p.labels[a].to(dev)
        xt = composite(xa, fa, p.images[b].to(dev, dt), p.foreground[b].to(dev, dt))
        out = model(torch.cat([xa, xt]))
        if out.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in fp32
            out = out.float()
        la, lt = out[: len(a)], out[len(a):]
        value = F.cross_entropy(lt, ya)
        if self.kl_weight:
            value = value + self.kl_weight * F.kl_div(torch.log_softmax(lt, 1), torch.log_softmax(la, 1),
                                                      reduction="batchmean", log_target=True)
        return value


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([torch.softmax(model(x[i:i + batch_size]).float(), 1) for i in range(0, len(x), batch_size)])


def bounding_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` masks -> the filled bounding box of each (all zero where a mask is empty)."""
    m = masks[:, 0] > 0.5
    rows, cols = m.any(2), m.any(1)                        # [B, H], [B, W]

    def span(v: torch.Tensor) -> torch.Tensor:             # fill between the first and the last set entry
        idx = torch.arange(v.shape[1], device=v.device)
        first = torch.where(v, idx, v.shape[1]).min(1).values
        last = torch.where(v, idx, -1).max(1).values
        return (idx[None] >= first[:, None]) & (idx[None] <= last[:, None])

    return (span(rows)[:, :, None] & span(cols)[:, None, :])[:, None].to(masks.dtype)


def _swap_pairs(labels: torch.Tensor, max_partners: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every image, up to ``max_partners`` images of another class (a seeded choice)."""
    g = torch.Generator().manual_seed(seed)
    ia: list[int] = []
    ib: list[int] = []
    for i in range(len(labels)):
        other = torch.nonzero(labels != labels[i]).flatten()
        other = other[torch.randperm(len(other), generator=g)[:max_partners]]
        ia += [i] * len(other)
        ib += other.tolist()
    return torch.tensor(ia, dtype=torch.long), torch.tensor(ib, dtype=torch.long)


def _per_class(labels: torch.Tensor, hits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, dict[str, float]]:
    """``{class: {measure: mean of hits over that class's rows}}``; ``hits[measure] = (row labels, values)``."""
    out: dict[int, dict[str, float]] = {}
    for c in labels.unique().tolist():
        row: dict[str, float] = {"images": int((labels == c).sum())}
        for k, (lab, v) in hits.items():
            sel = lab == c
            row[k] = float(v[sel].double().mean()) if sel.any() else float("nan")
        out[int(c)] = row
    return out


def background_reliance(model: nn.Module, pool: AnnotatedPool, max_partners: int = 20, seed: int = 0,
                        batch_size: int = 256) -> dict[str, Any]:
    """How much the model's predictions on annotated images depend on their background.

    Two measures, each overall and per class (``per_class``):

    - **swap**: for every image a and up to ``max_partners`` images b of another class, ``x̃`` =
      a's foreground on b's background (:func:`composite`). Everything outside a's foreground is
      b's, *inside a's box too* once the pool is refined (:meth:`AnnotatedPool.refine`).
      ``swap_acc``: a's label predicted on x̃; ``swap_agreement``: the same prediction as on a.
    - **background only**: the image with the bounding box of its annotation filled with the mean
      of the background outside it: no object, and not its silhouette either (a flat region in
      the object's exact shape would still show the class). ``bg_only_acc``: the label still predicted; ``bg_only_conf``: the
      label's mean softmax probability. A model that does not read the background sits near
      chance (1 / classes) here; one that does predicts its class from the background alone.

    Also ``clean_acc``, ``bg_grad_share`` (mean share of ``Σ_c |∂y_pred/∂x|`` outside the
    foreground), ``refined_share`` (images whose foreground was refined: where it is below 1, any
    cue inside an unrefined annotation is invisible to both measures), ``images`` and ``pairs``.
    Eval mode; the model's training flag is restored.
    """
    dev, dt = _device(model)
    was = model.training
    model.eval()
    try:
        x, fg, y = pool.images.to(dev, dt), pool.foreground.to(dev, dt), pool.labels.to(dev)
        pred = _probs(model, x, batch_size).argmax(1)
        box = bounding_boxes(pool.coarse.to(dev, dt))
        plate = _probs(model, composite(x, torch.zeros_like(box), x, box), batch_size)
        ta, tb = _swap_pairs(pool.labels, max_partners, seed)
        swap_acc = swap_agree = float("nan")
        swap_hit = torch.zeros(0)
        if len(ta):
            pt = torch.cat([_probs(model, composite(x[a], fg[a], x[b], fg[b]), batch_size).argmax(1)
                            for a, b in zip(ta.split(batch_size), tb.split(batch_size))])
            swap_hit = (pt == y[ta]).cpu()
            swap_acc = float(swap_hit.double().mean())
            swap_agree = float((pt == pred[ta]).double().mean())
        shares = []
        with torch.enable_grad():
            for s in range(0, len(x), batch_size):
                xi = x[s:s + batch_size].detach().requires_grad_(True)
                out = model(xi)
                (gx,) = torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), xi)
                shares.append(background_share(gx.abs().sum(1), 1.0 - fg[s:s + batch_size, 0]))
        bg_hit = (plate.argmax(1) == y).cpu()
        bg_conf = plate.gather(1, y[:, None])[:, 0].cpu()
        per_class = _per_class(pool.labels, {"swap_acc": (pool.labels[ta], swap_hit),
                                             "bg_only_acc": (pool.labels, bg_hit), "bg_only_conf": (pool.labels, bg_conf)})
        return {"swap_acc": swap_acc, "swap_agreement": swap_agree, "clean_acc": float((pred == y).double().mean()),
                "bg_only_acc": float(bg_hit.double().mean()), "bg_only_conf": float(bg_conf.double().mean()),
                "chance": 1.0 / max(int(plate.shape[1]), 1), "bg_grad_share": float(torch.cat(shares).double().mean()),
                "refined_share": float(pool.refined.double().mean()), "images": len(pool), "pairs": len(ta),
                "per_class": per_class}
    finally:
        model.train(was)


def selection_score(val_acc: float, reliance: dict[str, Any] | None) -> float:
    """The no-test-data rule: mean of validation accuracy and held-out background-swap accuracy
    (validation accuracy alone when there is no held-out annotated image)."""
    if not reliance or reliance.get("swap_acc") is None or reliance["swap_acc"] != reliance["swap_acc"]:
        return float(val_acc)
    return 0.5 * (float(val_acc) + float(reliance["swap_acc"]))


class SpaceMethod(NamedTuple):
    """A ``--space-method``: how to build its term from the pool, and whether it reads the pool
    with expanded foregrounds (gradient penalties) or as annotated (pasting must not carry background)."""

    build: Callable[..., LossTerm]
    expanded: bool


def _attribution(pool: AnnotatedPool, weight: float, *, layers: Sequence[str], pool_batch: int, seed: int,
                 input_mode: str = "share") -> LossTerm:
    return AttributionLoss(pool, layers, weight, pool_batch=pool_batch, seed=seed)


def _input(pool: AnnotatedPool, weight: float, *, layers: Sequence[str], pool_batch: int, seed: int,
           input_mode: str = "share") -> LossTerm:
    return InputGradientLoss(pool, weight, mode=input_mode, pool_batch=pool_batch, seed=seed)


def _counterfactual(pool: AnnotatedPool, weight: float, *, layers: Sequence[str], pool_batch: int, seed: int,
                    input_mode: str = "share") -> LossTerm:
    return CounterfactualLoss(pool, weight, pool_batch=pool_batch, seed=seed)


#: ``--space-method`` -> its term; a new method is one class and one line here. ``paper`` (Eq. 6)
#: is the β of :class:`~model_doctor.treatment.losses.ModelDoctorLoss`, built with the channel term.
SPACE_METHODS: dict[str, SpaceMethod | None] = {
    "paper": None,
    "attribution": SpaceMethod(_attribution, expanded=True),
    "input": SpaceMethod(_input, expanded=True),
    "counterfactual": SpaceMethod(_counterfactual, expanded=False),
}
