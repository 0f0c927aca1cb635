"""Score error and Bayes risk, for data that knows its exact noise posterior mean E[E | X^t].

    val/score_error = E_t E ||s_theta - s||^2 / (2 dP),  s_theta = -f / sqrt(1 - abar_t),
                      s = -E[E | X^t] / sqrt(1 - abar_t)                  (paper 1 (MTGM) eqs. (5), (11))
    val/bayes_risk  = loss_scale * E_t E ||E - E[E | X^t]||^2 / (dP)       (paper 1 (MTGM) eq. (6), the loss's scale)
    val/bayes_gap   = val/ddpm_loss - val/bayes_risk  (same evaluation grid and noise)
Per time bin (equal bins of the evaluation times, early to late): val/score_error/t_bin_k, val/bayes_gap/t_bin_k.
The formulas are ``metrics.risks.score_error`` and ``metrics.risks.denoising_risk``.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor

from diffusion_theory.callbacks.diagnostic import BatchDiagnostic
from diffusion_theory.metrics.risks import denoising_risk, score_error
from diffusion_theory.protocols import KnowsPosteriorNoise


class ScoreError(BatchDiagnostic):
    """Needs data implementing ``exact_eps``; logs val/score_error, val/bayes_risk, val/bayes_gap (also per time bin)."""

    requires = (("data", KnowsPosteriorNoise),)

    def metric_names(self, trainer, pl_module) -> list[str]:
        names = ["val/score_error", "val/bayes_risk", "val/bayes_gap"]
        return names + self.time_bin_names("val/score_error") + self.time_bin_names("val/bayes_gap")

    def measure(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: dict[str, Tensor],
        batch: dict[str, Tensor],
        batch_idx: int,
    ) -> None:
        exact = trainer.datamodule.exact_eps(outputs["x_t"], outputs["abar"], outputs).float()
        eps_hat, noise = outputs["eps_hat"].float(), outputs["noise"].float()
        bayes = denoising_risk(noise, exact, pl_module.loss_scale)  # (B n_t,)
        self.update_with_time_bins("val/score_error", score_error(eps_hat, exact, outputs["abar"].float()), outputs)
        self.update("val/bayes_risk", bayes)
        self.update_with_time_bins("val/bayes_gap", outputs["loss"] - bayes, outputs)
