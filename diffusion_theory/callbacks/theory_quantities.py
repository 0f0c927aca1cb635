"""Theory quantities of a run, logged once when training starts.

From the data (``theory_quantities()``), e.g. nu_min(K) (paper 1 eq. 7) and delta(pi~) (eq. 8),
and from the schedule the time-averaged SNR E_t[abar_t / (1 - abar_t)] over the training times
(Theorem 1 (v)). They go to the loggers as ``theory/<name>`` at step 0 and into the W&B summary.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from diffusion_theory.protocols import HasTheoryQuantities, require


def time_averaged_snr(schedule) -> float:
    """E_t[abar_t / (1 - abar_t)] with t uniform over the training range of a discrete schedule."""
    lo, hi = schedule.time_range
    t = torch.arange(lo, hi + 1)
    abar = schedule.alpha_bar(t)
    return float((abar / (1 - abar)).mean())


class TheoryQuantities(pl.Callback):
    """Needs data implementing ``theory_quantities()``."""

    def setup(self, trainer, pl_module, stage) -> None:
        require(trainer.datamodule, HasTheoryQuantities, "TheoryQuantities", "data")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = dict(trainer.datamodule.theory_quantities())
        if getattr(pl_module.schedule, "discrete", False):
            values["snr"] = time_averaged_snr(pl_module.schedule)
        metrics = {f"theory/{k}": float(v) for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                logger.experiment.summary.update(metrics)
