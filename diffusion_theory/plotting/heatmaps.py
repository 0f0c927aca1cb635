"""Heat maps of single matrices, side by side.

attention_matrix_figure  one (P, P) attention matrix, tokens sorted by pattern (paper 1 (MTGM) eq. (20), Fig. 2E)
covariance_figure        paper 2 (GP) Fig. 1 / Fig. 7: Gamma_hat against Gamma, Sigma_hat against Sigma
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def attention_matrix_figure(attention: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """A (P, P) attention matrix with tokens sorted by pattern; lines separate the patterns."""
    order = np.argsort(labels, kind="stable")
    a = attention[np.ix_(order, order)]
    sorted_labels = labels[order]
    fig = new_figure((5.5, 5), dpi=110)
    ax = fig.subplots()
    im = ax.imshow(a, cmap="viridis", interpolation="nearest")
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 0.5
    for b in bounds:
        ax.axhline(b, color="w", lw=0.6)
        ax.axvline(b, color="w", lw=0.6)
    ax.set_xlabel("key token (sorted by pattern)")
    ax.set_ylabel("query token (sorted by pattern)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def covariance_figure(
    gamma_hat: np.ndarray, gamma: np.ndarray, sigma_hat: np.ndarray, sigma: np.ndarray, title: str
) -> Figure:
    """Four heat maps: Gamma_hat, Gamma (N x N, shared colour scale) and Sigma_hat, Sigma (d x d, shared)."""
    fig = new_figure((15, 3.9), dpi=100)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.3, 1.3, 1, 1]})
    g_lo, g_hi = min(gamma_hat.min(), gamma.min()), max(gamma_hat.max(), gamma.max())
    s_abs = max(np.abs(sigma_hat).max(), np.abs(sigma).max())
    panels = [
        (gamma_hat, "estimated Gamma_hat (generated)", "viridis", g_lo, g_hi),
        (gamma, "true Gamma", "viridis", g_lo, g_hi),
        (sigma_hat, "estimated Sigma_hat (generated)", "RdBu_r", -s_abs, s_abs),
        (sigma, "true Sigma", "RdBu_r", -s_abs, s_abs),
    ]
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
