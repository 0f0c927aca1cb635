"""Checkpoints a killed run can continue from.

- ``AtomicCheckpointIO``: every checkpoint is written to a temporary file and renamed, so a run killed
  mid-write keeps the previous file.
- ``LastCheckpoint``: ``checkpoints/last.ckpt`` at the end of every validation, every
  ``every_n_train_steps`` optimiser steps when set, and when training ends; the loggers are flushed
  first, so ``metrics.csv`` holds every row up to the checkpoint's step.

(Lightning 2.6's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes ``last`` only together with a
top-k checkpoint, so at validation it writes nothing; and its step and epoch triggers are mutually
exclusive. Hence this small callback, on public Trainer API only.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<path>.tmp``, fsync, then ``os.replace``: a run killed mid-write keeps the old file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class LastCheckpoint(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` after each validation, every ``every_n_train_steps`` steps (if set)
    and at the end of training; never twice for the same step, never during the sanity check.

    Runs on every rank (``Trainer.save_checkpoint`` is collective; rank zero writes the file).
    """

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str | os.PathLike, every_n_train_steps: int | None = None):
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"run.checkpoint_every_n_steps must be >= 1 or null; got {every_n_train_steps}")
        self.path = Path(dirpath) / self.FILENAME
        self.every_n_train_steps = every_n_train_steps
        self._last_saved_step: int | None = None

    def _save(self, trainer: pl.Trainer) -> None:
        if (
            trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or trainer.fast_dev_run
            or self._last_saved_step == trainer.global_step
        ):
            return
        for logger in trainer.loggers:  # metrics.csv up to date with the checkpoint (rank zero only inside)
            logger.save()
        trainer.save_checkpoint(self.path)
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)


def with_atomic_checkpoint_io(plugins: Any) -> list:
    """The trainer's plugins with ``AtomicCheckpointIO`` appended, unless they already hold a ``CheckpointIO``
    (the user's choice wins). ``plugins``: None, one plugin or a list, as ``Trainer(plugins=...)`` takes them."""
    from lightning.fabric.plugins import CheckpointIO

    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins
