"""How well a diagnosis's per-sample deviation detects the model's own errors."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["misclassification_auroc"]


def misclassification_auroc(deviation: torch.Tensor, confidence: torch.Tensor, wrong: torch.Tensor) -> dict[str, Any]:
    """AUROC for detecting wrong predictions: deviation (higher = wrong), 1 - max-softmax, and their
    combination (mean of the two ranks, no fitting)."""
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    y = wrong.numpy().astype(int)
    if y.min() == y.max():
        return {"auroc_deviation": None, "auroc_msp": None, "auroc_combined": None}
    dev, msp = deviation.double().numpy(), (1.0 - confidence.double()).numpy()
    comb = (rankdata(dev) + rankdata(msp)) / 2.0
    return {"auroc_deviation": float(roc_auc_score(y, dev)), "auroc_msp": float(roc_auc_score(y, msp)),
            "auroc_combined": float(roc_auc_score(y, comb))}
