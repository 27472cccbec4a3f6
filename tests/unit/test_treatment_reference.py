"""Each treatment term equals a naive float64 reference of its equation on a tiny net."""

import pytest
import torch
from conftest import ResidualNet, randomize_bn, self_labelled
from torch import nn

from model_doctor import diagnose
from model_doctor.data.masks import MaskedDataset, expand_foreground
from model_doctor.hooks import count_hooks
from model_doctor.noise import sample_noise
from model_doctor.treatment import ModelDoctorLoss, RRRLoss


class ConvReluNet(nn.Module):
    """The diagnosed conv is followed directly by ReLU(inplace=True)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = nn.functional.max_pool2d(self.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def _setup(net_name):
    torch.manual_seed(0)
    if net_name == "convrelu":
        model, layer = ConvReluNet().double(), "c2"
    else:
        model, layer = randomize_bn(ResidualNet(1, 3, width=4)).double(), "conv2"
    ds = self_labelled(model, n=24, shape=(1, 8, 8))
    diag = diagnose(model, ds, layers=[layer], num_classes=3, samples_per_class=5, min_confidence=0.0,
                    noise_draws=0, allow_empty_classes=True)
    return model, layer, ds, diag


def naive_terms(model, layer, x, y, fg, has, diag, draws, delta, seed, step, v, variant="paper", reduce="abs"):
    """Per sample, per draw: swap m + σ in with a hook, take scalar gradients (create_graph)."""
    module = dict(model.named_modules())[layer]
    r = torch.abs if reduce == "abs" else torch.relu
    norm = diag.normalized(layer)
    with torch.no_grad():
        logits = model(x)
    top2 = logits.topk(2, 1).indices
    ch, sp = [], []
    for b in range(x.shape[0]):
        store = {}
        h = module.register_forward_hook(lambda m, i, o: store.__setitem__("m", o.clone()))
        model(x[b:b + 1])
        h.remove()
        m = store["m"]
        noise = sample_noise(seed, 0, step * 1_000_003 + b, max(draws, 1), tuple(m.shape[1:]), delta, m.dtype) if draws else None
        n, s = int(top2[b, 0]), int(top2[b, 1])
        c_b, s_b = 0.0, 0.0
        for j in range(max(draws, 1)):
            z = m + noise[j][None] if draws else m
            hz = module.register_forward_hook(lambda mod, i, o: z.clone())
            out = model(x[b:b + 1])
            hz.remove()
            gn = torch.autograd.grad(out[0, n], z, create_graph=True)[0][0]
            if variant == "paper":
                gs = torch.autograd.grad(out[0, s], z, create_graph=True)[0][0]
                for k in range(gn.shape[0]):
                    if norm[n, k] < v:
                        c_b = c_b + r(gn[k]).sum()
                    c_b = c_b + r(gs[k]).sum()
            else:
                t = s if n == int(y[b]) else n
                gt = torch.autograd.grad(out[0, t], z, create_graph=True)[0][0]
                gy = torch.autograd.grad(out[0, int(y[b])], z, create_graph=True)[0][0]
                for k in range(gt.shape[0]):
                    if norm[t, k] > v:
                        c_b = c_b + r(gt[k]).sum()
                    if not norm[int(y[b]), k] > v:
                        c_b = c_b + r(gy[k]).sum()
            if has[b]:
                hh, ww = gn.shape[-2:]
                fy, fx = fg.shape[-2] // hh, fg.shape[-1] // ww
                for i in range(hh):
                    for jj in range(ww):
                        bg = 1.0 - fg[b, 0, i * fy:(i + 1) * fy, jj * fx:(jj + 1) * fx].double().mean()
                        s_b = s_b + bg * r(gn[:, i, jj]).sum()
        ch.append(c_b)
        sp.append(s_b)
    return torch.stack([torch.as_tensor(c) for c in ch]).mean(), torch.stack([torch.as_tensor(s) for s in sp]).mean()


@pytest.mark.parametrize("net", ["convrelu", "residual"])
@pytest.mark.parametrize("draws,variant", [(0, "paper"), (3, "paper"), (2, "official")])
def test_terms_equal_naive(net, draws, variant):
    model, layer, ds, diag = _setup(net)
    model.eval()  # per-sample independence, so the naive per-image loop is the exact reference
    x = torch.stack([ds[i][0] for i in range(6)])
    y = torch.stack([ds[i][1] for i in range(6)])
    y[0] = (y[0] + 1) % 3  # one wrong prediction exercises the official variant's branch
    fg = torch.zeros(6, 1, 8, 8, dtype=torch.float64)
    fg[:, :, 2:6, 1:5] = 1.0
    has = torch.tensor([True, False, True, True, False, True])
    loss = ModelDoctorLoss(diag, alpha=1.0, beta=1.0, v=0.3, noise_draws=draws, noise=0.05, variant=variant,
                           normalize=False, seed=4)
    with loss.attach(model):
        logits = model(x)
        terms = loss(logits, y, (x, y, fg, has), step=7)
    assert count_hooks(model) == 0 and "forward" not in vars(model)
    ref_ch, ref_sp = naive_terms(model, layer, x, y, fg, has, diag, draws, 0.05, 4, 7, 0.3, variant)
    torch.testing.assert_close(terms["channel"], ref_ch, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(terms["space"], ref_sp, rtol=1e-6, atol=1e-10)
    # the penalty's parameter gradients match the reference's too (create_graph reaches the weights)
    g1 = torch.autograd.grad(terms["channel"] + terms["space"], list(model.parameters()), allow_unused=True)
    model.zero_grad()
    g2 = torch.autograd.grad(ref_ch + ref_sp, list(model.parameters()), allow_unused=True)
    for p, a, b in zip(model.parameters(), g1, g2):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)


def test_normalised_terms_are_per_element_means():
    model, layer, ds, diag = _setup("convrelu")
    model.eval()
    x = torch.stack([ds[i][0] for i in range(4)])
    y = torch.stack([ds[i][1] for i in range(4)])
    raw = ModelDoctorLoss(diag, alpha=1.0, noise_draws=2, normalize=False)
    nrm = ModelDoctorLoss(diag, alpha=1.0, noise_draws=2, normalize=True)
    with raw.attach(model):
        a = raw(model(x), y, (x, y), 0)["channel"]
    with nrm.attach(model):
        b = nrm(model(x), y, (x, y), 0)["channel"]
    torch.testing.assert_close(b, a / (2 * 5 * 8 * 8))  # J x K x h x w of c2's output


def test_image_without_mask_contributes_zero():
    model, layer, ds, diag = _setup("convrelu")
    model.eval()
    x = torch.stack([ds[i][0] for i in range(4)])
    y = torch.stack([ds[i][1] for i in range(4)])
    loss = ModelDoctorLoss(diag, alpha=0.0, beta=1.0)
    with loss.attach(model):
        t = loss(model(x), y, (x, y, torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.bool)), 0)
    assert float(t["space"]) == 0.0


def test_rrr_equals_reference():
    model, layer, ds, diag = _setup("convrelu")
    x = torch.stack([ds[i][0] for i in range(3)])
    y = torch.stack([ds[i][1] for i in range(3)])
    fg = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    fg[:, :, 3:5, 3:5] = 1
    has = torch.tensor([True, True, False])
    rrr = RRRLoss(weight=2.0, normalize=False)
    with rrr.attach(model):
        v = rrr(model(x), y, (x, y, fg, has), 0)["rrr"]
    ref = 0.0
    for b in range(3):
        xb = x[b:b + 1].clone().requires_grad_(True)
        gx = torch.autograd.grad(torch.log_softmax(model(xb), 1).sum(), xb)[0]
        if has[b]:
            ref += ((1 - fg[b:b + 1]) * gx).pow(2).sum()
    torch.testing.assert_close(v, 2.0 * ref / 3)
    assert count_hooks(model) == 0


def test_expansion_matches_reference_dilation():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(12, 12, generator=g) > 0.9)
    for n in (1, 2, -1):
        got = expand_foreground(mask, n)
        ref = torch.zeros_like(mask)
        for i in range(12):
            for j in range(12):
                win = mask[max(0, i - abs(n)):i + abs(n) + 1, max(0, j - abs(n)):j + abs(n) + 1]
                full = win.numel() == (2 * abs(n) + 1) ** 2
                ref[i, j] = win.any() if n > 0 else (win.all() and full)
        assert torch.equal(got, ref), n


def test_masked_dataset_wrong_size_and_missing():
    ds = torch.utils.data.TensorDataset(torch.zeros(3, 1, 8, 8), torch.zeros(3).long())
    md = MaskedDataset(ds, {1: torch.ones(8, 8), 2: torch.ones(4, 4)}, expand=1)
    assert md[0][3] is False and md[1][3] is True
    with pytest.raises(ValueError, match=r"mask for image 2 is \(4, 4\) but the image is \(8, 8\)"):
        md[2]
    with pytest.raises(ValueError, match="mask for index 9"):
        MaskedDataset(ds, {9: torch.ones(8, 8)})


def test_bad_constraint_inputs():
    model, layer, ds, diag = _setup("convrelu")
    with pytest.raises(ValueError, match="alpha=-1"):
        ModelDoctorLoss(diag, alpha=-1)
    with pytest.raises(ValueError, match="was not diagnosed"):
        ModelDoctorLoss(diag, layers=["c1"])
    other = ResidualNet()
    with pytest.raises(ValueError, match="does not have|channels"):
        with ModelDoctorLoss(diag).attach(other):
            pass
    loss = ModelDoctorLoss(diag, beta=1.0)
    with loss.attach(model), pytest.raises(ValueError, match="MaskedDataset"):
        x = torch.stack([ds[i][0] for i in range(2)])
        loss(model(x), torch.zeros(2).long(), (x,), 0)
