"""Figures without pyplot: no backend is chosen, so importing the package leaves matplotlib's backend alone.

A ``matplotlib.figure.Figure`` made directly (not by ``pyplot``) is not registered with any GUI and
needs no backend: ``fig.savefig("x.png")`` renders it with Agg on any machine, headless or not, and a
notebook displays a returned figure inline (IPython's figure formatter). The caller's own pyplot
figures and backend (``%matplotlib inline``, ``widget``, ``MPLBACKEND``) are untouched.
"""

from __future__ import annotations

import sys

from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float], dpi: int = 110) -> Figure:
    """A Figure owned by the caller, not by pyplot (released when the last reference goes)."""
    return Figure(figsize=figsize, dpi=dpi)


def close(fig: Figure) -> None:
    """Release ``fig``. Figures of this package need nothing; one made with pyplot (e.g. by a plugin's
    diagnostic) stays registered with pyplot until ``pyplot.close``, which this calls if pyplot is loaded."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
