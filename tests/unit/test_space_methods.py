"""The space-wise methods beyond Eq. 6 equal naive float64 per-image references, and the
background-reliance measurement tells a background-reading model from an object-reading one."""

import pytest
import torch
from torch import nn

from model_doctor.hooks import count_hooks
from model_doctor.treatment.pool import AnnotatedPool, composite
from model_doctor.treatment.reliance import background_reliance
from model_doctor.treatment.selection import selection_score
from model_doctor.treatment.space import AttributionLoss, CounterfactualLoss, InputGradientLoss


class Net(nn.Module):
    """Two convs (no BatchNorm: images are independent, so a per-image loop is the exact reference)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.tanh(self.c1(x))
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def _pool(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3
    fg = torch.zeros(n, 1, 8, 8, dtype=torch.float64)
    for i in range(n):
        r, c = i % 4, (2 * i) % 4
        fg[i, :, r:r + 4, c:c + 3] = 1.0
    return AnnotatedPool(x, y, fg, list(range(100, 100 + n)))


def _model():
    torch.manual_seed(0)
    return Net().double()


def _params_grad(value, model):
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(model.parameters(), torch.autograd.grad(value, list(model.parameters()), allow_unused=True))]


def _assert_same(a, b, model):
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)
    for ga, gb in zip(_params_grad(a, model), _params_grad(b, model)):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-12)


def _dummy_logits(model, pool):
    return model(pool.images[:2])


def test_attribution_equals_naive():
    model, pool = _model(), _pool()
    loss = AttributionLoss(pool, ["c2"], weight=2.5, pool_batch=5, seed=3)
    with loss.attach(model):
        value = loss(_dummy_logits(model, pool), torch.zeros(2).long(), (), step=4)["attribution"]
    assert count_hooks(model) == 0
    idx = pool.draw(5, 3, 4)
    ref = 0.0
    for i in idx.tolist():
        store = {}
        h = model.c2.register_forward_hook(lambda m, a, o: store.__setitem__("m", o))
        out = model(pool.images[i:i + 1])
        h.remove()
        m = store["m"][0]
        (g,) = torch.autograd.grad(out[0, int(pool.labels[i])], store["m"], create_graph=True)
        a = (m * g[0]).abs().sum(0)                       # [8, 8]: c2's map has the image's size
        bg = 1.0 - pool.foreground[i, 0]
        num, den = 0.0, 0.0
        for r in range(8):
            for c in range(8):
                num = num + bg[r, c] * a[r, c]
                den = den + a[r, c]
        ref = ref + num / den
    _assert_same(value, 2.5 * ref / len(idx), model)


@pytest.mark.parametrize("mode", ["share", "rrr"])
def test_input_gradient_equals_naive(mode):
    model, pool = _model(), _pool()
    loss = InputGradientLoss(pool, weight=0.7, mode=mode, pool_batch=4, seed=1)
    with loss.attach(model):
        value = loss(_dummy_logits(model, pool), torch.zeros(2).long(), (), step=2)["input"]
    idx = pool.draw(4, 1, 2)
    ref = 0.0
    for i in idx.tolist():
        x = pool.images[i:i + 1].clone().requires_grad_(True)
        out = model(x)
        bg = 1.0 - pool.foreground[i, 0]
        if mode == "rrr":
            (g,) = torch.autograd.grad(torch.log_softmax(out, 1).sum(), x, create_graph=True)
            ref = ref + sum((bg[r, c] * g[0, 0, r, c]) ** 2 for r in range(8) for c in range(8)) / 64
        else:
            (g,) = torch.autograd.grad(out[0, int(pool.labels[i])], x, create_graph=True)
            a = g[0, 0].abs()
            ref = ref + sum(bg[r, c] * a[r, c] for r in range(8) for c in range(8)) / a.sum()
    _assert_same(value, 0.7 * ref / len(idx), model)


def test_composite_equals_naive():
    pool = _pool()
    a, b = torch.tensor([0, 4]), torch.tensor([1, 2])
    got = composite(pool.images[a], pool.foreground[a], pool.images[b], pool.foreground[b])
    for row, (i, j) in enumerate(zip(a.tolist(), b.tolist())):
        xb, fb = pool.images[j, 0], pool.foreground[j, 0]
        vals = [float(xb[r, c]) for r in range(8) for c in range(8) if fb[r, c] == 0]
        fill = sum(vals) / len(vals)
        for r in range(8):
            for c in range(8):
                if pool.foreground[i, 0, r, c] == 1:
                    want = pool.images[i, 0, r, c]
                else:
                    want = xb[r, c] if fb[r, c] == 0 else fill
                assert abs(float(got[row, 0, r, c]) - float(want)) < 1e-12


def test_counterfactual_equals_naive():
    model, pool = _model(), _pool()
    loss = CounterfactualLoss(pool, weight=1.5, kl_weight=0.5, pool_batch=6, seed=2)
    with loss.attach(model):
        value = loss(_dummy_logits(model, pool), torch.zeros(2).long(), (), step=9)["counterfactual"]
    a, b = loss.pairs(9)
    assert all(pool.labels[i] != pool.labels[j] for i, j in zip(a.tolist(), b.tolist()))
    ref = 0.0
    for i, j in zip(a.tolist(), b.tolist()):
        xt = composite(pool.images[i:i + 1], pool.foreground[i:i + 1], pool.images[j:j + 1], pool.foreground[j:j + 1])
        pt = torch.softmax(model(xt)[0], 0)
        pa = torch.softmax(model(pool.images[i:i + 1])[0], 0)
        ce = -torch.log(pt[int(pool.labels[i])])
        kl = sum(pa[c] * (torch.log(pa[c]) - torch.log(pt[c])) for c in range(3))
        ref = ref + ce + 0.5 * kl
    _assert_same(value, 1.5 * ref / len(a), model)


def test_colour_cue_counterfactual_pastes_the_object_with_its_partners_colour_statistics():
    """``--object-colour cue``: a's object takes b's object's mean and std (naive: per image, over
    the mask's pixels, numpy's population std) before the paste; the rest of the loss is unchanged."""
    model, pool = _model(), _pool()
    loss = CounterfactualLoss(pool, weight=1.0, kl_weight=0.5, pool_batch=6, seed=2, colour_cue=True)
    with loss.attach(model):
        value = loss(_dummy_logits(model, pool), torch.zeros(2).long(), (), step=9)["counterfactual"]
    a, b = loss.pairs(9)
    ref = 0.0
    for i, j in zip(a.tolist(), b.tolist()):
        fa, fb = pool.foreground[i, 0] > 0, pool.foreground[j, 0] > 0
        xa, xb = pool.images[i, 0], pool.images[j, 0]
        pa_pix, pb_pix = xa[fa].numpy(), xb[fb].numpy()
        moved = (xa - float(pa_pix.mean())) / float(pa_pix.std()) * float(pb_pix.std()) + float(pb_pix.mean())
        fill = float(xb[~fb].mean())
        xt = torch.where(fa, moved, torch.where(fb, torch.full_like(xb, fill), xb))[None, None]
        pt = torch.softmax(model(xt)[0], 0)
        pa = torch.softmax(model(pool.images[i:i + 1])[0], 0)
        ce = -torch.log(pt[int(pool.labels[i])])
        ref = ref + ce + 0.5 * sum(pa[c] * (torch.log(pa[c]) - torch.log(pt[c])) for c in range(3))
    _assert_same(value, ref / len(a), model)
    plain = CounterfactualLoss(pool, weight=1.0, kl_weight=0.5, pool_batch=6, seed=2)
    with plain.attach(model):
        other = plain(_dummy_logits(model, pool), torch.zeros(2).long(), (), step=9)["counterfactual"]
    assert abs(float(other.detach()) - float(value.detach())) > 1e-6   # the match changes what the model is shown


def test_any_class_partners_make_the_background_independent_of_the_label():
    """``partners="any"``: any other image's background, own class included, as often as the pool
    holds it; ``"other"`` never the own class (with two classes, a perfectly reversed cue)."""
    pool = _pool(n=12)                      # 3 classes x 4 images
    a = torch.arange(12).repeat(400)
    anyp = pool.partners(a, seed=0, step=0, any_class=True)
    assert not (anyp == a).any()            # never itself
    same = (pool.labels[anyp] == pool.labels[a]).double().mean()
    assert abs(float(same) - 3 / 11) < 0.02  # 3 of the other 11 images share its class
    other = pool.partners(a, seed=0, step=0)
    assert not (pool.labels[other] == pool.labels[a]).any()
    loss = CounterfactualLoss(pool, 1.0, pool_batch=6, seed=2, partners="any")
    x, y = loss.pairs(9)
    assert torch.equal(y, pool.partners(x, 2, 9, any_class=True))
    with pytest.raises(ValueError, match="partners='same'"):
        CounterfactualLoss(pool, 1.0, partners="same")


def test_pool_holdout_and_draws_are_deterministic():
    pool = _pool(n=12)
    tr, held = pool.split_holdout(0.25, seed=0)
    assert held is not None and len(tr) + len(held) == 12
    assert held.counts() == {0: 1, 1: 1, 2: 1}  # round(0.25 * 4) per class
    assert not set(tr.indices) & set(held.indices)
    assert tr.split_holdout(0.0)[1] is None
    assert torch.equal(pool.draw(5, 1, 3), pool.draw(5, 1, 3)) and not torch.equal(pool.draw(5, 1, 3), pool.draw(5, 1, 4))
    assert len(pool.draw(40, 0, 0)) == 40  # with replacement past the pool size
    with pytest.raises(ValueError, match="holdout fraction=1.0"):
        pool.split_holdout(1.0)


def test_pool_from_dataset_and_empty():
    ds = [(torch.zeros(1, 4, 4), 1, torch.ones(1, 4, 4), True), (torch.zeros(1, 4, 4), 0, torch.zeros(1, 4, 4), False)]
    pool = AnnotatedPool.from_dataset(ds)
    assert len(pool) == 1 and pool.indices == [0]
    with pytest.raises(ValueError, match="no annotated images"):
        AnnotatedPool.from_dataset([ds[1]])
    with pytest.raises(ValueError, match="has no masks"):
        AnnotatedPool.from_dataset([(torch.zeros(1, 4, 4), 0)])


class Corner(nn.Module):
    """Reads only pixel (0, 0) (background in every pool image): a pure shortcut."""

    def __init__(self, object_reader=False):
        super().__init__()
        self.object_reader = object_reader
        self.w = nn.Parameter(torch.tensor([-1.0, 0.0, 1.0]))

    def forward(self, x):
        v = x[:, 0, 5, 5] if self.object_reader else x[:, 0, 0, 0]
        return v[:, None] - (v[:, None] - self.w).pow(2)


def _coded(n: int, classes: int, code) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, foregrounds): 8×8 images whose background pixel (0, 0) and object pixel
    (5, 5) both carry ``code(label)``; the object is the bottom-right 5×5 square."""
    y = torch.arange(n) % classes
    x = torch.zeros(n, 1, 8, 8)
    fg = torch.zeros(n, 1, 8, 8)
    fg[:, :, 3:8, 3:8] = 1
    x[:, 0, 0, 0] = code(y.float())         # the shortcut: a background pixel coding the class
    x[:, 0, 5, 5] = code(y.float())         # the object: a foreground pixel coding the class
    return x, y, fg


def test_background_reliance_separates_shortcut_from_object():
    n = 12
    pool = AnnotatedPool(*_coded(n, 3, lambda c: c - 1.0))
    short = background_reliance(Corner(False), pool)
    obj = background_reliance(Corner(True), pool)
    assert short["clean_acc"] == 1.0 and obj["clean_acc"] == 1.0
    assert short["swap_acc"] == 0.0 and obj["swap_acc"] == 1.0   # partners always have another class
    assert short["bg_grad_share"] == pytest.approx(1.0) and obj["bg_grad_share"] == pytest.approx(0.0)
    assert short["pairs"] == n * 8
    per = obj["per_image"]   # per image: as object, as background, background only; their means are the figures
    assert per["swap_acc"] == [1.0] * n and per["swap_acc_by_background"] == [1.0] * n
    assert sum(per["bg_only_acc"]) / n == pytest.approx(obj["bg_only_acc"])
    assert selection_score(0.9, obj, "mean") == pytest.approx(0.95) and selection_score(0.9, None) == 0.9
    assert selection_score(0.9, obj) == pytest.approx(obj["swap_acc"] + 0.0009)
    with pytest.raises(ValueError, match="select rule"):
        selection_score(0.9, obj, "best")
    # the floor: an epoch under it ranks below every epoch that kept it, and among those under it the
    # least broken wins; a guessing model's swap accuracy cannot lift it over a working one
    guess = {"swap_acc": 0.4, "balanced_swap_acc": 0.4}
    working = {"swap_acc": 0.05, "balanced_swap_acc": 0.05}
    for rule in ("swap", "balanced", "mean"):
        assert selection_score(0.2, guess, rule, floor=0.45) < selection_score(0.9, working, rule, floor=0.45)
        if rule != "mean":  # without the floor the guess wins (mean: 0.3 against 0.475)
            assert selection_score(0.2, guess, rule, floor=0.1) > selection_score(0.9, working, rule, floor=0.1)
        assert selection_score(0.3, guess, rule, floor=0.45) > selection_score(0.2, guess, rule, floor=0.45)
    assert selection_score(0.9, working, floor=0.45) == selection_score(0.9, working)


class Backwards(nn.Module):
    """Two classes; reads only the background pixel (0, 0) and predicts the class it does *not* code."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        v = self.scale * x[:, 0, 0, 0]
        return torch.stack([v, -v], 1)   # background code -1 (class 0) -> class 1, +1 (class 1) -> class 0


def test_same_class_swaps_expose_a_model_that_reads_the_background_backwards():
    n = 8
    x, y, fg = _coded(n, 2, lambda c: 2 * c - 1.0)
    pool = AnnotatedPool(x, y, fg)
    back = background_reliance(Backwards(), pool)
    # naive reference, pair by pair: another class's background flips the cue, the own class's keeps it
    assert back["clean_acc"] == 0.0 and back["swap_acc"] == 1.0 and back["same_swap_acc"] == 0.0
    assert back["balanced_swap_acc"] == 0.0 and back["same_pairs"] == n * (n // 2 - 1)
    assert all(r["same_swap_acc"] == 0.0 and r["swap_acc"] == 1.0 for r in back["per_class"].values())
    short = background_reliance(Corner(False), AnnotatedPool(x.clamp(max=0), y, fg))  # Corner codes class c as c - 1
    assert short["swap_acc"] == 0.0 and short["same_swap_acc"] == 1.0 and short["balanced_swap_acc"] == 0.0
    assert selection_score(0.5, back, "swap") == pytest.approx(1.0005)     # the swap rule is fooled
    assert selection_score(0.5, back, "balanced") == pytest.approx(0.0005)  # the balanced rule is not
    lone = background_reliance(Backwards(), AnnotatedPool(x[:2], y[:2], fg[:2]))  # one image per class: no own-class pair
    assert lone["same_pairs"] == 0 and lone["balanced_swap_acc"] == lone["swap_acc"]
    # per image, right on another class's background and wrong on its own: all n images point backwards
    assert (back["backwards_images"], back["forwards_images"]) == (n, 0) and back["backwards_p"] == pytest.approx(0.5 ** n)
    assert (short["backwards_images"], short["forwards_images"]) == (0, n) and short["backwards_p"] == 1.0
    assert lone["backwards_images"] + lone["forwards_images"] == 0 and lone["backwards_p"] == 1.0


def test_direction_counts_and_sign_test_equal_naive():
    from scipy.stats import binomtest

    from model_doctor.treatment.reliance import _directions, sign_test

    g = torch.Generator().manual_seed(3)
    n = 9
    ta, sa = torch.randint(0, n - 1, (60,), generator=g), torch.randint(0, n, (40,), generator=g)  # image n-1: no other pair
    swap, same = torch.rand(60, generator=g) > 0.4, torch.rand(40, generator=g) > 0.6
    back = fwd = 0
    for i in range(n):                                    # naive: per image, two float64 means compared
        o = [float(h) for a, h in zip(ta.tolist(), swap.tolist()) if a == i]
        w = [float(h) for a, h in zip(sa.tolist(), same.tolist()) if a == i]
        if o and w:
            back += sum(o) / len(o) > sum(w) / len(w)
            fwd += sum(o) / len(o) < sum(w) / len(w)
    assert _directions(n, ta, swap, sa, same) == (back, fwd)
    for k, m in ((10, 0), (8, 2), (3, 4), (0, 5), (12, 7)):
        assert sign_test(k, m) == pytest.approx(binomtest(k, k + m, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert sign_test(0, 0) == 1.0


def test_bad_weights():
    pool = _pool()
    with pytest.raises(ValueError, match="weight=-1"):
        CounterfactualLoss(pool, -1.0)
    with pytest.raises(ValueError, match="mode='x'"):
        InputGradientLoss(pool, 1.0, mode="x")
    with pytest.raises(RuntimeError, match="attach"):
        CounterfactualLoss(pool, 1.0)(torch.zeros(2, 3), torch.zeros(2).long(), (), 0)


def test_backgrounds_choose_partners_by_the_class_their_background_stands_for():
    """Test images whose places are drawn apart from the class: partners by their background's class, not their label."""
    from model_doctor.treatment.reliance import _swap_pairs

    n = 12
    x, y, fg = _coded(n, 3, lambda c: c - 1.0)
    bg = (y + 1 + torch.arange(n) // 3 % 2) % 3                 # every background codes another class than the label
    x[:, 0, 0, 0] = bg.float() - 1.0
    pool = AnnotatedPool(x, y, fg)
    ta, tb = _swap_pairs(y, 5, 0, backgrounds=bg)
    sa, sb = _swap_pairs(y, 5, 0, same_class=True, backgrounds=bg)
    for a in range(n):                                           # naive: every eligible partner, at most 5 taken
        other = [b for b in range(n) if int(bg[b]) != int(y[a])]
        own = [b for b in range(n) if int(bg[b]) == int(y[a]) and b != a]
        assert sorted(tb[ta == a].tolist()) == sorted(set(tb[ta == a].tolist())) and len(tb[ta == a]) == min(5, len(other))
        assert set(tb[ta == a].tolist()) <= set(other) and set(sb[sa == a].tolist()) <= set(own)
        assert len(sb[sa == a]) == min(5, len(own))
    short = background_reliance(Corner(False), pool, backgrounds=bg)
    assert short["clean_acc"] == 0.0                             # it reads the (conflicting) background
    assert short["swap_acc"] == 0.0 and short["same_swap_acc"] == 1.0   # the shortcut, seen through the places
    assert background_reliance(Corner(True), pool, backgrounds=bg)["swap_acc"] == 1.0
    assert all(torch.equal(u, v) for u, v in zip(_swap_pairs(y, 5, 0), _swap_pairs(y, 5, 0, backgrounds=y)))  # default: the label
    with pytest.raises(ValueError, match="one class per pool image"):
        background_reliance(Corner(False), pool, backgrounds=bg[:3])


class Guess(nn.Module):
    """Predicts from neither the object nor the background: a pseudo-random class from other pixels."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        h = (x[:, 0, 1, 2] * 7 + x[:, 0, 6, 1] * 3 + x[:, 0, 2, 6] * 5).long() % 3
        return torch.nn.functional.one_hot(h, 3).float() + 1e-6 * self.w * x.flatten(1).sum(1, keepdim=True)  # a graph to differentiate


def test_shuffled_swap_accuracy_equals_naive_mixture_per_image_class_and_overall():
    """Reference: each pair's hit by a float64 loop, own and other class means mixed 1/K : (K-1)/K.
    The cue reader and the guesser tie there (1/K), though swap accuracy ranks the guesser higher."""
    from model_doctor.treatment.reliance import _swap_pairs

    n, k = 12, 3
    x, y, fg = _coded(n, k, lambda c: c - 1.0)
    g = torch.Generator().manual_seed(1)
    x[:, 0, 1, 2], x[:, 0, 2, 6] = torch.randint(0, 3, (n,), generator=g).float(), torch.randint(0, 3, (n,), generator=g).float()
    x[:, 0, 6, 1] = torch.randint(0, 3, (n,), generator=g).float()
    pool = AnnotatedPool(x, y, fg)
    for model in (Corner(False), Corner(True), Guess()):
        got = background_reliance(model, pool)
        own: dict[int, list[float]] = {i: [] for i in range(n)}
        other: dict[int, list[float]] = {i: [] for i in range(n)}
        for same, store in ((False, other), (True, own)):
            for a, b in zip(*_swap_pairs(y, 20, 0, same_class=same)):
                comp = torch.where(fg[a] > 0.5, x[a], x[b])      # a's object on b's background
                store[int(a)].append(float(model(comp[None]).argmax(1)[0] == y[a]))
        mean = lambda v: sum(v) / len(v)
        ref_i = [mean(own[i]) / k + mean(other[i]) * (k - 1) / k for i in range(n)]
        assert got["per_image"]["shuffled_swap_acc"] == pytest.approx(ref_i, abs=1e-6)
        pairs = lambda store, sel: [h for i in range(n) if sel(i) for h in store[i]]
        assert got["shuffled_swap_acc"] == pytest.approx(mean(pairs(own, lambda i: True)) / k
                                                         + mean(pairs(other, lambda i: True)) * (k - 1) / k)
        for c, row in got["per_class"].items():
            in_c = lambda i: int(y[i]) == c
            assert row["shuffled_swap_acc"] == pytest.approx(mean(pairs(own, in_c)) / k + mean(pairs(other, in_c)) * (k - 1) / k)
    cue, guess = background_reliance(Corner(False), pool), background_reliance(Guess(), pool)
    assert cue["swap_acc"] == 0.0 and cue["shuffled_swap_acc"] == pytest.approx(1 / k)
    assert guess["swap_acc"] > cue["swap_acc"] and abs(guess["shuffled_swap_acc"] - 1 / k) < 0.2
    assert background_reliance(Corner(True), pool)["shuffled_swap_acc"] == 1.0


class Area(nn.Module):
    """Reads only the object's outline: the class whose square's area is nearest the count of bright pixels."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        count = (x[:, 0] > 0.5).flatten(1).sum(1).double()
        far = (count[:, None] - torch.tensor([9.0, 16.0, 25.0], dtype=torch.float64)).abs().float()
        return -far * self.w + 1e-6 * x.flatten(1).sum(1, keepdim=True)  # a graph to differentiate


def _squares(n: int) -> AnnotatedPool:
    """Class c: a bright (side 3 + c)² square at the bottom right, with the class code c − 1 drawn on its
    pixel (5, 5) and on the background pixel (0, 0): a cue over the whole image, the object included."""
    y = torch.arange(n) % 3
    x, fg = torch.zeros(n, 1, 8, 8), torch.zeros(n, 1, 8, 8)
    for i, c in enumerate(y.tolist()):
        fg[i, :, 8 - (3 + c):, 8 - (3 + c):] = 1
    x[:] = fg
    x[:, 0, 5, 5] = x[:, 0, 0, 0] = y.float() - 1.0
    return AnnotatedPool(x, y, fg)


def test_silhouette_swap_equals_a_naive_float64_reference_and_keeps_only_the_outline():
    """Each pair's hit by a float64 loop: a's object filled flat with its own mean on b's background.
    A model reading the cue drawn on the object follows it on the plain swap and loses it on the
    silhouette swap; one reading the outline keeps it on both."""
    import numpy as np

    from model_doctor.treatment.pool import silhouette
    from model_doctor.treatment.reliance import _swap_pairs

    g = torch.Generator().manual_seed(0)
    x, fg = torch.rand(3, 2, 5, 5, generator=g), torch.rand(3, 1, 5, 5, generator=g)
    for i in range(3):
        xi, wi = x[i].double().numpy(), fg[i, 0].double().numpy()
        mu = (xi * wi).sum((1, 2)) / wi.sum()
        assert np.allclose(silhouette(x, fg)[i].numpy(), wi * mu[:, None, None] + (1 - wi) * xi, atol=1e-6)
    pool = _squares(12)
    for model in (Corner(True), Area()):
        got = background_reliance(model, pool)
        hits = []
        for a, b in zip(*_swap_pairs(pool.labels, 20, 0)):
            xa, xb, fa, fb = (t.double() for t in (pool.images[a], pool.images[b], pool.foreground[a], pool.foreground[b]))
            flat = (xa * fa).sum((1, 2), keepdim=True) / fa.sum()
            back = (xb * (1 - fb)).sum((1, 2), keepdim=True) / (1 - fb).sum()
            comp = fa * flat + (1 - fa) * ((1 - fb) * xb + fb * back)
            hits.append(float(model(comp[None].float()).argmax(1)[0] == pool.labels[a]))
        assert got["silhouette_swap_acc"] == pytest.approx(sum(hits) / len(hits))
        assert got["per_image"]["silhouette_swap_acc_by_background"][0] is not None
    drawn, outline = background_reliance(Corner(True), pool), background_reliance(Area(), pool)
    assert drawn["swap_acc"] == 1.0 and drawn["silhouette_swap_acc"] < 0.5
    assert outline["swap_acc"] == 1.0 and outline["silhouette_swap_acc"] == 1.0
    assert background_reliance(Area(), pool, matched=False)["silhouette_swap_acc"] != drawn["swap_acc"]  # nan: skipped
    one = background_reliance(Area(), pool, pastes=("matched",))   # a per-epoch rule measures only the figure it reads
    assert one["matched_swap_acc"] == one["matched_swap_acc"] and one["silhouette_swap_acc"] != one["silhouette_swap_acc"]
