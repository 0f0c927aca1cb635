"""Line figures: metrics against training step, diffusion step or sample size.

curves_figure            one line per metric against training step (paper 1 Fig. 2A, 2E, 4; training curves)
sweep_figure             several runs' curves on one axis (paper 1 Fig. 2B-2D)
output_scale_figure      learned v_t against paper 1 (MTGM) eq. (16)
relative_error_figure    paper 2 (GP) Fig. 4(a): relative error eps against the number of training sequences n
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def curves_figure(
    steps: Mapping[str, Sequence[float]],
    values: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str = "",
    logy: bool = False,
    dashed: Sequence[str] = (),
) -> Figure:
    """One line per metric against training step; names in ``dashed`` are drawn as reference lines."""
    fig = new_figure((6, 4), dpi=110)
    ax = fig.subplots()
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


def sweep_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str, logy: bool = True
) -> Figure:
    """Several runs' curves (label -> (steps, values)) on one axis, e.g. excess risk against step."""
    return curves_figure(
        {k: xs for k, (xs, _) in curves.items()},
        {k: ys for k, (_, ys) in curves.items()},
        title,
        ylabel=ylabel,
        logy=logy,
    )


def output_scale_figure(t: np.ndarray, learned: np.ndarray, oracle: np.ndarray) -> Figure:
    """Learned v_t against the oracle coefficient sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t)
    (paper 1 (MTGM) eq. (16))."""
    fig = new_figure((6, 4), dpi=110)
    ax = fig.subplots()
    ax.plot(t, oracle, "k--", label="oracle  sqrt(1-abar)/(1-abar+rho^2 abar)  (paper 1 (MTGM) eq. (16))")
    ax.plot(t, learned, "o-", ms=3, label="learned v_t")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel("output scale")
    ax.set_title("Output scale v_t against its oracle value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def relative_error_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str) -> Figure:
    """Paper 2 (GP) Fig. 4(a): one line per kernel setting, relative error eps (Appendix F) against n (log-log)."""
    fig = new_figure((6, 4), dpi=110)
    ax = fig.subplots()
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
