"""Cached runs, mask views and the mean ± std formatting used by the evidence studies."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from model_doctor.data.masks import ExpandedMasks, LimitedMasks, expand_foreground
from model_doctor.experiment import cached_run, copy_of, fmt, spread, subset
from model_doctor.training import FitConfig


class Boxes(torch.utils.data.Dataset):
    """(image, label, box foreground, has_mask) items, labels 0..2."""

    def __init__(self, n=30, size=12):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        fg = torch.zeros(1, self.size, self.size)
        fg[:, 3 + i % 3:7 + i % 3, 4:8] = 1
        return torch.zeros(1, self.size, self.size), i % 3, fg, True


def test_expanded_masks_match_expand_foreground():
    ds = Boxes()
    for px in (0, 2, -1):
        view = ExpandedMasks(ds, px)
        for i in (0, 1, 2):
            ref = expand_foreground(ds[i][2][0], px).float()
            assert torch.equal(view[i][2][0], ref), (px, i)
            assert view[i][1] == ds[i][1] and view[i][3] is True


def test_limited_masks_keep_per_class_and_are_seeded():
    ds = Boxes(n=30)
    a, b = LimitedMasks(ds, 4, seed=1), LimitedMasks(ds, 4, seed=1)
    assert a.counts == {0: 4, 1: 4, 2: 4}
    assert [a[i][3] for i in range(30)] == [b[i][3] for i in range(30)]
    kept = [i for i in range(30) if a[i][3]]
    assert sorted(torch.tensor([i % 3 for i in kept]).bincount().tolist()) == [4, 4, 4]
    assert LimitedMasks(ds, 100).counts == {0: 10, 1: 10, 2: 10}  # fewer available than asked: all kept, counted
    with pytest.raises(ValueError, match="per_class=-1"):
        LimitedMasks(ds, -1)


def test_fmt_and_spread():
    m, s, _ = spread([0.9, 0.92, 0.94])
    assert m == pytest.approx(0.92) and s == pytest.approx(0.02)
    assert fmt([0.9, 0.92, 0.94]) == "92.00 ± 2.00"
    assert fmt([0.01, -0.01], signed=True) == "+0.00 ± 1.41"
    assert fmt([0.5]) == "50.00 (1 run)"
    assert fmt([]) == "—"


def test_subset_is_seeded_and_sorted():
    ds = TensorDataset(torch.arange(100.0))
    a, b = subset(ds, 10, seed=3), subset(ds, 10, seed=3)
    assert a.indices == b.indices == sorted(a.indices) and len(set(a.indices)) == 10
    assert subset(ds, None) is ds and subset(ds, 1000) is ds
    with pytest.raises(ValueError, match="subset size 0"):
        subset(ds, 0)


def test_cached_run_trains_once_and_reloads(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 6, 6)
    y = (x.mean((1, 2, 3)) > 0).long()
    data = TensorDataset(x, y)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 2))
    cfg = FitConfig(epochs=2, lr=0.1, batch_size=16)
    m1, r1 = cached_run(tmp_path / "run", copy_of(net), data, data, cfg, 2, test=data)
    assert (tmp_path / "run" / "result.json").is_file() and not (tmp_path / "run" / "checkpoint.pt").exists()
    assert set(r1) >= {"val_acc", "best_epoch", "test_acc", "last_losses"}
    calls = []
    m2, r2 = cached_run(tmp_path / "run", lambda: calls.append(1) or nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(),
                                                                                     nn.Linear(32, 2)),
                        data, data, FitConfig(epochs=50), 2, test=data)
    assert r2 == json.loads((tmp_path / "run" / "result.json").read_text()) == r1
    for p1, p2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(p1, p2)  # loaded from best.safetensors, not retrained for 50 epochs
    assert not any(torch.equal(a, b) for a, b in zip(net.state_dict().values(), m1.state_dict().values())
                   if a.is_floating_point())  # the original model was copied, not trained in place
