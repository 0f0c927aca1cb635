"""Components by short name: built-in classes and those of installed plugin packages.

jsonargparse resolves a short ``class_path`` (``MTGMDataModule``) to any imported subclass of the
expected base class. ``load_components`` imports the built-in modules and every module named in
the ``diffusion_theory.plugins`` entry-point group, so their classes are found by short name.
"""
from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points

BUILTIN_MODULES = (
    "diffusion_theory.datamodules.mtgm",
    "diffusion_theory.models.diffusion_module",
    "diffusion_theory.networks.theory_transformer",
    "diffusion_theory.diffusion.schedules",
    "diffusion_theory.callbacks",
)


def builtin_components() -> list[str]:
    """The entry point of this package itself: the modules holding the built-in components."""
    return list(BUILTIN_MODULES)


def load_components() -> dict[str, str]:
    """Import built-in and plugin modules. Returns {plugin name: error} for plugins that failed to import."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    failures: dict[str, str] = {}
    for ep in entry_points(group="diffusion_theory.plugins"):
        try:
            target = ep.load()
            modules = target() if callable(target) else []
            for module in modules or []:
                importlib.import_module(module)
        except Exception as err:  # a broken plugin must not take the others down
            failures[ep.name] = f"{type(err).__name__}: {err}"
            warnings.warn(f"diffusion_theory plugin {ep.name!r} ({ep.value}) failed to import: "
                          f"{type(err).__name__}: {err}. The other components are still available.", stacklevel=2)
    return failures
