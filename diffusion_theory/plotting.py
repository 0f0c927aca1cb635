"""Matplotlib figures as pure functions of numbers: they return a Figure; callbacks save and log it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def curves_figure(steps: Mapping[str, Sequence[float]], values: Mapping[str, Sequence[float]], title: str,
                  ylabel: str = "", logy: bool = False, dashed: Sequence[str] = ()) -> Figure:
    """One line per metric against training step; names in ``dashed`` are drawn as reference lines."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, ys in values.items():
        if len(ys) == 0:
            continue
        style = "--" if name in dashed else "-"
        ax.plot(steps[name], ys, style, marker="o" if len(ys) < 30 else None, ms=3, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def output_scale_figure(t: np.ndarray, learned: np.ndarray, oracle: np.ndarray) -> Figure:
    """Learned v_t against the oracle coefficient sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t) (eq. 16)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(t, oracle, "k--", label="oracle  sqrt(1-abar)/(1-abar+rho^2 abar)  (eq. 16)")
    ax.plot(t, learned, "o-", ms=3, label="learned v_t")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel("output scale")
    ax.set_title("Output scale v_t against its oracle value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_matrix_figure(attention: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """A (P, P) attention matrix with tokens sorted by pattern; lines separate the patterns."""
    order = np.argsort(labels, kind="stable")
    a = attention[np.ix_(order, order)]
    sorted_labels = labels[order]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
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


def sweep_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str,
                 logy: bool = True) -> Figure:
    """Several runs' curves (label -> (steps, values)) on one axis, e.g. excess risk against step."""
    return curves_figure({k: xs for k, (xs, _) in curves.items()}, {k: ys for k, (_, ys) in curves.items()},
                         title, ylabel=ylabel, logy=logy)


def close(fig: Figure) -> None:
    plt.close(fig)
