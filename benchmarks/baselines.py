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

__all__ = ["GroupDROLoss", "WithGroups", "jtt_upsampled", "freeze_all_but_last", "swap_balanced", "penultimate",
           "DFR_C", "dfr_val", "dfr_predict", "per_group_subset"]


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


def penultimate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> torch.Tensor:
    """What the model's last ``nn.Linear`` reads, for every item in order (eval mode, no grad): the
    frozen features DFR fits its logistic regression on."""
    from torch.utils.data import DataLoader

    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    handle = last.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().flatten(1).cpu()))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size):
                model(batch[0].to(next(model.parameters()).device))
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(seen).double()


def per_group_subset(groups: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Indices of ``k`` items of every group (a seeded draw; all of a smaller group): a group-labelled
    budget of ``k`` per group out of a larger labelled set."""
    g = torch.Generator().manual_seed(seed)
    out = [idx[torch.randperm(len(idx), generator=g)[:k]] for idx in (torch.nonzero(groups == v).flatten()
                                                                      for v in torch.unique(groups))]
    return torch.sort(torch.cat(out)).values


#: DFR's inverse regularisation strengths for Waterbirds (Kirichenko et al.'s dfr_evaluate_spurious.py)
DFR_C = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


def dfr_val(train_x, val_x, val_y, val_g, seed: int, retrains: int = 20) -> dict[str, Any]:
    """DFR(Val) as its authors' ``dfr_evaluate_spurious.py`` runs it: an L1 logistic regression
    (liblinear) on the frozen features of a group-balanced set, standardised. C is chosen among
    :data:`DFR_C` by the worst-group accuracy on one half of the labelled set of a fit on the other
    half (group-balanced by subsampling); the final classifier averages the coefficients of
    ``retrains`` fits on group-balanced subsamples of the whole set, standardised by the training
    features' mean and std. Departure: the halves are drawn within each group (the authors shuffle
    the whole set), so that a budget of a few images per group leaves every group in both halves.

    Returns ``{"C", "coef", "intercept", "mean", "std", "tuning"}``; :func:`dfr_predict` applies it."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    x, y, g = (np.asarray(a) for a in (val_x, val_y, val_g))
    groups = np.unique(g)

    def balanced(idx: np.ndarray) -> np.ndarray:
        parts = [rng.permutation(idx[g[idx] == v]) for v in groups]
        m = min(len(p) for p in parts)
        return np.concatenate([p[:m] for p in parts])

    fit_half = np.concatenate([rng.permutation(np.nonzero(g == v)[0])[: (g == v).sum() // 2] for v in groups])
    score_half = np.setdiff1d(np.arange(len(y)), fit_half)
    fit_half = balanced(fit_half)
    scaler = StandardScaler().fit(x[fit_half])
    tuning = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for c in DFR_C:
            lr = _l1_logistic(c, seed).fit(scaler.transform(x[fit_half]), y[fit_half])
            hit = lr.predict(scaler.transform(x[score_half])) == y[score_half]
            tuning[c] = float(min(hit[g[score_half] == v].mean() for v in groups))
        best = max(tuning, key=lambda c: (tuning[c], -DFR_C.index(c)))   # ties: the first listed (weakest penalty)
        final = StandardScaler().fit(np.asarray(train_x))
        coefs, icpts = [], []
        for _ in range(retrains):
            idx = balanced(np.arange(len(y)))
            lr = _l1_logistic(best, seed).fit(final.transform(x[idx]), y[idx])
            coefs.append(lr.coef_)
            icpts.append(lr.intercept_)
    return {"C": best, "coef": np.mean(coefs, 0), "intercept": np.mean(icpts, 0), "mean": final.mean_,
            "std": final.scale_, "tuning": tuning,
            "unconverged": sum(issubclass(w.category, ConvergenceWarning) for w in caught)}


def _l1_logistic(c: float, seed: int):
    """liblinear's L1 logistic regression, spelt as this scikit-learn wants it (``penalty`` is
    deprecated from 1.8 in favour of ``l1_ratio``); seeded, since liblinear shuffles and an unseeded
    fit moves DFR's figures from one run to the next."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 8):
        return LogisticRegression(l1_ratio=1.0, C=c, solver="liblinear", random_state=seed)
    return LogisticRegression(penalty="l1", C=c, solver="liblinear", random_state=seed)


def dfr_predict(fit: dict[str, Any], x) -> torch.Tensor:
    """The class :func:`dfr_val`'s averaged logistic regression predicts for features ``x``."""
    import numpy as np

    z = (np.asarray(x) - fit["mean"]) / fit["std"]
    score = z @ fit["coef"].T + fit["intercept"]
    return torch.as_tensor((score[:, 0] > 0).astype(np.int64) if score.shape[1] == 1 else score.argmax(1))
