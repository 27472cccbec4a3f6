"""Hooks, model state, layer resolution, artifact round trip and bad inputs."""

import pytest
import torch
from conftest import ResidualNet, randomize_bn, self_labelled
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from model_doctor import Diagnosis, diagnose, examine, resolve_layers
from model_doctor.diagnosis import select_samples
from model_doctor.hooks import count_hooks
from model_doctor.models import SmallCNN


@pytest.fixture
def net_and_data():
    torch.manual_seed(0)
    model = randomize_bn(SmallCNN(1, 3, width=4))
    ds = self_labelled(model, n=30, shape=(1, 12, 12), dtype=torch.float32)
    return model, ds


KW = dict(num_classes=3, samples_per_class=4, min_confidence=0.0, noise_draws=2, allow_empty_classes=True)


def test_state_restored_and_no_hooks_after_success(net_and_data):
    model, ds = net_and_data
    model.train()
    model.features[0].weight.requires_grad_(False)  # a user's frozen layer stays frozen
    flags = [p.requires_grad for p in model.parameters()]
    bn_stats = model.features[1].running_mean.clone()
    diagnose(model, ds, layers="auto:2", **KW)
    assert count_hooks(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    torch.testing.assert_close(model.features[1].running_mean, bn_stats)  # BN ran in eval mode


def test_no_hooks_and_state_after_exception(net_and_data, monkeypatch):
    model, ds = net_and_data
    model.train()
    import model_doctor.diagnosis.engine as eng

    def boom(*a, **k):
        raise RuntimeError("forced")

    monkeypatch.setattr(eng, "feature_gradients", boom)
    with pytest.raises(RuntimeError, match="forced"):
        diagnose(model, ds, layers="auto", **KW)
    assert count_hooks(model) == 0
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_dataloader_accepted_and_same_result(net_and_data):
    model, ds = net_and_data
    a = diagnose(model, ds, layers="features.8", batch_size=5, **KW)
    b = diagnose(model, DataLoader(ds, batch_size=11), layers="features.8", **KW)
    torch.testing.assert_close(a.correlation("features.8"), b.correlation("features.8"))  # batch-size independent


def test_auto_uses_execution_order():
    class Reordered(nn.Module):  # registered a, b; runs b then a
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            self.b = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.a(self.b(x)).mean((2, 3)))

    m = Reordered()
    x = torch.randn(2, 1, 6, 6)
    assert [n for n, _ in resolve_layers(m, "auto", x)] == ["a"]
    assert [n for n, _ in resolve_layers(m, "auto:2", x)] == ["b", "a"]
    assert [n for n, _ in resolve_layers(m, [m.b, "fc"])] == ["b", "fc"]
    assert [n for n, _ in resolve_layers(m, lambda n, mod: isinstance(mod, nn.Conv2d))] == ["a", "b"]


def test_unknown_layer_lists_closest_names(net_and_data):
    model, ds = net_and_data
    with pytest.raises(ValueError, match=r"unknown layer 'features\.88'.*closest valid names: features\.8"):
        diagnose(model, ds, layers="features.88", **KW)
    with pytest.raises(ValueError, match="auto:K"):
        resolve_layers(model, "auto:x", torch.zeros(1, 1, 8, 8))


def test_wrong_num_classes(net_and_data):
    model, ds = net_and_data
    with pytest.raises(ValueError, match="num_classes=5 but the model outputs 3 logits"):
        diagnose(model, ds, layers="auto", **{**KW, "num_classes": 5})


def test_empty_class_names_the_class(net_and_data):
    model, ds = net_and_data
    with pytest.raises(ValueError, match=r"class \d \('[a-z]+'\) has no training sample"):
        diagnose(model, ds, layers="auto", num_classes=3, min_confidence=0.999999, class_names=["cat", "dog", "eel"])


def test_non_image_dataset():
    model = SmallCNN(1, 3, width=4)
    with pytest.raises(ValueError, match=r"expected a \[C, H, W\] tensor"):
        diagnose(model, TensorDataset(torch.randn(5, 10), torch.zeros(5).long()), num_classes=3)
    with pytest.raises(ValueError, match="must yield"):
        diagnose(model, [torch.randn(1, 8, 8)] * 3, num_classes=3)
    with pytest.raises(TypeError, match="Dataset or DataLoader"):
        diagnose(model, 42, num_classes=3)


def test_selection_order_and_shortfall():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    probs = torch.tensor([[0.95, 0.05, 0], [0.99, 0.01, 0], [0.5, 0.5, 0], [0.0, 0.97, 0.03], [0.9, 0.1, 0], [0, 0, 1.0]])
    chosen, short = select_samples(labels, probs, 3, 2, 0.9)
    assert chosen == {0: [1, 0], 1: [3], 2: [5]}  # highest confidence first; 0.9 is not > 0.9
    assert short == {1: 1, 2: 1}


def test_save_load_roundtrip_exact(net_and_data, tmp_path):
    model, ds = net_and_data
    d = diagnose(model, ds, layers="auto:2", **KW)
    d.save(tmp_path / "diag")
    e = Diagnosis.load(tmp_path / "diag")
    assert e.layers == d.layers and e.class_names == d.class_names and e.settings == d.settings
    assert e.sample_indices == d.sample_indices and e.model_fingerprint == d.model_fingerprint
    for layer in d.layers:
        assert torch.equal(e.correlation(layer), d.correlation(layer))
    assert not list((tmp_path / "diag").glob("*.tmp"))


def test_diagnosis_on_other_model_is_clear_error(net_and_data):
    model, ds = net_and_data
    d = diagnose(model, ds, layers="features.8", **KW)
    with pytest.raises(ValueError, match="has 16 channels but the diagnosis has 16|channels but the diagnosis"):
        d.check_compatible(SmallCNN(1, 3, width=8))
    with pytest.raises(ValueError, match="does not have"):
        d.check_compatible(ResidualNet())
    with pytest.raises(ValueError, match="weights differ"):
        d.check_compatible(SmallCNN(1, 3, width=4), same_weights=True)


def test_relevant_channels_threshold(net_and_data):
    model, ds = net_and_data
    d = diagnose(model, ds, layers="features.8", **KW)
    norm = d.normalized("features.8")
    assert torch.all((norm >= 0) & (norm <= 1))
    rel = d.relevant_channels("features.8")
    assert torch.equal(rel, norm > 0.2)
    with pytest.raises(ValueError, match="theta"):
        d.relevant_channels("features.8", theta=3)


def test_examine_shapes_and_scores(net_and_data):
    model, ds = net_and_data
    d = diagnose(model, ds, layers="auto:2", **KW)
    ex = examine(model, d, ds, top_k=3)
    n = len(ds)
    assert ex.deviation.shape == (n,) and torch.all((ex.deviation >= 0) & (ex.deviation <= 1))
    assert ex.top_channels["features.8"].shape == (n, 3)
    assert ex.derivative_maps["features.8"].shape == (n, 12, 12)
    assert count_hooks(model) == 0
