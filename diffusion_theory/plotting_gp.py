"""Figures of paper 2 (Gaussian-process DiT) as pure functions of arrays: they return a Figure.

covariance_figure        Fig. 1 / Fig. 7: Gamma_hat against Gamma, Sigma_hat against Sigma
heatmap_grid             Figs. 4(b), 10, 11, 5, 12: a grid of matrices (layers x heads / steps)
relative_error_figure    Fig. 4(a): relative error eps against the number of training sequences n
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory import plotting  # noqa: F401  (selects the Agg backend before pyplot is used)
import matplotlib.pyplot as plt  # noqa: E402


def covariance_figure(gamma_hat: np.ndarray, gamma: np.ndarray, sigma_hat: np.ndarray, sigma: np.ndarray,
                      title: str) -> Figure:
    """Four heat maps: Gamma_hat, Gamma (N x N, shared colour scale) and Sigma_hat, Sigma (d x d, shared)."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.9), dpi=100, gridspec_kw={"width_ratios": [1.3, 1.3, 1, 1]})
    g_lo, g_hi = min(gamma_hat.min(), gamma.min()), max(gamma_hat.max(), gamma.max())
    s_abs = max(np.abs(sigma_hat).max(), np.abs(sigma).max())
    panels = [(gamma_hat, "estimated Gamma_hat (generated)", "viridis", g_lo, g_hi),
              (gamma, "true Gamma", "viridis", g_lo, g_hi),
              (sigma_hat, "estimated Sigma_hat (generated)", "RdBu_r", -s_abs, s_abs),
              (sigma, "true Sigma", "RdBu_r", -s_abs, s_abs)]
    for ax, (m, name, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time index j" if m.shape[0] == gamma.shape[0] else "coordinate b", fontsize=8)
        ax.set_ylabel("time index i" if m.shape[0] == gamma.shape[0] else "coordinate a", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_grid(matrices: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
                 cell_titles: Sequence[Sequence[str]] | None = None, split: int | None = None,
                 cmap: str = "viridis", shared_scale: str = "none", cell_size: float = 1.7) -> Figure:
    """matrices (R, C, a, b) drawn as an R x C grid of heat maps.

    ``split``: draw lines after row / column ``split`` (the z | e boundary of a [z; e] token).
    ``shared_scale``: ``none`` (each cell its own colour range), ``row`` or ``all``.
    """
    R, C = matrices.shape[:2]
    fig, axes = plt.subplots(R, C, figsize=(cell_size * C + 0.8, cell_size * R + 0.9), dpi=100, squeeze=False)
    for r in range(R):
        for c in range(C):
            m = matrices[r, c]
            if shared_scale == "all":
                lo, hi = matrices.min(), matrices.max()
            elif shared_scale == "row":
                lo, hi = matrices[r].min(), matrices[r].max()
            else:
                lo, hi = m.min(), m.max()
            ax = axes[r, c]
            ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if split is not None:
                ax.axhline(split - 0.5, color="w", lw=0.8)
                ax.axvline(split - 0.5, color="w", lw=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if cell_titles is not None:
                ax.set_title(cell_titles[r][c], fontsize=7, pad=2)
            elif r == 0:
                ax.set_title(col_labels[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if cell_titles is not None:
        for c in range(C):
            axes[-1, c].set_xlabel(col_labels[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def relative_error_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str) -> Figure:
    """Fig. 4(a): one line per kernel setting, relative error eps against n (log-log)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for label, (ns, eps) in curves.items():
        ax.plot(ns, eps, marker="o", ms=4, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training sequences n")
    ax.set_ylabel("relative error eps (Appendix F)")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
