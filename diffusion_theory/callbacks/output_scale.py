"""Learned output scales v_t against their oracle value, paper 1 (MTGM) eq. (16).

    val/output_scale_error = mean_t |v_t - sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t)|
over the evaluation grid's steps (``metrics.risks.output_scale_error``). A weight diagnostic: the parameters
are the same on every rank (DDP keeps them in sync), so no reduction is needed.
"""

from __future__ import annotations

import lightning.pytorch as pl

from diffusion_theory import plotting
from diffusion_theory.callbacks.diagnostic import WeightDiagnostic
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.metrics.risks import output_scale_error
from diffusion_theory.protocols import HasOutputScales, KnowsOracleOutputScale


class OutputScale(WeightDiagnostic):
    """Needs a network with ``output_scales()`` (T,) and data with ``oracle_output_scale(abar)``."""

    requires = (("network", HasOutputScales), ("data", KnowsOracleOutputScale))

    def __init__(self, every_n_epochs: int = 1):
        super().__init__(every_n_epochs)
        self._curves = None

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        t = pl_module.schedule.eval_times()
        learned = pl_module.inference_network.output_scales().detach().double().cpu()[t.long() - 1]  # the trained steps
        oracle = trainer.datamodule.oracle_output_scale(pl_module.schedule.alpha_bar(t)).double().cpu()
        self._curves = (t.numpy(), learned.numpy(), oracle.numpy())
        return {"val/output_scale_error": float(output_scale_error(learned, oracle).float())}

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        if self._curves is not None:
            save_figure(trainer, plotting.output_scale_figure(*self._curves), "output_scale")
            self._curves = None
