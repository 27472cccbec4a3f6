"""Diagnosis (paper "Diagnosing stage"): select confident samples, aggregate Eq. 4 per class."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .. import __version__
from ..data.base import IndexedSubset, as_dataset, check_sample, class_names_of, loader_for, sized
from ..distributed import all_gather_objects, all_reduce_sum, rank_world, shard
from ..gradients import Reduce, feature_gradients
from ..hooks import preserved_state
from ..io import weights_fingerprint
from ..layers import LayerSpec, require_feature_maps, resolve_layers
from ..precision import autocast, check_precision
from ..progress import progress
from ..split import LayerSplit
from .artifact import DEFAULT_THETA, Diagnosis

__all__ = ["diagnose", "aggregate_correlations", "select_samples", "CorrelationState", "predict", "DEFAULT_NOISE"]

#: Default noise half-width δ, in feature-map units. The paper leaves δ open; conv outputs of
#: trained nets with BatchNorm are O(1), so 0.1 is a small perturbation (see docs/diagnosis.md).
DEFAULT_NOISE = 0.1


class CorrelationState:
    """Running per-class sums of channel-gradient vectors (float64), mergeable across shards."""

    def __init__(self, num_classes: int, channels: int):
        self.total = torch.zeros(num_classes, channels, dtype=torch.float64)
        self.count = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, channel: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.cpu()
        self.total.index_add_(0, labels, channel.detach().to("cpu", torch.float64))
        self.count.index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64))

    def merge(self, other: CorrelationState) -> None:
        self.total += other.total
        self.count += other.count

    def compute(self) -> torch.Tensor:
        """Mean vector per class; a class with no samples is a row of zeros."""
        return self.total / self.count.clamp(min=1.0)[:, None]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256, num_workers: int = 0,
            desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eval-mode softmax over a dataset: returns ``(labels, predictions, probabilities [N, C])``."""
    device, dtype = _model_device_dtype(model)
    labels, probs = [], []
    n = sized(dataset)
    mine = shard(range(n))  # one process: everything; under torchrun: this rank's share
    with preserved_state(model):
        loader = loader_for(Subset(dataset, mine), batch_size, num_workers=num_workers, device=device)
        for x, y, *_ in progress(loader, desc=desc):
            logits = model(x.to(device, dtype, non_blocking=True))
            probs.append(torch.softmax(logits.double(), 1).cpu())  # float64: near-equal logits stay ordered
            labels.append(torch.as_tensor(y))
    p = torch.cat(probs) if probs else torch.zeros(0, 0, dtype=torch.float64)
    lab = torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long)
    if p.numel() and not torch.isfinite(p).all():
        bad = int((~torch.isfinite(p)).any(1).sum())
        raise ValueError(f"the model outputs NaN/inf for {bad} of {len(p)} images: its weights (or inputs) hold "
                         "non-finite values; check the weights file and the data normalisation")
    if p.numel() and lab.numel() and int(lab.max()) >= p.shape[1]:
        raise ValueError(f"the data has labels up to {int(lab.max())} but the model outputs {p.shape[1]} classes; "
                         "pass the --data the model was trained on (or --num-classes for a new model)")
    if rank_world()[1] > 1:  # reassemble in dataset order
        parts: list[tuple[list[int], torch.Tensor, torch.Tensor]] = all_gather_objects((mine, lab, p))  # type: ignore[assignment]  # each rank sends this tuple
        full_p = torch.zeros(n, max(t[2].shape[1] for t in parts), dtype=torch.float64)
        full_l = torch.zeros(n, dtype=torch.long)
        for idx, l_, p_ in parts:
            if len(idx):
                full_p[torch.tensor(idx)] = p_
                full_l[torch.tensor(idx)] = l_
        p, lab = full_p, full_l
    return lab, p.argmax(1), p


def select_samples(labels: torch.Tensor, probs: torch.Tensor, num_classes: int, samples_per_class: int,
                   min_confidence: float, *, allow_empty_classes: bool = False,
                   class_names: Sequence[str] | None = None) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Per class, the ``samples_per_class`` correctly predicted samples with confidence > τ,
    highest confidence first (ties: lower index first).

    Returns:
        ``(indices_per_class, shortfall)`` where ``shortfall[c]`` = how many fewer than asked.

    Raises:
        ValueError: a class with no eligible sample (unless ``allow_empty_classes``).
    """
    conf, pred = probs.max(1)
    chosen: dict[int, list[int]] = {}
    short: dict[int, int] = {}
    for c in range(num_classes):
        ok = torch.nonzero((labels == c) & (pred == c) & (conf > min_confidence)).flatten()
        # stable sort by descending confidence so ties keep dataset order
        order = torch.sort(-conf[ok].double(), stable=True).indices
        picked = ok[order][:samples_per_class].tolist()
        if not picked and not allow_empty_classes:
            name = class_names[c] if class_names else str(c)
            raise ValueError(
                f"class {c} ({name!r}) has no training sample predicted correctly with confidence > {min_confidence}; "
                "lower min_confidence, train the model longer, or pass allow_empty_classes=True"
            )
        chosen[c] = picked
        if len(picked) < samples_per_class:
            short[c] = samples_per_class - len(picked)
    return chosen, short


def aggregate_correlations(
    model: nn.Module, dataset: Dataset, sample_indices: dict[int, list[int]],
    layers: Sequence[tuple[str, nn.Module]], num_classes: int, *, noise: float, noise_draws: int,
    batch_size: int, seed: int, reduce: Reduce, num_workers: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Eq. 4 aggregated per class over given samples: ``{layer: [num_classes, K]}`` and split modes.

    The gradient phase of :func:`diagnose`, callable on its own with hand-picked samples. The
    model must already be in eval mode with frozen parameters (see ``preserved_state``).
    """
    device, dtype = _model_device_dtype(model)
    flat = [i for c in range(num_classes) for i in sample_indices.get(c, [])]
    subset = IndexedSubset(dataset, shard(flat))  # under torchrun each rank takes its share
    correlations: dict[str, torch.Tensor] = {}
    modes: dict[str, str] = {}
    for layer_index, (name, _module) in enumerate(layers):
        split = LayerSplit(model, name)
        modes[name] = split.mode
        state: CorrelationState | None = None
        loader = loader_for(subset, batch_size, num_workers=num_workers, device=device)
        for x, y, idx in progress(loader, desc=f"diagnose {name}"):
            res = feature_gradients(split, x.to(device, dtype, non_blocking=True), y.to(device), draws=noise_draws, delta=noise,
                                    seed=seed, layer_index=layer_index, sample_keys=idx, reduce=reduce,
                                    spatial=False)
            if state is None:
                state = CorrelationState(num_classes, res.channel.shape[1])
            state.update(res.channel, y)
        if state is None:  # this rank got no sample (or there are none): learn the width to join the reduce
            if not flat:
                raise ValueError("no samples to aggregate; every class is empty")
            with torch.no_grad():
                x0 = dataset[flat[0]][0][None].to(device, dtype)
                state = CorrelationState(num_classes, split.prefix(x0)[0].shape[1])
        all_reduce_sum(state.total)
        all_reduce_sum(state.count)
        correlations[name] = state.compute()
    return correlations, modes


def _check_arguments(ds: Dataset, samples_per_class: int, min_confidence: float, noise: float, noise_draws: int,
                     reduce: str, precision: str) -> None:
    """One-line errors for arguments no diagnosis can use (before any forward pass)."""
    if len(ds) == 0:  # type: ignore[arg-type]  # map-style datasets define __len__
        raise ValueError("the dataset is empty; pass the training split")
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class={samples_per_class}; use a positive integer (paper: 100)")
    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"min_confidence={min_confidence}; use a probability in [0, 1) (paper: 0.9)")
    if noise_draws < 0 or noise < 0:
        raise ValueError(f"noise_draws={noise_draws}, noise={noise}; both must be >= 0 (noise_draws=0: no noise)")
    if reduce not in ("abs", "relu"):
        raise ValueError(f"reduce={reduce!r}; use 'abs' (paper) or 'relu' (official code)")
    check_precision(precision)
    check_sample(ds[0], None)


def _check_model(model: nn.Module, first: Any, example: torch.Tensor, num_classes: int | None,
                 layers: LayerSpec) -> tuple[int, list]:
    """(number of classes, resolved layers): the model returns logits, the layers give ``[B, C, H, W]`` maps."""
    with torch.no_grad():
        out = model(example)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ValueError(f"the model returns {getattr(out, 'shape', type(out).__name__)}; expected logits [B, num_classes]")
    num_classes = num_classes or int(out.shape[1])
    if out.shape[1] != num_classes:
        raise ValueError(f"num_classes={num_classes} but the model outputs {out.shape[1]} logits; pass num_classes={out.shape[1]}")
    check_sample(first, num_classes)
    named = resolve_layers(model, layers, example)
    require_feature_maps(model, named, example)
    return num_classes, named


def diagnose(model: nn.Module, dataset: Dataset | DataLoader, layers: LayerSpec = "auto", num_classes: int | None = None,
             samples_per_class: int = 100, min_confidence: float = 0.9, noise: float = DEFAULT_NOISE,
             noise_draws: int = 10, batch_size: int | None = None, seed: int = 0, reduce: Reduce = "abs",
             theta: float = DEFAULT_THETA, class_names: Sequence[str] | None = None, allow_empty_classes: bool = False,
             num_workers: int = 0, precision: str = "fp32") -> Diagnosis:
    """Diagnose ``model``: the class x channel correlation ā^{n,r} (paper Eq. 4) at each layer.

    Samples: per class, the ``samples_per_class`` (T) training samples predicted correctly with
    softmax confidence > ``min_confidence`` (τ). For each, ``|∂y_n/∂(m_k + σ_j)|`` summed over
    space and averaged over ``noise_draws`` (J) draws ``σ_j ~ U[-noise, noise]`` added at layer r
    only; ``y_n`` is the true (= predicted) class's logit. Averaged over the class's samples.

    ``noise`` (δ) is in the feature map's own units; the paper does not give a value, the default
    0.1 suits BatchNorm-scaled conv outputs. ``noise_draws=0`` is Eq. 3 (no noise).
    ``reduce="abs"`` (default) follows the paper's Eq. 3; ``"relu"`` keeps only positive
    derivatives as the official code does (it drops evidence *against* the class, so it is not
    the default). ``theta`` (θ) is stored for :meth:`Diagnosis.relevant_channels`.

    ``precision="bf16"``: bfloat16 autocast (GPUs); gradients reduced in fp32, summed in fp64. The
    model is in eval mode with frozen parameters meanwhile; its flags are restored, no hook is left.

    Raises:
        ValueError / TypeError: bad arguments, a layer that does not exist, a dataset that does
            not yield ``(image, label)``, ``num_classes`` that disagrees with the model, a class
            with no eligible sample.
    """
    ds, loader_bs = as_dataset(dataset)
    batch_size = batch_size or loader_bs or 64
    _check_arguments(ds, samples_per_class, min_confidence, noise, noise_draws, reduce, precision)
    device, dtype = _model_device_dtype(model)
    example = ds[0][0].unsqueeze(0).to(device, dtype)

    with preserved_state(model):
        num_classes, named = _check_model(model, ds[0], example, num_classes, layers)
        names = class_names or class_names_of(ds, num_classes)
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes; pass one name per class")

        with autocast(device, precision):
            labels, _pred, probs = predict(model, IndexedSubset(ds), batch_size, num_workers, desc="select samples")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels span [{int(labels.min())}, {int(labels.max())}] but num_classes={num_classes}")
        chosen, short = select_samples(labels, probs, num_classes, samples_per_class, min_confidence,
                                       allow_empty_classes=allow_empty_classes, class_names=names)
        if short:
            warnings.warn("model_doctor: fewer than samples_per_class eligible samples for class(es) "
                          + ", ".join(f"{names[c]!r}: {samples_per_class - s}" for c, s in short.items()), stacklevel=2)
        with autocast(device, precision):
            correlations, modes = aggregate_correlations(
                model, ds, chosen, named, num_classes, noise=noise, noise_draws=noise_draws, batch_size=batch_size,
                seed=seed, reduce=reduce, num_workers=num_workers)

    settings: dict[str, Any] = {"samples_per_class": samples_per_class, "min_confidence": min_confidence, "noise": noise,
                                "noise_draws": noise_draws, "seed": seed, "reduce": reduce, "theta": theta,
                                "target": "logit", "split_mode": modes, "precision": precision}
    return Diagnosis(layers=[n for n, _ in named], correlations=correlations, class_names=list(names),
                     sample_indices=chosen, settings=settings, model_fingerprint=weights_fingerprint(model),
                     version=__version__, extra={"shortfall": {str(k): v for k, v in short.items()}})
