"""diffusion_theory.plotting: every figure renders headless, and importing it (or any callback) leaves the
caller's matplotlib backend alone (a notebook keeps inline plots)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import ROOT, subprocess_env
from matplotlib.figure import Figure

from diffusion_theory import plotting


def figures() -> dict[str, Figure]:
    rng = np.random.default_rng(0)
    steps, vals = {"a": [1, 2, 3], "b": [1, 2, 3]}, {"a": [1.0, 0.5, 0.2], "b": [0.3, 0.3, 0.3]}
    return {
        "curves": plotting.curves_figure(steps, vals, "t", logy=True, dashed=["b"]),
        "sweep": plotting.sweep_figure({"r1": ([1, 2], [1.0, 0.1]), "r2": ([1, 2], [2.0, 0.2])}, "t", "y"),
        "output_scale": plotting.output_scale_figure(np.arange(5), rng.random(5), rng.random(5)),
        "relative_error": plotting.relative_error_figure({"nu = 1": ([10, 100], [3.0, 1.0])}, "t"),
        "attention": plotting.attention_matrix_figure(rng.random((6, 6)), np.array([1, 0, 1, 2, 0, 2]), "t"),
        "covariance": plotting.covariance_figure(np.eye(5), np.eye(5), np.eye(3), -np.eye(3), "t"),
        "grid": plotting.heatmap_grid(
            rng.random((2, 3, 4, 4)), ["l1", "l2"], ["h1", "h2", "h3"], "t", split=2, shared_scale="row"
        ),
    }


def test_every_figure_saves_as_png_without_pyplot(tmp_path):
    for name, fig in figures().items():
        assert isinstance(fig, Figure) and fig.canvas.manager is None, name  # not registered with pyplot
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        plotting.close(fig)


def test_importing_callbacks_and_plotting_keeps_the_callers_backend():
    """The old plotting module called matplotlib.use("Agg") on import, overriding e.g. a notebook's inline backend."""
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import pkgutil, importlib, diffusion_theory.callbacks as cb, diffusion_theory.plotting\n"
        "for m in pkgutil.iter_modules(cb.__path__): importlib.import_module(f'diffusion_theory.callbacks.{m.name}')\n"
        "import diffusion_theory.experiments.mtgm, diffusion_theory.experiments.gp\n"
        "print(matplotlib.get_backend())\n"
    )
    env = subprocess_env()
    env.pop("MPLBACKEND", None)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().lower() == "svg"


def test_errorbar_series_at_one_x_are_dodged_and_nonpositive_lows_clipped_on_log_axes():
    from diffusion_theory.plotting.bands import errorbar_figure

    fig = errorbar_figure(
        {"a": ([3200], [1.4], [-0.2], [3.0]), "b": ([3200], [2.9], [1.5], [4.3])}, "t", "eps", "n", logx=True, logy=True
    )
    ax = fig.axes[0]
    xs = [line.get_xdata()[0] for line in ax.lines if len(line.get_xdata()) == 1 and line.get_marker() == "o"]
    assert len(xs) == 2 and xs[0] < 3200 < xs[1] and xs[1] / xs[0] < 1.1  # dodged by a few percent
    assert ax.get_ylim()[0] > 0  # a log axis: the negative lower bound was clipped, not plotted


def test_band_with_a_nonpositive_lower_end_does_not_stretch_a_log_axis():
    from diffusion_theory.plotting.bands import band_figure

    fig = band_figure(
        {"a": ([1, 2], [0.5, 0.3], [-4.0, 0.2], [9.0, 0.4]), "b": ([1, 2], [0.2, 0.1], [0.15, 0.09], [0.25, 0.11])},
        "t",
        "y",
    )
    assert fig.axes[0].get_ylim()[0] >= 0.1 / 10 / 2  # the band is cut at a tenth of the smallest mean
