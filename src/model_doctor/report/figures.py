"""Matplotlib figures for the report (imported lazily; Agg backend, no display needed)."""

from __future__ import annotations

import io
from typing import Any

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    # class names and paths are user strings: "$" must print as "$", not start math text
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def heatmap(matrix: torch.Tensor, class_names: list[str], title: str) -> bytes:
    plt = _plt()
    n, k = matrix.shape
    fig, ax = plt.subplots(figsize=(min(14, 2 + k * 0.06), 1 + n * 0.35))
    im = ax.imshow(matrix.numpy(), aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(n))
    ax.set_yticklabels([c[:24] for c in class_names], fontsize=7)
    ax.set_xlabel("channel")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.02)
    return to_png(fig)


def bars(labels: list[str], series: dict[str, list[float]], errors: dict[str, list[float]] | None, title: str,
         ylabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, len(labels) * 0.7), 3))
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, vals, width, label=name, yerr=(errors or {}).get(name))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels([s[:14] for s in labels], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    lo = min(min(v) for v in series.values()) if series else 0
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.legend(fontsize=7)
    return to_png(fig)


def lines(x: list[float], series: dict[str, list[float]], title: str, xlabel: str, ylabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, ys in series.items():
        ax.plot(x[: len(ys)], ys, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return to_png(fig)


def _label(ax, r: int, c: int, row_titles: list[str], col_titles: list[str] | None) -> None:
    """No ticks; the row's title on the first column, the column's title on the first row."""
    ax.set_xticks([])
    ax.set_yticks([])
    if c == 0:
        ax.set_ylabel(row_titles[r], fontsize=7)
    if col_titles and r == 0:
        ax.set_title(col_titles[c], fontsize=6)


def image_grid(images: torch.Tensor, overlays: list[torch.Tensor | None], row_titles: list[str],
               col_titles: list[str] | None = None) -> bytes:
    """Rows of images; each row optionally overlaid with a [B,H,W] map in [0, 1] (jet, alpha)."""
    plt = _plt()
    rows, cols = len(overlays), images.shape[0]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.2), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            img = images[c].float()
            img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-12)
            ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray")
            ov = overlays[r]
            if ov is not None:
                m = ov[c].float()
                m = (m - m.min()) / (m.max() - m.min()).clamp(min=1e-12)
                ax.imshow(m.numpy(), cmap="jet", alpha=0.45)
            _label(ax, r, c, row_titles, col_titles)
    return to_png(fig)


def sparsity(matrix: torch.Tensor, top: float = 0.1) -> list[float]:
    """Per class: the share of gradient mass held by the top ``top`` fraction of channels."""
    k = max(1, int(round(matrix.shape[1] * top)))
    sorted_vals = matrix.sort(dim=1, descending=True).values
    return (sorted_vals[:, :k].sum(1) / matrix.sum(1).clamp(min=1e-300)).tolist()


def shared_pairs(relevant: torch.Tensor, names: list[str], top: int = 5) -> list[dict[str, Any]]:
    """Class pairs whose relevant-channel sets overlap most (Jaccard) — likely confusions."""
    out: list[dict[str, Any]] = []
    n = relevant.shape[0]
    for a in range(n):
        for b in range(a + 1, n):
            inter = int((relevant[a] & relevant[b]).sum())
            union = int((relevant[a] | relevant[b]).sum())
            out.append({"a": names[a], "b": names[b], "shared": inter, "jaccard": inter / union if union else 0.0})
    return sorted(out, key=lambda r: -r["jaccard"])[:top]


def cutouts(images: torch.Tensor, masks: list[torch.Tensor], row_titles: list[str], col_titles: list[str] | None = None) -> bytes:
    """Row 0 the images; each further row the image kept where its ``[B, H, W]`` mask is set and
    dimmed and tinted red elsewhere (what the mask calls background shows, even on a black image)."""
    x = images.float()
    lo = x.amin((1, 2, 3), keepdim=True)
    x = (x - lo) / (x.amax((1, 2, 3), keepdim=True) - lo).clamp(min=1e-12)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    red = torch.tensor([0.55, 0.0, 0.0])[None, :, None, None]
    rows = [x] + [torch.where(m[:, None].float() > 0.5, x, 0.35 * x + red) for m in masks]
    plt = _plt()
    fig, axes = plt.subplots(len(rows), x.shape[0], figsize=(x.shape[0] * 1.1, len(rows) * 1.2), squeeze=False)
    for r, imgs in enumerate(rows):
        for c in range(x.shape[0]):
            ax = axes[r][c]
            img = imgs[c]
            ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            _label(ax, r, c, row_titles, col_titles)
    return to_png(fig)
