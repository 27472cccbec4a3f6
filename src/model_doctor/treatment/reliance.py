"""How much a model reads the background of annotated images: background-swap accuracy,
background-only accuracy (the object's box filled), the input-gradient share outside the masks,
overall and per class (the selection rules built on them: :mod:`.selection`).

What :func:`background_reliance` measures. Two measures, each overall and per class (``per_class``):

- **swap**: for every image a and up to ``max_partners`` images b of another class, ``x̃`` =
  a's foreground on b's background (:func:`composite`). Everything outside a's foreground is
  b's, *inside a's box too* once the pool is refined (:meth:`AnnotatedPool.refine`).
  ``swap_acc``: a's label predicted on x̃ (the background's cue now contradicts the label);
  ``swap_agreement``: the same prediction as on a. ``same_swap_acc``: the same with partners
  b of a's own class (the cue agrees). ``balanced_swap_acc``: the lower of the two, the
  worst-group accuracy of this two-group test. Why both: a model that reads the background
  *backwards* (possible with two classes; E6's β=10 arms) scores high on ``swap_acc`` alone,
  and only the cue-agreeing swaps expose it. ``shuffled_swap_acc``: the two mixed as a
  background of a random class does, own class included: ``chance · same_swap_acc +
  (1 − chance) · swap_acc`` (per image, per class and overall). Why: it is the swap analogue of
  shuffled-cue accuracy. A model that reads only the background scores ``chance`` there, and
  so does one that guesses; ``swap_acc`` gives the first 0 and the second ``chance``, so a
  treatment that breaks a model (E5 photo) gains on it without reading the object.
  ``matched_swap_acc``: the same pairs as ``swap_acc``, a's foreground given b's foreground's
  per-channel mean and standard deviation first (:func:`match_colour`). Why: every plain swap
  moves a's own pixels with it, so a cue over the whole image, object included (E5 ``cast``:
  treated models at 99-100 % on ``swap_acc``, 8-13 % on shuffled cues), travels with the
  object; matched, it moves with the background. It reads a model lower where the object's
  own colour is part of its class, and it cannot move a cue whose shape alone rides on the
  object. ``transfer_swap_acc``: the same with a's foreground given b's foreground's colour
  mean and *covariance* (:func:`transfer_colour`; colour images only, else NaN): a cue that is a
  colour direction (noise along a class-coded hue, E5 ``grain``) keeps its strength under
  per-channel matching and is left at b's strength along that direction only here.
  ``silhouette_swap_acc``: the same pairs, a's foreground filled flat with its own mean colour
  (:func:`silhouette`): its outline and mean colour survive, nothing drawn inside it does. Why:
  every other swap moves whatever lies on the object's pixels with it; a cue drawn over the whole
  image, the object included, that carries no colour of its own (E5 ``veil``: stripes; the
  treated models at 97 % on every colour figure, 15 % on shuffled cues) rides on the object in
  all of them and is left behind only here. It reads a model lower where the object's own
  texture is part of its class, as the colour figures do where its colour is.
  ``matched=False`` skips the three (NaN): the selection rule, run every epoch, reads only ``swap_acc``. ``backwards_images`` / ``forwards_images``: images
  right more / less often on another class's background than on their own;
  ``backwards_p``: the one-sided sign test that the model reads the background backwards.
- **background only**: the image with the bounding box of its annotation filled with the mean
  of the background outside it: no object, and not its silhouette either (a flat region in
  the object's exact shape would still show the class). ``bg_only_acc``: the label still predicted; ``bg_only_conf``: the
  label's mean softmax probability. A model that does not read the background sits near
  chance (1 / classes) here; one that does predicts its class from the background alone.

``backgrounds`` (``[N]``, optional): the class each image's background stands for, where it is
known not to be the image's own (a benchmark's test images, whose places are drawn apart from
the class); partners are then chosen by it. Default: the label, as on training images, whose
backgrounds carry their class's cue.

``per_image``: in pool order, each image's swap accuracy as the object (``swap_acc``), as
the background others were pasted on (``swap_acc_by_background``; None where an image has no
partner), its ``shuffled_swap_acc`` (None without both kinds of partner) and its
background-only hit; why: the same report images serve every arm and seed of a run, so a
treated − control difference has a sampling noise over the images that the seed spread does
not show (:func:`model_doctor.study.image_se`).

Also ``clean_acc``, ``bg_grad_share`` (mean share of ``Σ_c |∂y_pred/∂x|`` outside the
foreground), ``refined_share`` (images whose foreground was refined: where it is below 1, any
cue inside an unrefined annotation is invisible to both measures), ``images`` and ``pairs``.
Eval mode; the model's training flag is restored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .pool import AnnotatedPool, composite, match_colour, silhouette, transfer_colour
from .space import _device, background_share

#: the swaps that paste the object otherwise than as it is (:func:`_swapped`'s ``paste``)
PASTES = ("matched", "transfer", "silhouette")

__all__ = ["background_reliance", "headline_key", "as_told", "wilson_interval", "bounding_boxes", "sign_test"]


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([torch.softmax(model(x[i:i + batch_size]).float(), 1) for i in range(0, len(x), batch_size)])


def bounding_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` masks -> the filled bounding box of each (all zero where a mask is empty)."""
    m = masks[:, 0] > 0.5
    rows, cols = m.any(2), m.any(1)                        # [B, H], [B, W]

    def span(v: torch.Tensor) -> torch.Tensor:             # fill between the first and the last set entry
        idx = torch.arange(v.shape[1], device=v.device)
        first = torch.where(v, idx, v.shape[1]).min(1).values
        last = torch.where(v, idx, -1).max(1).values
        return (idx[None] >= first[:, None]) & (idx[None] <= last[:, None])

    return (span(rows)[:, :, None] & span(cols)[:, None, :])[:, None].to(masks.dtype)


def _swap_pairs(labels: torch.Tensor, max_partners: int, seed: int, same_class: bool = False,
                backgrounds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For every image, up to ``max_partners`` images whose background stands for another class
    (for its own class, itself excluded, with ``same_class``): a seeded choice. ``backgrounds``:
    the class each image's background stands for; its label where not given."""
    g = torch.Generator().manual_seed(seed)
    ia: list[int] = []
    ib: list[int] = []
    idx = torch.arange(len(labels))
    bg = labels if backgrounds is None else backgrounds
    for i in range(len(labels)):
        keep = (bg == labels[i]) & (idx != i) if same_class else bg != labels[i]
        other = torch.nonzero(keep).flatten()
        other = other[torch.randperm(len(other), generator=g)[:max_partners]]
        ia += [i] * len(other)
        ib += other.tolist()
    return torch.tensor(ia, dtype=torch.long), torch.tensor(ib, dtype=torch.long)


def _per_class(labels: torch.Tensor, hits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, dict[str, float]]:
    """``{class: {measure: mean of hits over that class's rows}}``; ``hits[measure] = (row labels, values)``."""
    out: dict[int, dict[str, float]] = {}
    for c in labels.unique().tolist():
        row: dict[str, float] = {"images": int((labels == c).sum())}
        for k, (lab, v) in hits.items():
            sel = lab == c
            row[k] = float(v[sel].double().mean()) if sel.any() else float("nan")
        out[int(c)] = row
    return out


def background_reliance(model: nn.Module, pool: AnnotatedPool, max_partners: int = 20, seed: int = 0,
                        batch_size: int = 256, backgrounds: torch.Tensor | None = None,
                        matched: bool = True, pastes: tuple[str, ...] = PASTES) -> dict[str, Any]:
    """How much the model's predictions on annotated images depend on their background: the swap
    figures (another class's background, its own class's, a random class's, colour-matched), the
    background-only figures, the input-gradient share outside the foreground, overall, per class
    and per image (the module's docstring defines each). ``backgrounds`` (``[N]``): the class each
    image's background stands for where it is known not to be the image's own (default: the label);
    ``matched=False`` skips the colour-matched, colour-transferred and silhouette swaps (NaN), and
    ``pastes`` names which of them to measure otherwise (a per-epoch rule that reads one figure
    measures only that one). Eval mode; the training flag is restored.
    """
    dev, dt = _device(model)
    was = model.training
    model.eval()
    try:
        if backgrounds is not None and backgrounds.shape != pool.labels.shape:
            raise ValueError(f"backgrounds has shape {tuple(backgrounds.shape)}; pass one class per pool image "
                             f"({len(pool)})")
        x, fg, y = pool.images.to(dev, dt), pool.foreground.to(dev, dt), pool.labels.to(dev)
        pred = _probs(model, x, batch_size).argmax(1)
        box = bounding_boxes(pool.coarse.to(dev, dt))
        plate = _probs(model, composite(x, torch.zeros_like(box), x, box), batch_size)
        ta, tb = _swap_pairs(pool.labels, max_partners, seed, backgrounds=backgrounds)
        sa, sb = _swap_pairs(pool.labels, max_partners, seed, same_class=True, backgrounds=backgrounds)
        pt, swap_hit = _swapped(model, x, fg, y, ta, tb, batch_size)
        _, same_hit = _swapped(model, x, fg, y, sa, sb, batch_size)
        none = torch.full((len(ta),), float("nan"))
        measured = {k: matched and k in pastes and (k != "transfer" or x.shape[1] > 1) for k in PASTES}
        pasted = {f"{k}_swap_acc": _swapped(model, x, fg, y, ta, tb, batch_size, paste=k)[1] if on else none
                  for k, on in measured.items()}
        swap_agree = float((pt == pred[ta].cpu()).double().mean()) if len(ta) else float("nan")
        grad_share = _grad_share(model, x, fg, batch_size)
        return _figures(pool, (ta, tb, swap_hit), (sa, same_hit), pasted, (plate, y), pred, swap_agree, grad_share)
    finally:
        model.train(was)


def _grad_share(model: nn.Module, x: torch.Tensor, fg: torch.Tensor, batch_size: int) -> float:
    """Mean share of ``Σ_c |∂y_pred/∂x|`` outside the foreground."""
    shares = []
    with torch.enable_grad():
        for s in range(0, len(x), batch_size):
            xi = x[s:s + batch_size].detach().requires_grad_(True)
            out = model(xi)
            (gx,) = torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), xi)
            shares.append(background_share(gx.abs().sum(1), 1.0 - fg[s:s + batch_size, 0]))
    return float(torch.cat(shares).double().mean())


def _figures(pool: AnnotatedPool, other: tuple[torch.Tensor, torch.Tensor, torch.Tensor], own: tuple[torch.Tensor, torch.Tensor],
             pasted: dict[str, torch.Tensor], plated: tuple[torch.Tensor, torch.Tensor], pred: torch.Tensor,
             swap_agree: float, grad_share: float) -> dict[str, Any]:
    """:func:`background_reliance`'s dict from the hits (``pasted``: each other paste's hits on the
    ``other`` pairs, by its key): overall, per class and per image."""
    (ta, tb, swap_hit), (sa, same_hit), (plate, y) = other, own, plated
    swap_acc, same_acc = _mean(swap_hit), _mean(same_hit)
    bg_hit = (plate.argmax(1) == y).cpu()
    bg_conf = plate.gather(1, y[:, None])[:, 0].cpu()
    per_class = _per_class(pool.labels, {"swap_acc": (pool.labels[ta], swap_hit),
                                         "same_swap_acc": (pool.labels[sa], same_hit),
                                         **{k: (pool.labels[ta], hit) for k, hit in pasted.items()},
                                         "bg_only_acc": (pool.labels, bg_hit), "bg_only_conf": (pool.labels, bg_conf)})
    chance = 1.0 / max(int(plate.shape[1]), 1)
    shuffled = lambda own, other: chance * own + (1 - chance) * other  # nan where no own-class pair
    for row in per_class.values():
        row["shuffled_swap_acc"] = shuffled(row["same_swap_acc"], row["swap_acc"])
    other_i, own_i = _rate(ta, swap_hit, len(pool)), _rate(sa, same_hit, len(pool))
    shuffled_i = (shuffled(own_i[0], other_i[0]), own_i[1] & other_i[1])
    balanced = min(swap_acc, same_acc) if same_acc == same_acc else swap_acc  # one image per class: no same-class pair
    backwards, forwards = _directions(len(pool), ta, swap_hit, sa, same_hit)
    per_image = {"swap_acc": _listed(_rate(ta, swap_hit, len(pool))),
                 "swap_acc_by_background": _listed(_rate(tb, swap_hit, len(pool))),
                 "shuffled_swap_acc": _listed(shuffled_i)}
    for k, hit in pasted.items():
        per_image |= {k: _listed(_rate(ta, hit, len(pool))), f"{k}_by_background": _listed(_rate(tb, hit, len(pool)))}
    return {"swap_acc": swap_acc, "swap_agreement": swap_agree, "same_swap_acc": same_acc, "balanced_swap_acc": balanced,
            "backwards_images": backwards, "forwards_images": forwards, "backwards_p": sign_test(backwards, forwards),
            "shuffled_swap_acc": shuffled(same_acc, swap_acc), **{k: _mean(hit) for k, hit in pasted.items()},
            "same_pairs": len(sa), "clean_acc": float((pred == y).double().mean()),
            "bg_only_acc": float(bg_hit.double().mean()), "bg_only_conf": float(bg_conf.double().mean()),
            "chance": chance, "bg_grad_share": grad_share,
            "refined_share": float(pool.refined.double().mean()), "images": len(pool), "pairs": len(ta),
            "per_class": per_class,
            "per_image": per_image | {"bg_only_acc": [float(v) for v in bg_hit.double()]}}


def _swapped(model: nn.Module, x: torch.Tensor, fg: torch.Tensor, y: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor,
             batch_size: int, paste: str = "plain") -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, hits) on a's foreground over b's background for the pairs ``(ta, tb)`` (on the CPU);
    ``paste``: ``matched`` gives a's foreground b's foreground's per-channel colour statistics first
    (:func:`match_colour`), ``transfer`` its colour mean and covariance (:func:`transfer_colour`),
    ``silhouette`` fills it flat with its own mean colour (:func:`silhouette`)."""
    if not len(ta):
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
    colour = {"plain": lambda a, b: x[a], "matched": lambda a, b: match_colour(x[a], fg[a], x[b], fg[b]),
              "transfer": lambda a, b: transfer_colour(x[a], fg[a], x[b], fg[b]),
              "silhouette": lambda a, b: silhouette(x[a], fg[a])}[paste]
    pt = torch.cat([_probs(model, composite(colour(a, b), fg[a], x[b], fg[b]), batch_size).argmax(1)
                    for a, b in zip(ta.split(batch_size), tb.split(batch_size))]).cpu()
    return pt, pt == y.cpu()[ta]


def _rate(idx: torch.Tensor, hit: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(each of ``n`` images' mean hit over the rows ``idx`` names it in, which images have a row)."""
    count = torch.bincount(idx, minlength=n).double()
    hits = torch.zeros(n, dtype=torch.float64).index_add_(0, idx, hit.double())
    return hits / count.clamp(min=1), count > 0


def _listed(rate: tuple[torch.Tensor, torch.Tensor]) -> list[float | None]:
    """Per-image rates as a JSON-ready list: None where an image has no row (no partner)."""
    return [round(float(v), 6) if ok else None for v, ok in zip(*rate)]


def _directions(n: int, ta: torch.Tensor, swap_hit: torch.Tensor, sa: torch.Tensor,
                same_hit: torch.Tensor) -> tuple[int, int]:
    """(images right more often on another class's background than on their own, images right
    less often): per image, its swap accuracy against its own-class swap accuracy. Images without
    both kinds of partner, and ties, count for neither."""
    other, has_other = _rate(ta, swap_hit, n)
    own, has_own = _rate(sa, same_hit, n)
    both = has_other & has_own
    return int((both & (other > own)).sum()), int((both & (other < own)).sum())


def sign_test(k: int, m: int) -> float:
    """One-sided exact sign test: P(at least ``k`` of ``k + m`` untied images fall one way | either
    way is as likely). 1.0 when no image is untied."""
    n = k + m
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n if n else 1.0


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate ``p`` measured on ``n`` images. The images, not the
    pairs, are the unit: one image's object decides all of its swaps. Why it is printed: on 4
    report images (E6) a swap accuracy of 100 % still allows 51 %."""
    if n <= 0 or p != p:
        return float("nan"), float("nan")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean(hit: torch.Tensor) -> float:
    return float(hit.double().mean()) if len(hit) else float("nan")


def headline_key(object_colour: str = "unknown") -> str:
    """The swap figure that heads the report and selects: ``matched_swap_acc`` where the user said
    an object's colour may be a cue (``--object-colour cue``), else ``swap_acc``."""
    return "matched_swap_acc" if object_colour == "cue" else "swap_acc"


def as_told(reliance: dict[str, Any], object_colour: str = "unknown") -> dict[str, Any]:
    """``reliance`` as the selection rule reads it under the user's word: with ``cue`` its
    ``swap_acc`` is the colour-matched swap accuracy (and ``balanced_swap_acc`` the lower of that
    and the own-class swap), so epochs and weights are chosen on the figure the user trusts."""
    if object_colour != "cue":
        return reliance
    m = reliance["matched_swap_acc"]
    same = reliance.get("same_swap_acc", float("nan"))
    return {**reliance, "swap_acc": m, "balanced_swap_acc": min(m, same) if same == same else m}
