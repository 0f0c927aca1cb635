"""Saving figures to the run folder and logging them to W&B (rank zero only, no collectives)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure

from diffusion_theory import plotting


def figures_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.default_root_dir) / "figures"


def save_figure(trainer: pl.Trainer, fig: Figure, name: str) -> Path | None:
    """Write ``figures/<name>.png`` and log it to every W&B logger. Call on all ranks; only rank zero writes."""
    if not trainer.is_global_zero:
        plotting.close(fig)
        return None
    path = figures_dir(trainer) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plotting.close(fig)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=f"figures/{name}", images=[str(path)], step=trainer.global_step)
    return path
