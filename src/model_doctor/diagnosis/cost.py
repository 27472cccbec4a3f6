"""What a diagnosis costs, in FLOPs, before running it.

Why: a user with a large model wants to know whether ``diagnose`` takes a minute or a day. The
work is three parts (``diagnose`` does nothing else that grows with the data):

* the selection pass: one forward (no graph) over every candidate image;
* per layer r, the prefix forward (no graph) of each selected image, once;
* per layer r, the tail forward + backward (to the feature map only; parameters are frozen) of
  each selected image's J noisy copies.

``total = candidates·F_model + Σ_r selected·(F_prefix(r) + J·F_tail(r))``. The counts come from
:class:`torch.utils.flop_counter.FlopCounterMode` run on one example through the same
:class:`~model_doctor.split.LayerSplit` ``diagnose`` uses, so hook-mode layers (whose "tail" is
the whole network) are counted as they run. Only matrix products and convolutions are counted;
element-wise ops (noise, BatchNorm, ReLU, pooling) are counted separately as
:attr:`DiagnosisCost.copy_elements`, since at the usual last layers the tail has almost no
convolution left and that element-wise work is what grows with J. ``benchmarks/bench_diagnose.py``
fits ``seconds ≈ a + total / rate + copy_elements · c`` on this machine (docs/results/performance/diagnosis.md).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..data.base import IndexedSubset, as_dataset, sized
from ..hooks import preserved_state
from ..layers import LayerSpec, resolve_layers
from ..precision import autocast
from ..split import LayerSplit
from .engine import _model_device_dtype, aggregate_correlations, predict

__all__ = ["DiagnosisCost", "diagnosis_flops", "estimate_diagnosis"]


@dataclass
class DiagnosisCost:
    """Per-image FLOPs of each part, and the total for the given counts."""

    model_forward: int                                          # F_model: one image, full forward
    prefix: dict[str, int] = field(default_factory=dict)        # F_prefix(r): one image
    tail: dict[str, int] = field(default_factory=dict)          # F_tail(r): one copy, forward + backward
    modes: dict[str, str] = field(default_factory=dict)         # split mode per layer (fx | hook)
    feature_elements: dict[str, int] = field(default_factory=dict)  # numel of one image's feature map at r
    candidates: int = 0
    selected: int = 0
    noise_draws: int = 10

    @property
    def total(self) -> int:
        j = max(self.noise_draws, 1)
        return self.candidates * self.model_forward + sum(
            self.selected * (self.prefix[r] + j * self.tail[r]) for r in self.prefix)

    @property
    def copy_elements(self) -> int:
        """``selected · J · Σ_r numel(m_r)``: what the tail's element-wise work (noise, BatchNorm,
        ReLU, pooling, their backward) scales with; it dominates when the tail has few convolutions."""
        return self.selected * max(self.noise_draws, 1) * sum(self.feature_elements.values())


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def diagnosis_flops(model: nn.Module, example: torch.Tensor, layers: LayerSpec = "auto", *, candidates: int,
                    selected: int, noise_draws: int = 10) -> DiagnosisCost:
    """Count the FLOPs of ``diagnose(model, …)`` for ``candidates`` training images of which
    ``selected`` (≤ samples_per_class × classes) pass the confidence test.

    Args:
        example: one input batch ``[1, C, H, W]`` of the size you will diagnose at.
    """
    if example.dim() < 2 or example.shape[0] != 1:
        raise ValueError(f"example has shape {tuple(example.shape)}; pass one image as a batch of 1, e.g. x[:1]")
    if candidates < 0 or selected < 0 or noise_draws < 0:
        raise ValueError(f"candidates={candidates}, selected={selected}, noise_draws={noise_draws}; all must be >= 0")
    if selected > candidates:
        raise ValueError(f"selected={selected} > candidates={candidates}; selected images come from the candidates")
    with preserved_state(model):
        named = resolve_layers(model, layers, example)
        with torch.no_grad():
            cost = DiagnosisCost(_flops(lambda: model(example)), candidates=candidates, selected=selected,
                                 noise_draws=noise_draws)
        for name, _module in named:
            split = LayerSplit(model, name)
            cost.modes[name] = split.mode
            with torch.no_grad():
                m, extras = split.prefix(example)
                cost.feature_elements[name] = int(m[0].numel())
                cost.prefix[name] = _flops(lambda: split.prefix(example))
            z = m.detach().requires_grad_(True)

            def tail() -> None:
                out = split.tail(z, extras, 1)
                out[:, 0].sum().backward()  # FlopCounterMode's module hooks refuse autograd.grad on a leaf

            cost.tail[name] = _flops(tail)
    return cost



def estimate_diagnosis(model: nn.Module, dataset, layers: LayerSpec = "auto", *, num_classes: int,
                       samples_per_class: int = 100, noise_draws: int = 10, noise: float = 0.1, batch_size: int = 64,
                       calibrate: int = 64, repeats: int = 3, precision: str = "fp32") -> dict:
    """Predict how long ``diagnose`` takes on ``dataset`` here, by timing its two parts on a few images.

    On the first ``calibrate`` images, after a warm-up, the median of ``repeats`` timings of the
    selection forward (per candidate: ``s``) and of the gradient phase at every layer (per
    selected image: ``g``). Estimate = candidates·s + selected·g, where ``selected`` is at most
    min(candidates, classes · samples_per_class): how many pass the confidence test is known
    only after the selection pass, so the estimate is an upper bound. Also the FLOP counts.
    """
    ds, _ = as_dataset(dataset)
    n = sized(ds)
    if n == 0:
        raise ValueError("the dataset is empty; pass the training split")
    if calibrate < 1 or repeats < 1:
        raise ValueError(f"calibrate={calibrate}, repeats={repeats}; both must be >= 1")
    m = min(n, calibrate)
    device, dtype = _model_device_dtype(model)
    example = ds[0][0][None].to(device, dtype)
    part = IndexedSubset(ds, list(range(m)))

    def median_time(fn) -> float:
        fn()  # warm-up: tracing, allocator, kernels
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times) / m

    with preserved_state(model), autocast(device, precision):
        named = resolve_layers(model, layers, example)
        sel = median_time(lambda: predict(model, part, batch_size))
        grad = median_time(lambda: aggregate_correlations(
            model, ds, {0: list(range(m))}, named, num_classes, noise=noise, noise_draws=noise_draws,
            batch_size=batch_size, seed=0, reduce="abs"))
    selected = min(n, num_classes * samples_per_class)
    cost = diagnosis_flops(model, example, [name for name, _ in named], candidates=n, selected=selected,
                           noise_draws=noise_draws)
    return {"candidates": n, "selected_at_most": selected, "calibration_images": m, "repeats": repeats,
            "seconds_per_candidate": sel, "seconds_per_selected": grad,
            "estimate_seconds": n * sel + selected * grad, "layers": [name for name, _ in named],
            "gflops": cost.total / 1e9, "gflops_selection": n * cost.model_forward / 1e9,
            "copy_elements": cost.copy_elements, "split_mode": cost.modes}
