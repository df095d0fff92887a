"""Plotting helpers used by the chapters, so that notebook cells stay short."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

# BraTS sub-region colours: necrosis/non-enhancing core, oedema, enhancing tumour
LABEL_COLORS = {1: (0.15, 0.45, 1.0), 2: (0.1, 0.85, 0.3), 3: (1.0, 0.85, 0.1), 4: (1.0, 0.85, 0.1)}


def show_row(images, titles=None, cmap="gray", size=2.6, vmin=None, vmax=None, suptitle=None, axes=None):
    """Show 2-D arrays side by side; returns the figure. ``cmap`` may be a list."""
    n = len(images)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(size * n, size * 1.05), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    cmaps = cmap if isinstance(cmap, (list, tuple)) else [cmap] * n
    for i, (ax, im) in enumerate(zip(axes, images)):
        ax.imshow(im, cmap=cmaps[i], vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=9)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def label_overlay(image: np.ndarray, seg: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB image: a grey slice with label colours blended on top (BraTS colours)."""
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.any() else (0, 1)
    g = np.clip((image - lo) / (hi - lo + 1e-8), 0, 1)
    rgb = np.repeat(g[..., None], 3, -1)
    for lab, col in LABEL_COLORS.items():
        m = seg == lab
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.array(col)
    return rgb


def mask_contour(ax, mask: np.ndarray, color="red", lw=1.0) -> None:
    """Draw the outline of a binary mask on an axis."""
    if mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=lw)


def diff_cmap() -> ListedColormap:
    """Colour map for absolute difference maps (black = unchanged)."""
    return plt.get_cmap("inferno")


def plot_history(history: list[dict], keys: list[str], ax=None, smooth: int = 25, title: str | None = None,
                 panels: bool = False):
    """Loss curves from a training history (list of {'step': .., key: value}), moving-averaged.

    ``panels=True``: one small panel per loss, each with its own y-axis (losses of different
    sizes on one axis flatten the small ones); returns the figure. Otherwise one axis (``ax``).
    """
    absent = [k for k in keys if not any(k in h for h in history)]
    if absent:
        have = sorted({k for h in history for k in h} - {"step"})
        raise KeyError(f"not in the training history: {absent}; it has {have}")
    steps = np.array([h["step"] for h in history])
    if panels:
        cols = min(len(keys), 3)
        fig, axes = plt.subplots(-(-len(keys) // cols), cols, figsize=(3.2 * cols, 2.2 * -(-len(keys) // cols)),
                                 squeeze=False, sharex=True)
        for a, k in zip(axes.flat, keys):
            plot_history(history, [k], ax=a, smooth=smooth)
            a.set(title=k, xlabel="", ylabel="")
            a.get_legend().remove()
        for a in axes.flat[len(keys):]:
            a.axis("off")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.8))
    for k in keys:
        v = np.array([h.get(k, np.nan) for h in history], float)
        w = max(1, min(smooth, len(v) // 5 or 1))
        sm = np.convolve(v, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], sm, label=k, lw=1.2)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend(fontsize=7, ncol=2)
    return ax


def image_grid(rows, col_titles=None, row_titles=None, cmap="gray", vmin=0.0, vmax=1.0, size=1.8, suptitle=None,
               ranges=None, colorbar=(), shared_colorbar=None):
    """A grid of 2-D images: ``rows[r][c]``; returns the figure. ``cmap`` may be one per column;
    ``ranges`` maps a column to its own (vmin, vmax) (e.g. a difference map's (0, 0.5));
    ``colorbar`` lists the columns whose panels get a colour bar (difference maps should);
    ``shared_colorbar`` (a label) puts one colour bar, so labelled, beside the whole grid, for grids
    whose panels all share one colour map and range (see :func:`side_colorbar`)."""
    n_r, n_c = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_r, n_c, figsize=(size * n_c, size * n_r + 0.4), squeeze=False)
    cmaps = cmap if isinstance(cmap, (list, tuple)) else [cmap] * n_c
    ranges = ranges or {}
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            ax = axes[r, c]
            lo, hi = ranges.get(c, (vmin, vmax))
            shown = ax.imshow(im, cmap=cmaps[c], vmin=lo, vmax=hi, interpolation="nearest")
            if c in colorbar:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if r == 0 and col_titles:
                ax.set_title(col_titles[c], fontsize=8)
            if c == 0 and row_titles:
                ax.set_ylabel(row_titles[r], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    # leave the suptitle its own band (~0.35 in) above the column titles
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if suptitle else None)
    if shared_colorbar is not None:
        side_colorbar(fig, axes[-1, -1].images[0], shared_colorbar)
    return fig


def side_colorbar(fig, shown, label: str | None = None, axes=None):
    """One colour bar at the right of the figure, beside the panels ``axes`` (default: every panel of
    ``fig``), for panels that share the colour map and range of ``shown`` (an ``AxesImage``). Every
    panel moves left to make room, so that the bar covers none of them; returns the colour bar."""
    panels = [a for a in fig.axes if a.images]
    axes = list(axes) if axes is not None else panels
    room = min(0.15, 0.9 / fig.get_figwidth())              # about 0.9 inch: the bar, its ticks and label
    for a in panels:
        p = a.get_position()
        a.set_position([p.x0 * (1 - room), p.y0, p.width * (1 - room), p.height])
    lo = min(a.get_position().y0 for a in axes)
    hi = max(a.get_position().y1 for a in axes)
    cax = fig.add_axes([1 - room + 0.15 * room, lo + 0.05 * (hi - lo), 0.18 * room, 0.9 * (hi - lo)])
    bar = fig.colorbar(shown, cax=cax)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)
    return bar
