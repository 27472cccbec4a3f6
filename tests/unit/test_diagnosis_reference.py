"""The batched, split (prefix once, tail J times) Eq. 4 equals a naive float64 loop."""

import pytest
import torch
from conftest import ResidualNet, randomize_bn, self_labelled
from torch import nn

from model_doctor import diagnose
from model_doctor.models import SmallCNN
from model_doctor.noise import sample_noise


def naive_correlation(model, dataset, layer, diag, layer_index, reduce="abs"):
    """Per sample, per draw: full forward with the noisy map swapped in, one scalar backward."""
    module = dict(model.named_modules())[layer]
    s = diag.settings
    J, delta, seed = s["noise_draws"], s["noise"], s["seed"]
    model.eval()
    rows = []
    for c in range(diag.num_classes):
        acc = []
        for idx in diag.sample_indices[c]:
            x, y = dataset[idx]
            assert int(y) == c
            store = {}
            h = module.register_forward_hook(lambda m, i, o: store.__setitem__("m", o.detach().clone()))
            with torch.no_grad():
                model(x[None])
            h.remove()
            m = store["m"]
            noise = sample_noise(seed, layer_index, idx, max(J, 1), tuple(m.shape[1:]), delta, torch.float64) if J else None
            per_draw = []
            for j in range(max(J, 1)):
                z = (m + noise[j][None] if J else m.clone()).requires_grad_(True)
                h = module.register_forward_hook(lambda mod, i, o: z.clone())
                logits = model(x[None])
                h.remove()
                (g,) = torch.autograd.grad(logits[0, c], z)
                r = g.abs() if reduce == "abs" else g.relu()
                per_draw.append(r[0].sum((1, 2)))
            acc.append(torch.stack(per_draw).mean(0))
        rows.append(torch.stack(acc).mean(0) if acc else torch.zeros_like(rows[0]))
    return torch.stack(rows)


@pytest.mark.parametrize("net", ["smallcnn", "residual"])
@pytest.mark.parametrize("draws,reduce", [(10, "abs"), (0, "abs"), (3, "relu")])
def test_batched_equals_naive_float64(net, draws, reduce):
    torch.manual_seed(0)
    if net == "smallcnn":
        model, shape, layers = SmallCNN(1, 3, width=4), (1, 12, 12), ["features.4", "features.8"]
    else:
        model, shape, layers = ResidualNet(1, 3, width=4), (1, 8, 8), ["conv2", "conv1"]
    model = randomize_bn(model).double()
    ds = self_labelled(model, n=30, shape=shape)
    diag = diagnose(model, ds, layers=layers, num_classes=3, samples_per_class=6, min_confidence=0.0,
                    noise=0.2, noise_draws=draws, batch_size=7, seed=3, reduce=reduce, allow_empty_classes=True)
    assert set(diag.settings["split_mode"].values()) == {"fx"}
    for li, layer in enumerate(layers):
        ref = naive_correlation(model, ds, layer, diag, li, reduce)
        torch.testing.assert_close(diag.correlation(layer), ref, rtol=1e-6, atol=1e-12)


def test_hook_mode_matches_fx_mode(monkeypatch):
    torch.manual_seed(1)
    model = randomize_bn(ResidualNet(1, 3, width=4)).double()
    ds = self_labelled(model, n=20)
    kw = dict(layers=["conv2"], num_classes=3, samples_per_class=5, min_confidence=0.0, noise=0.1, noise_draws=4,
              batch_size=8, allow_empty_classes=True)
    a = diagnose(model, ds, **kw)
    import model_doctor.diagnosis.engine as eng
    from model_doctor.split import LayerSplit

    monkeypatch.setattr(eng, "LayerSplit", lambda m, n: LayerSplit(m, n, force_hook_mode=True))
    b = diagnose(model, ds, **kw)
    assert b.settings["split_mode"] == {"conv2": "hook"}
    torch.testing.assert_close(a.correlation("conv2"), b.correlation("conv2"), rtol=1e-9, atol=1e-12)


def test_hand_computed_tiny_net():
    """m = conv1x1(x) with weights [2, -3]; y = V · flatten(relu(m)). For x > 0, channel 0 passes
    the ReLU and channel 1 is blocked, so a_0^n = Σ_hw |V[n, channel 0]| and a_1^n = 0."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1, bias=False)
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(8, 2, bias=False)

        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).flatten(1))

    net = Tiny().double()
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([2.0, -3.0]).view(2, 1, 1, 1))
        net.fc.weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 4.0, 9.0, 9.0, 9.0, 9.0],
                                          [3.0, 0.5, 0.5, 1.0, 7.0, 7.0, 7.0, 7.0]]))
    # images: class 0 -> logit0 large; class 1 built to win logit 1
    x0 = torch.full((1, 2, 2), 1.0, dtype=torch.float64)
    x1 = torch.tensor([[[2.0, 0.1], [0.1, 0.1]]], dtype=torch.float64)
    ds = torch.utils.data.TensorDataset(torch.stack([x0, x1]), torch.tensor([0, 1]))
    with torch.no_grad():
        assert net(torch.stack([x0, x1])).argmax(1).tolist() == [0, 1]
    for draws in (0, 10):  # |σ| <= 0.1 never flips the sign of m (>= 0.2 or <= -0.3)
        d = diagnose(net, ds, layers="conv", num_classes=2, samples_per_class=1, min_confidence=0.0,
                     noise=0.1, noise_draws=draws)
        expected = torch.tensor([[1 + 2 + 3 + 4, 0.0], [3 + 0.5 + 0.5 + 1, 0.0]], dtype=torch.float64)
        torch.testing.assert_close(d.correlation("conv"), expected)
