"""Figures as pure functions of numbers, by kind of figure; each returns a ``matplotlib.figure.Figure``.

    curves     line plots: metrics against training step, v_t against t, eps against n
    heatmaps   single matrices side by side: an attention matrix, covariances
    grids      rows x columns of matrices: Q/K/V blocks per layer and head, scores per layer and step
    figure     ``new_figure`` / ``close``: figures made without pyplot

No backend is selected on import (figures are built without pyplot and ``savefig`` renders them with
Agg), so a notebook that imports a callback keeps its inline plots. Callers save and log the figure
(``diffusion_theory.callbacks.figures.save_figure``).
"""

from diffusion_theory.plotting.curves import curves_figure, output_scale_figure, relative_error_figure, sweep_figure
from diffusion_theory.plotting.figure import close, new_figure
from diffusion_theory.plotting.grids import heatmap_grid
from diffusion_theory.plotting.heatmaps import attention_matrix_figure, covariance_figure

__all__ = [
    "attention_matrix_figure",
    "close",
    "covariance_figure",
    "curves_figure",
    "heatmap_grid",
    "new_figure",
    "output_scale_figure",
    "relative_error_figure",
    "sweep_figure",
]
