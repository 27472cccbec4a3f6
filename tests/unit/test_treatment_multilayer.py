"""Eq. 5-6 on several layers of a model torch.fx cannot trace (the hook fallback), and what
``tail_bn="train"`` computes, each against a naive float64 reference.

``tail_bn="eval"``: per-image derivatives (BatchNorm with running statistics), one image and one
draw at a time. ``tail_bn="train"``: the derivative of the *batch sum* of the chosen logits
through BatchNorm's batch statistics, ``∂(Σ_i y_i[c_i]) / ∂z_b`` — each image's gradient also
carries its effect on the other images through the batch mean and variance. The reference runs
the whole network on the batch (repeated J times, sample-major) in train mode with the layer's
output swapped for ``m + σ``, (BatchNorm momentum 0, so no pass changes the running statistics).
"""

import warnings

import pytest
import torch
from conftest import randomize_bn, self_labelled
from torch import nn

from model_doctor import diagnose
from model_doctor.noise import sample_noise
from model_doctor.treatment import ModelDoctorLoss
from model_doctor.treatment.instrument import Instrument

LAYERS = ["c1", "c2"]


class Untraceable(nn.Module):
    """Two conv + BatchNorm stages behind a data-dependent branch: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        # momentum 0: train-mode passes leave the running statistics as they are, so the library
        # and the reference (which run different numbers of passes) read the same ones
        self.c1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.0)
        self.c2, self.bn2 = nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5, momentum=0.0)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        if x.sum() > -1e9:   # always taken; fx cannot trace a branch on a tensor
            x = torch.relu(self.bn1(self.c1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.c2(x))), 2)
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = randomize_bn(Untraceable()).double()
    ds = self_labelled(model, n=24, shape=(1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = diagnose(model, ds, layers=LAYERS, num_classes=3, samples_per_class=5, min_confidence=0.0,
                        noise_draws=0, allow_empty_classes=True)
    x = torch.stack([ds[i][0] for i in range(6)])
    y = torch.stack([ds[i][1] for i in range(6)])
    y[0] = (y[0] + 1) % 3   # one wrong prediction exercises the official variant's branch
    fg = torch.zeros(6, 1, 8, 8, dtype=torch.float64)
    fg[:, :, 2:6, 1:5] = 1.0
    has = torch.tensor([True, False, True, True, False, True])
    return model, diag, x, y, fg, has


def _naive_grads(model, layer, li, x, classes, draws, delta, seed, step, tail_bn):
    """``[B, J, K, h, w]`` gradients of each class vector's logits w.r.t. ``m + σ`` at ``layer``;
    ``m`` from a train-mode forward (the one the CE loss uses)."""
    module = dict(model.named_modules())[layer]
    b, j = x.shape[0], max(draws, 1)
    store = {}
    model.train()
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("m", o))
    model(x)                                            # the training forward that the CE loss uses
    h.remove()
    m = store["m"]
    zs = []
    for i in range(b):
        noise = sample_noise(seed, li, step * 1_000_003 + i, j, tuple(m.shape[1:]), delta, m.dtype) if draws else None
        zs.append([m[i:i + 1] + noise[d][None] if draws else m[i:i + 1] for d in range(j)])
    out_grads = []
    if tail_bn == "eval":   # one image, one draw at a time, running statistics
        model.eval()
        for c in classes:
            rows = []
            for i in range(b):
                row = []
                for d in range(j):
                    z = zs[i][d]
                    hz = module.register_forward_hook(lambda mod, inp, o, z=z: z.clone())
                    out = model(x[i:i + 1])
                    hz.remove()
                    row.append(torch.autograd.grad(out[0, int(c[i])], z, create_graph=True)[0][0])
                rows.append(torch.stack(row))
            out_grads.append(torch.stack(rows))
    else:                   # the whole batch x J in train mode: batch statistics couple the images
        flat = [zs[i][d] for i in range(b) for d in range(j)]
        z = torch.cat(flat)
        hz = module.register_forward_hook(lambda mod, inp, o: z.clone())
        out = model(x.repeat_interleave(j, 0))
        hz.remove()
        for c in classes:
            total = sum(out[i * j + d, int(c[i])] for i in range(b) for d in range(j))
            gs = torch.autograd.grad(total, flat, create_graph=True)
            out_grads.append(torch.stack([torch.stack([gs[i * j + d][0] for d in range(j)]) for i in range(b)]))
    model.eval()
    return out_grads


def naive_terms(model, diag, x, y, fg, has, draws, delta, seed, step, v, variant, tail_bn):
    """Σ over layers of the per-image Eq. 5 / Eq. 6 sums, batch mean (``normalize=False``)."""
    model.train()
    with torch.no_grad():
        logits = model(x)
    top2 = logits.topk(2, 1).indices
    n, s = top2[:, 0], top2[:, 1]
    ch_all, sp_all = 0.0, 0.0
    for li, layer in enumerate(LAYERS):
        norm = diag.normalized(layer)
        if variant == "paper":
            gn, gs = _naive_grads(model, layer, li, x, [n, s], draws, delta, seed, step, tail_bn)
        else:
            t = torch.where(n == y, s, n)
            gt, gy = _naive_grads(model, layer, li, x, [t, y], draws, delta, seed, step, tail_bn)
            (gn,) = _naive_grads(model, layer, li, x, [n], draws, delta, seed, step, tail_bn)
        ch, sp = [], []
        for b in range(x.shape[0]):
            c_b, s_b = 0.0, 0.0
            for d in range(max(draws, 1)):
                for k in range(norm.shape[1]):
                    if variant == "paper":
                        if norm[n[b], k] < v:
                            c_b = c_b + gn[b, d, k].abs().sum()
                        c_b = c_b + gs[b, d, k].abs().sum()
                    else:
                        if norm[t[b], k] > v:
                            c_b = c_b + gt[b, d, k].abs().sum()
                        if not norm[y[b], k] > v:
                            c_b = c_b + gy[b, d, k].abs().sum()
                if has[b]:
                    hh, ww = gn.shape[-2:]
                    fy, fx = fg.shape[-2] // hh, fg.shape[-1] // ww
                    for i in range(hh):
                        for jj in range(ww):
                            bg = 1.0 - fg[b, 0, i * fy:(i + 1) * fy, jj * fx:(jj + 1) * fx].mean()
                            s_b = s_b + bg * gn[b, d, :, i, jj].abs().sum()
            ch.append(torch.as_tensor(c_b))
            sp.append(torch.as_tensor(s_b))
        ch_all = ch_all + torch.stack(ch).mean()
        sp_all = sp_all + torch.stack(sp).mean()
    return ch_all, sp_all


def test_the_model_takes_the_hook_fallback(setup):
    model, *_ = setup
    with pytest.warns(UserWarning, match="torch.fx cannot instrument"):
        inst = Instrument(model, LAYERS, need_tail=True)
    assert inst.mode == "hook"


@pytest.mark.parametrize("tail_bn", ["eval", "train"])
@pytest.mark.parametrize("draws,variant,beta", [(0, "paper", 1.0), (3, "paper", 1.0), (2, "official", 1.0)])
def test_two_layer_fallback_equals_naive(setup, tail_bn, draws, variant, beta):
    model, diag, x, y, fg, has = setup
    loss = ModelDoctorLoss(diag, alpha=1.0, beta=beta, v=0.3, noise_draws=draws, noise=0.05, variant=variant,
                           normalize=False, seed=4, tail_bn=tail_bn)
    model.train()   # as in training: the CE forward uses batch statistics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with loss.attach(model):
            logits = model(x)
            terms = loss(logits, y, (x, y, fg, has), step=7)
    ref_ch, ref_sp = naive_terms(model, diag, x, y, fg, has, draws, 0.05, 4, 7, 0.3, variant, tail_bn)
    torch.testing.assert_close(terms["channel"], ref_ch, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(terms["space"], ref_sp, rtol=1e-6, atol=1e-10)
    g1 = torch.autograd.grad(terms["channel"] + terms["space"], list(model.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(ref_ch + ref_sp, list(model.parameters()), allow_unused=True)
    for p, a, b in zip(model.parameters(), g1, g2):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-10)


def test_train_mode_is_not_the_per_image_derivative(setup):
    """The two modes differ on a model with BatchNorm after the layer: the docs' warning is real."""
    model, diag, x, y, fg, has = setup
    ev = naive_terms(model, diag, x, y, fg, has, 0, 0.05, 4, 7, 0.3, "paper", "eval")[0]
    tr = naive_terms(model, diag, x, y, fg, has, 0, 0.05, 4, 7, 0.3, "paper", "train")[0]
    assert abs(float((tr - ev).detach())) > 1e-3 * abs(float(ev.detach()))
