"""The field's baselines against naive float64 references: GroupDRO's objective and weight update,
JTT's upsampling, DFR's last-layer retraining, and the swap-balanced set."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from benchmarks.baselines import GroupDROLoss, WithGroups, freeze_all_but_last, jtt_upsampled, swap_balanced
from model_doctor.study import ArmSpec, run_study
from model_doctor.training import FitConfig
from model_doctor.treatment.pool import AnnotatedPool


def test_groupdro_is_the_weighted_group_loss_with_the_exponentiated_update():
    torch.manual_seed(0)
    logits = torch.randn(8, 3, dtype=torch.float64)
    labels = torch.randint(0, 3, (8,))
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    term = GroupDROLoss(num_groups=4, eta=0.5)
    q = [0.25] * 4
    for _step in range(2):
        with term.attach(nn.Linear(1, 1)):
            out = term(logits, labels, (None, labels, groups), 0)["groupdro"]
        ce = [-math.log(math.exp(logits[i, labels[i]]) / sum(math.exp(v) for v in logits[i])) for i in range(8)]
        loss = [sum(ce[i] for i in range(8) if groups[i] == g) / max(1, int((groups == g).sum())) for g in range(4)]
        q = [q[g] * math.exp(0.5 * loss[g]) if (groups == g).any() else q[g] for g in range(4)]
        q = [v / sum(q) for v in q]
        robust = sum(q[g] * loss[g] for g in range(4))
        assert float(out) + sum(ce) / 8 == pytest.approx(robust, rel=1e-6)
    assert term.q.tolist() == pytest.approx(q)  # the empty group keeps its weight, renormalised


def test_with_groups_appends_the_group_and_checks_the_length():
    ds = TensorDataset(torch.zeros(3, 1), torch.tensor([0, 1, 0]))
    assert WithGroups(ds, torch.tensor([2, 1, 0]))[0][-1] == 2
    with pytest.raises(ValueError, match="2 group labels for 3 images"):
        WithGroups(ds, torch.tensor([0, 1]))


class Const(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1) + self.w


def test_jtt_repeats_the_errors():
    ds = TensorDataset(torch.zeros(5, 1), torch.tensor([0, 1, 0, 1, 1]))  # Const predicts class 0
    up, n = jtt_upsampled(Const(), ds, factor=4)
    assert n == 3 and len(up) == 5 + 3 * 3
    assert sorted(int(up[i][1]) for i in range(5, len(up))) == [1] * 9
    with pytest.raises(ValueError, match="factor=0"):
        jtt_upsampled(Const(), ds, 0)


def test_dfr_arm_changes_the_last_layer_only(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    data = TensorDataset(torch.randn(32, 1, 6, 6), torch.randint(0, 3, (32,)))
    arm = ArmSpec("dfr", prepare=freeze_all_but_last, fit={"freeze_bn": True})
    study = run_study(net, data, data, [arm], FitConfig(epochs=2, lr=0.1, batch_size=8), 3, tmp_path)
    after = study.arms["dfr"].model.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(v, after[k]) == (not k.startswith("4.")), k  # features and BN statistics unchanged


def test_swap_balanced_pastes_each_foreground_on_other_backgrounds():
    x = torch.arange(4, dtype=torch.float64).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    fg = torch.zeros(4, 1, 2, 2)
    fg[:, :, 0, 0] = 1
    pool = AnnotatedPool(x, torch.tensor([0, 1, 0, 1]), fg)
    ds = swap_balanced(pool, partners=2, seed=0)
    assert len(ds) == 12
    for i in range(4, 12):
        img, y = ds[i]
        assert img[0, 0, 0] == (i % 4) and int(y) == [0, 1, 0, 1][i % 4]  # the foreground pixel is its own image's


def test_penultimate_is_what_the_last_linear_layer_reads():
    from benchmarks.baselines import penultimate
    from model_doctor.models import build_model

    torch.manual_seed(0)
    model = build_model("tinycnn", in_channels=3, num_classes=2, image_size=16).eval()
    x = torch.randn(5, 3, 16, 16)
    feats = penultimate(model, TensorDataset(x, torch.zeros(5, dtype=torch.long)), batch_size=2)
    with torch.no_grad():
        ref = model.pool(model.features(x)).flatten(1).double()
    assert torch.allclose(feats, ref, atol=1e-6)
    assert torch.allclose(model.classifier(feats.float()), model(x), atol=1e-5)


def test_dfr_val_reads_the_core_feature_on_a_balanced_set_and_predicts_as_its_average():
    """Feature 0 is the class, feature 1 the place: a logistic regression fitted on group-balanced
    images must lean on feature 0 and get every group right; the averaged classifier predicts what
    a reference computation of its standardised linear score says."""
    import numpy as np

    from benchmarks.baselines import DFR_C, dfr_predict, dfr_val, per_group_subset

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    place = np.where(rng.random(400) < 0.5, y, 1 - y)
    x = np.stack([y + 0.15 * rng.normal(size=400), 3 * place + 0.1 * rng.normal(size=400), rng.normal(size=400)], 1)
    g = 2 * y + place
    keep = per_group_subset(torch.as_tensor(g), 20, seed=0).numpy()
    assert all((g[keep] == v).sum() == 20 for v in range(4))
    train_x = x + 5.0                                        # standardised by the training features, not the val ones
    fit = dfr_val(train_x, x[keep], y[keep], g[keep], seed=0, retrains=5)
    assert fit["C"] in DFR_C and set(fit["tuning"]) == set(DFR_C)
    pred = dfr_predict(fit, x).numpy()
    assert min((pred == y)[g == v].mean() for v in range(4)) > 0.9
    ref = ((x - train_x.mean(0)) / train_x.std(0)) @ fit["coef"][0] + fit["intercept"][0] > 0
    assert np.array_equal(pred, ref.astype(np.int64))
