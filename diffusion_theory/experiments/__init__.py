"""Paper reproductions: one module per paper, sweep grids in ``configs/sweeps/<name>.yaml``.

    python scripts/reproduce.py mtgm|gp [--scale cpu|paper|smoke] [--only STUDY ...] [--grid FILE]

An experiment is an ``Experiment`` subclass (``common.py``): its ``reproduce`` fits (or reuses) the runs of
its studies through ``Sweep.fit`` and writes its sections of the report through ``Report``. A third paper
adds its module and one line to ``BUILTIN`` below, or, from its own package, an entry point of the group
``diffusion_theory.experiments`` naming its class (``myexp = "my_pkg.sweeps:MyExperiment"``); neither edits
the other papers' modules.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from diffusion_theory.experiments.common import REPO, Experiment, Report, Sweep, load_grid

ENTRY_POINT_GROUP = "diffusion_theory.experiments"

BUILTIN: dict[str, str] = {
    "mtgm": "diffusion_theory.experiments.mtgm:MTGMExperiment",  # paper 1, Fig. 2, Fig. 4, Bayes gap
    "gp": "diffusion_theory.experiments.gp:GPExperiment",  # paper 2, Fig. 1, 4, 5, 10-12, control
    "ball": "diffusion_theory.experiments.ball:BallExperiment",  # paper 2 Sec. 6.2, Fig. 6, 13, ball physics
    "mnist": "diffusion_theory.experiments.mnist:MNISTExperiment",  # paper 1, Sec. 5.2, Fig. 3 and 5 (images)
}


def available() -> dict[str, str]:
    """name -> ``module:Class`` of every experiment: the built-in ones and those of installed plugins."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def experiment_class(name: str) -> type[Experiment]:
    known = available()
    if name not in known:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(sorted(known))}")
    module, _, attr = known[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise TypeError(f"experiment {name!r}: {known[name]} is not a diffusion_theory.experiments.Experiment")
    return cls


def reproduce(
    name: str,
    scale: str,
    only: list[str] | None = None,
    root: Path = REPO / "runs" / "reproduce",
    wandb: bool = False,
    report: Path | None = None,
    grid: Path | None = None,
    seeds: int = 3,
) -> None:
    """Run experiment ``name``'s studies ``only`` (all if None) at ``scale`` and update the report.

    Args:
        root: the sweep root; runs go to ``experiment.runs_root(root, scale)``.
        wandb: also log every run to W&B.
        report: the markdown report (default docs/reproduction.md); figures go to ``figures/`` beside it.
        grid: the sweep grid (default configs/sweeps/<name>.yaml).
        seeds: seeds per sweep point (0 .. seeds-1; the grid's ``seed_keys`` say which config fields a seed sets).
    """
    if seeds < 1:
        raise ValueError(f"--seeds: at least 1 seed per sweep point; got {seeds}")
    cls = experiment_class(name)
    experiment = cls(load_grid(grid) if grid is not None else None)
    experiment.check(scale, only)
    sweep = Sweep(
        experiment.runs_root(Path(root), scale),
        wandb=wandb,
        seeds=seeds,
        seed_keys=list(experiment.grid.get("seed_keys") or []),
    )
    experiment.reproduce(scale, only, sweep, Report(report) if report is not None else Report())


__all__ = ["Experiment", "Report", "Sweep", "available", "experiment_class", "reproduce"]
