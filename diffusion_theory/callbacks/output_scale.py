"""Learned output scales v_t against their oracle value, paper 1 eq. (16).

    val/output_scale_error = mean_t |v_t - sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t)|
The parameters are the same on every rank (DDP keeps them in sync), so no reduction is needed.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch

from diffusion_theory import plotting
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.protocols import HasOutputScales, KnowsOracleOutputScale, require


class OutputScale(pl.Callback):
    """Needs a network with ``output_scales()`` (T,) and data with ``oracle_output_scale(abar)``."""

    def __init__(self, every_n_epochs: int = 1):
        if every_n_epochs < 1:
            raise ValueError(f"OutputScale.every_n_epochs must be >= 1; got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module.network, HasOutputScales, "OutputScale", "network")
        require(trainer.datamodule, KnowsOracleOutputScale, "OutputScale", "data")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        t = pl_module.schedule.eval_times()
        learned = pl_module.inference_network.output_scales().detach().double().cpu()[t.long() - 1]  # the trained steps
        oracle = trainer.datamodule.oracle_output_scale(pl_module.schedule.alpha_bar(t)).double().cpu()
        pl_module.log("val/output_scale_error", (learned - oracle).abs().mean().float().to(pl_module.device),
                      sync_dist=False)
        save_figure(trainer, plotting.output_scale_figure(t.numpy(), learned.numpy(), oracle.numpy()), "output_scale")
