"""Checkpoints as W&B artifacts (``run.log_checkpoints: true``).

At the end of a successful fit, rank zero logs one artifact ``model-<W&B run id>`` of type ``model`` holding
``last.ckpt`` and, when ``run.monitor`` is set, ``best.ckpt``, with the aliases ``latest`` and ``step-<global step>``.
(Lightning's ``WandbLogger(log_model=True)`` logs only ``ModelCheckpoint`` files; ``last.ckpt`` is written by
``checkpointing.LastCheckpoint``.) An offline run records the artifact in its offline folder; it uploads with
``wandb sync`` (``scripts/wandb_sync.py``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only


class CheckpointArtifacts(pl.Callback):
    """Logs ``<dirpath>/last.ckpt`` and ``<dirpath>/best.ckpt`` (those that exist) as a W&B model artifact."""

    def __init__(self, dirpath: str | Path, monitor: str | None = None):
        self.dirpath = Path(dirpath)
        self.monitor = monitor

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After every callback's ``on_train_end`` (the final ``last.ckpt`` is written), before W&B is finished."""
        files = [self.dirpath / name for name in ("last.ckpt", "best.ckpt") if (self.dirpath / name).is_file()]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and files:
                self._log(logger, files, trainer.global_step)

    def _log(self, logger: WandbLogger, files: list[Path], step: int) -> None:
        import wandb

        run = logger.experiment
        artifact = wandb.Artifact(
            f"model-{run.id}",
            type="model",
            metadata={"global_step": step, "monitor": self.monitor, "files": [f.name for f in files]},
        )
        for f in files:
            artifact.add_file(str(f), name=f.name)
        run.log_artifact(artifact, aliases=["latest", f"step-{step}"])
        if run.offline:
            rank_zero_info(
                f"W&B is offline: checkpoint artifact model-{run.id} ({', '.join(f.name for f in files)}) "
                f"is recorded in {Path(run.dir).parent} and uploads with `wandb sync` "
                f"(python scripts/wandb_sync.py <run folder>)"
            )
