"""Grids of many small panels: rows x columns of matrices.

heatmap_grid   paper 2 (GP) Figs. 4(b), 10, 11 (layers x heads) and Figs. 5, 12 (layers x backward steps)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from diffusion_theory.plotting.figure import new_figure


def heatmap_grid(
    matrices: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    cell_titles: Sequence[Sequence[str]] | None = None,
    split: int | None = None,
    cmap: str = "viridis",
    shared_scale: str = "none",
    cell_size: float = 1.7,
) -> Figure:
    """matrices (R, C, a, b) drawn as an R x C grid of heat maps.

    ``split``: draw lines after row / column ``split`` (the z | e boundary of a [z; e] token).
    ``shared_scale``: ``none`` (each cell its own colour range), ``row`` or ``all``.
    """
    R, C = matrices.shape[:2]
    fig = new_figure((cell_size * C + 0.8, cell_size * R + 0.9), dpi=100)
    axes = fig.subplots(R, C, squeeze=False)
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
