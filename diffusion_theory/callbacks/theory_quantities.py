"""Theory quantities of a run, logged once when training starts.

From the data (``theory_quantities()``), e.g. nu_min(K) (paper 1 (MTGM) eq. (7)) and delta(pi~) (eq. (8)),
and from a discrete schedule the time-averaged SNR E_t[abar_t / (1 - abar_t)] over the training times
(paper 1 (MTGM), defined after eq. (8), Theorem 1 (v); ``metrics.risks.time_averaged_snr``). They go to the
loggers as ``theory/<name>`` at step 0 and into the W&B summary. A weight diagnostic (from the model's
schedule and the data alone) that runs at the start of training instead of at validations.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger

from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.metrics.risks import time_averaged_snr
from diffusion_theory.protocols import HasTheoryQuantities


def schedule_snr(schedule) -> float:
    """The time-averaged SNR with t uniform over the training range of a discrete schedule."""
    lo, hi = schedule.time_range
    return time_averaged_snr(schedule.alpha_bar(torch.arange(lo, hi + 1)))


class TheoryQuantities(Diagnostic):
    """Needs data implementing ``theory_quantities()``."""

    kind = "weights"
    requires = (("data", HasTheoryQuantities),)

    def __init__(self):
        super().__init__(every_n_epochs=1)

    def values(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        values = dict(trainer.datamodule.theory_quantities())
        if getattr(pl_module.schedule, "discrete", False):
            values["snr"] = schedule_snr(pl_module.schedule)
        return {f"theory/{k}": float(v) for k, v in values.items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = self.values(trainer, pl_module)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                logger.experiment.summary.update(metrics)
