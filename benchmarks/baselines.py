"""The spurious-correlation field's baselines, as study arms next to the space methods (the lab's: only `bench_waterbirds` uses them).

- **GroupDRO** (Sagawa et al. 2020), online: the mean CE is replaced by ``Σ_g q_g L_g``, the
  group weights following ``q_g ∝ q_g · exp(η L_g)`` each step. Needs the group of every training
  image (an oracle here: the upper reference). Batches carry the group index last
  (:class:`WithGroups`).
- **JTT** (Liu et al. 2021): the images a first ERM model gets wrong in training are repeated
  ``factor`` times (:func:`jtt_upsampled`). Here the first model is the original itself and the
  second is a fine-tune of it (the other arms' schedule), not a model trained from scratch.
- **DFR** (Kirichenko et al. 2022): only the last linear layer is retrained, on a small
  group-balanced set (:func:`freeze_all_but_last`; BatchNorm frozen through the arm's
  ``freeze_bn``). With masks, the balanced set is the annotated images plus their background
  swaps (:func:`swap_balanced`), so every (class, background) pairing appears.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from model_doctor.treatment.pool import AnnotatedPool, composite
from model_doctor.treatment.terms import LossTerm

__all__ = ["GroupDROLoss", "WithGroups", "jtt_upsampled", "freeze_all_but_last", "swap_balanced"]


class WithGroups(Dataset):
    """``dataset`` items with their group index appended (what :class:`GroupDROLoss` reads)."""

    def __init__(self, dataset: Dataset, groups: torch.Tensor):
        from model_doctor.data.base import sized

        if len(groups) != sized(dataset):
            raise ValueError(f"{len(groups)} group labels for {sized(dataset)} images; give one per image")
        self.dataset, self.groups = dataset, groups.long()

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple:
        return (*self.dataset[i], self.groups[i])


class GroupDROLoss(LossTerm):
    """``Σ_g q_g L_g − mean CE`` (so that CE + this term is the GroupDRO objective); ``eta`` is the
    step of the exponentiated-gradient update of ``q`` (Sagawa et al.: 0.01)."""

    name = "groupdro"

    def __init__(self, num_groups: int, eta: float = 0.01):
        super().__init__(1.0)
        if num_groups < 2 or eta < 0:
            raise ValueError(f"num_groups={num_groups}, eta={eta}; use >= 2 groups and eta >= 0")
        self.eta, self.q = float(eta), torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)

    def value(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor, batch: Sequence[Any],
              step: int) -> torch.Tensor:
        g = torch.as_tensor(batch[-1]).to(logits.device).long()
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        n = len(self.q)
        counts = torch.zeros(n, device=ce.device).index_add(0, g, torch.ones_like(ce))
        losses = torch.zeros(n, device=ce.device).index_add(0, g, ce) / counts.clamp(min=1)
        with torch.no_grad():
            present = (counts > 0).cpu()
            q = self.q.clone()
            q[present] = q[present] * torch.exp(self.eta * losses.detach().double().cpu()[present])
            self.q = q / q.sum()
        return (self.q.to(losses) * losses).sum() - ce.mean()


def jtt_upsampled(model: nn.Module, train: Dataset, factor: int, batch_size: int = 256) -> tuple[Dataset, int]:
    """(training set with ``model``'s training errors repeated ``factor`` times in all, error count)."""
    from model_doctor.data.base import hits_of

    if factor < 1:
        raise ValueError(f"factor={factor}; use an upweighting factor >= 1 (Liu et al.: 20-100)")
    errors = torch.nonzero(~hits_of(model, train, batch_size)).flatten().tolist()
    if not errors or factor == 1:
        return train, len(errors)
    return ConcatDataset([train] + [Subset(train, errors)] * (factor - 1)), len(errors)


def freeze_all_but_last(model: nn.Module) -> nn.Module:
    """Leave only the last ``nn.Linear`` trainable (DFR); returns ``model``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to retrain; DFR needs a linear classifier")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in linears[-1].parameters():
        p.requires_grad_(True)
    return model


def swap_balanced(pool: AnnotatedPool, partners: int = 4, seed: int = 0) -> Dataset:
    """The annotated images and, for each, ``partners`` composites of its foreground on other
    annotated images' backgrounds (every class's background in turn): ``(image, label)`` pairs."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [pool.images], [pool.labels]
    for _ in range(partners):
        b = torch.randperm(len(pool), generator=g)
        xs.append(composite(pool.images, pool.foreground, pool.images[b], pool.foreground[b]))
        ys.append(pool.labels)
    return TensorDataset(torch.cat(xs).float(), torch.cat(ys))
