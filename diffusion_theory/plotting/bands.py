"""Figures with the spread over seeds: mean curves with a band, points with error bars (reproduction report).

band_figure       label -> (x, per-seed y lists): the mean line and a shaded band [lo, hi] per x
errorbar_figure   label -> (x, mean, lo, hi): points with asymmetric error bars (log-log optional)
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def band_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
    xlabel: str = "training step",
    logy: bool = True,
) -> Figure:
    """One line per label: (x, mean, lo, hi); the band [lo, hi] is shaded (e.g. the 95 % t-interval over seeds;
    where lo or hi is nan, a single seed, no band is drawn)."""
    fig = new_figure((6, 4), dpi=110)
    ax = fig.subplots()
    # on a log axis a band whose lower end is not positive is cut at a tenth of the smallest positive mean, so one
    # wide interval does not stretch the axis over orders of magnitude
    floor = min((m for _, mean, _, _ in curves.values() for m in mean if m > 0), default=1.0) / 10
    for label, (x, mean, lo, hi) in curves.items():
        (line,) = ax.plot(x, mean, marker="o" if len(x) < 30 else None, ms=3, label=label)
        pts = [(a, b, c) for a, b, c in zip(x, lo, hi) if b == b and c == c]  # drop nan
        if pts:
            xs, los, his = zip(*pts)
            if logy:
                los = [max(v, floor) for v in los]
            ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 72), fontsize=10)  # long titles wrap instead of leaving the figure
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def errorbar_figure(
    points: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
    title: str,
    ylabel: str,
    xlabel: str,
    logx: bool = False,
    logy: bool = False,
) -> Figure:
    """One series per label: (x, mean, lo, hi) drawn as points with error bars from lo to hi (none where nan).
    Series are dodged sideways by a few percent of x (on a log x axis: a factor) so bars at the same x stay apart;
    on a log y axis a bar whose lo is not positive is drawn down to the axis' bottom."""
    fig = new_figure((6, 4), dpi=110)
    ax = fig.subplots()
    k = len(points)
    floor = min((m for _, mean, _, _ in points.values() for m in mean if m > 0), default=1.0) / 10
    for i, (label, (x, mean, lo, hi)) in enumerate(points.items()):
        shift = 0.04 * (i - (k - 1) / 2)
        xs = [v * (1 + shift) if logx else v + shift * (max(x) - min(x) or 1.0) for v in x]
        lo = [max(v, floor) if logy and v == v else v for v in lo]
        low = [m - v if v == v else 0.0 for m, v in zip(mean, lo)]
        high = [v - m if v == v else 0.0 for m, v in zip(mean, hi)]
        ax.errorbar(xs, mean, yerr=[low, high], marker="o", ms=4, capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 72), fontsize=10)  # long titles wrap instead of leaving the figure
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
