"""diagnosis_flops against a hand count for a tiny conv net (what the scaling table's model rests on)."""

import pytest
import torch
from torch import nn

from model_doctor.diagnosis import diagnosis_flops


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 3, 1), nn.Flatten(), nn.Linear(192, 4))


def test_counts_match_a_hand_count():
    x = torch.randn(1, 1, 8, 8)
    cost = diagnosis_flops(_net(), x, ["0"], candidates=50, selected=20, noise_draws=10)
    conv1 = 2 * (1 * 9) * 2 * 64          # multiply-adds x 2, per output element
    conv2 = 2 * 2 * 3 * 64
    linear = 2 * 192 * 4
    assert cost.model_forward == conv1 + conv2 + linear
    assert cost.prefix == {"0": conv1}
    # tail forward (conv2 + linear) + backward to the feature map only (grad-input of each, same cost)
    assert cost.tail == {"0": 2 * (conv2 + linear)}
    assert cost.modes == {"0": "fx"} and cost.feature_elements == {"0": 2 * 64}
    assert cost.copy_elements == 20 * 10 * 2 * 64
    assert cost.total == 50 * (conv1 + conv2 + linear) + 20 * (conv1 + 10 * 2 * (conv2 + linear))


def test_model_left_as_found_and_bad_counts_refused():
    net = _net().train()
    net[0].weight.requires_grad_(False)
    diagnosis_flops(net, torch.randn(1, 1, 8, 8), ["2"], candidates=1, selected=1)
    assert net.training and not net[0].weight.requires_grad and net[2].weight.requires_grad
    with pytest.raises(ValueError, match="selected=5 > candidates=2"):
        diagnosis_flops(net, torch.randn(1, 1, 8, 8), ["2"], candidates=2, selected=5)
    with pytest.raises(ValueError, match="batch of 1"):
        diagnosis_flops(net, torch.randn(3, 1, 8, 8), ["2"], candidates=2, selected=1)


def test_estimate_refuses_bad_calibration():
    from torch.utils.data import TensorDataset

    from model_doctor.diagnosis import estimate_diagnosis

    ds = TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="calibrate=0"):
        estimate_diagnosis(_net(), ds, ["0"], num_classes=4, calibrate=0)
    est = estimate_diagnosis(_net(), ds, ["0"], num_classes=4, samples_per_class=1, calibrate=2, repeats=1)
    assert est["selected_at_most"] == 4 and est["calibration_images"] == 2 and est["estimate_seconds"] > 0
