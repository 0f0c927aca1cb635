"""A diffusion_theory plugin: Gaussian AR(1) sequences, whose exact score is known.

Registered in ``pyproject.toml`` under the entry-point group ``diffusion_theory.plugins``:

    [project.entry-points."diffusion_theory.plugins"]
    ar1 = "dt_plugin_example:components"

``scripts/fit.py`` calls ``components()`` at start and imports the modules it names, so their
classes are found by short name in configs (``class_path: AR1DataModule``).
"""

from __future__ import annotations

COMPONENT_MODULES = (
    "dt_plugin_example.datamodule",  # AR1DataModule: data with exact_eps (ScoreError works on it)
    "dt_plugin_example.network",  # SequenceLinearDenoiser: f(X, t) = A_t X
    "dt_plugin_example.lag_correlation",  # LagOneCorrelation: the plugin's own diagnostic
)


def components() -> list[str]:
    """The entry point: modules whose classes become available by short name."""
    return list(COMPONENT_MODULES)
