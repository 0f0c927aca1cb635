"""Pictures of generated samples that fit their shape (``scripts/sample.py``).

(n, C, H, W)   images: a grid, one row per class when labels are given (C = 1 grey, 3 RGB, else channel 0)
(n, N, d)      sequences of N frames in R^d: one panel per sample (up to 8), the d coordinates against
               the frame index i (paper 2's Gaussian-process sequences); a single frame (N = 1, d = 2):
               a scatter of the points, coloured by class
(n, d)         points: a scatter of the first two coordinates
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def samples_figure(samples: np.ndarray, title: str, labels: np.ndarray | None = None, max_items: int = 64) -> Figure:
    """The picture of ``samples`` (see the module docstring); ``labels`` (n,) the class of each sample or None."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 4:
        return image_grid_figure(samples, title, labels, max_items)
    if samples.ndim == 3 and samples.shape[1] == 1 and samples.shape[2] == 2:
        return points_figure(samples[:, 0], title, labels)
    if samples.ndim == 3:
        return sequences_figure(samples, title, labels)
    if samples.ndim == 2 and samples.shape[1] >= 2:
        return points_figure(samples, title, labels)
    raise ValueError(
        f"samples_figure: expected (n, C, H, W) images, (n, N, d) sequences or (n, d) points; got shape {samples.shape}"
    )


def image_grid_figure(images: np.ndarray, title: str, labels: np.ndarray | None = None, max_items: int = 64) -> Figure:
    """images (n, C, H, W) on a grid, each scaled to [0, 1] by the batch's 0.5 % and 99.5 % quantiles."""
    images = images[:max_items]
    n, c = images.shape[:2]
    lo, hi = np.quantile(images, [0.005, 0.995])
    shown = np.clip((images - lo) / max(hi - lo, 1e-12), 0, 1)
    if labels is not None:
        classes = list(dict.fromkeys(np.asarray(labels)[:max_items].tolist()))  # in order of appearance
        rows = [[i for i in range(n) if labels[i] == k] for k in classes]
        row_names = [f"class {k}" for k in classes]
    else:
        cols = math.ceil(math.sqrt(n))
        rows = [list(range(r * cols, min(n, (r + 1) * cols))) for r in range(math.ceil(n / cols))]
        row_names = [""] * len(rows)
    n_cols = max(len(r) for r in rows)
    fig = new_figure((1.2 * n_cols + 0.8, 1.2 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (row, name) in enumerate(zip(rows, row_names)):
        for col in range(n_cols):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(row):
                ax.axis("off")
                continue
            img = shown[row[col]]  # (C, H, W)
            if c == 3:
                ax.imshow(img.transpose(1, 2, 0))
            else:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            if col == 0 and name:
                ax.set_ylabel(name)
    fig.suptitle(title)
    return fig


def sequences_figure(
    sequences: np.ndarray, title: str, labels: np.ndarray | None = None, max_panels: int = 8
) -> Figure:
    """sequences (n, N, d): the first ``max_panels`` samples, one panel each, the d coordinates against i."""
    shown = sequences[:max_panels]
    k = shown.shape[0]
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig = new_figure((3.2 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    index = np.arange(sequences.shape[1])
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= k:
            ax.axis("off")
            continue
        ax.plot(index, shown[j], lw=1)
        ax.set_title(f"sample {j}" + (f", class {int(labels[j])}" if labels is not None else ""), fontsize=9)
        ax.set_xlabel("frame i")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def points_figure(points: np.ndarray, title: str, labels: np.ndarray | None = None) -> Figure:
    """points (n, d): a scatter of the first two coordinates, coloured by class."""
    fig = new_figure((4.5, 4.5))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5)
    else:
        for k in dict.fromkeys(np.asarray(labels).tolist()):
            mask = np.asarray(labels) == k
            ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.5, label=f"class {k}")
        ax.legend(markerscale=3, fontsize=8)
    ax.set_xlabel("x_1")
    ax.set_ylabel("x_2")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")
    return fig
