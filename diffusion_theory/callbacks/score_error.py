"""Score error and Bayes risk, for data that knows its exact noise posterior mean E[E | X^t].

    val/score_error = E_t E ||s_theta - s||^2 / (2 dP),  s_theta = -f / sqrt(1 - abar_t),
                      s = -E[E | X^t] / sqrt(1 - abar_t)                        (paper 1 eqs. 5, 11)
    val/bayes_risk  = loss_scale * E_t E ||E - E[E | X^t]||^2 / (dP)             (eq. 6, the loss's scale)
    val/bayes_gap   = val/ddpm_loss - val/bayes_risk  (same evaluation grid and noise)
Per time bin (equal bins of the evaluation times, early to late): val/score_error/t_bin_k, val/bayes_gap/t_bin_k.
"""
from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor

from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.protocols import KnowsPosteriorNoise


class ScoreError(Diagnostic):
    """Needs data implementing ``exact_eps``; logs val/score_error, val/bayes_risk, val/bayes_gap (also per time bin)."""

    requires = (("data", KnowsPosteriorNoise),)

    def metric_names(self, trainer, pl_module) -> list[str]:
        names = ["val/score_error", "val/bayes_risk", "val/bayes_gap"]
        names += [f"val/score_error/t_bin_{k}" for k in range(self.n_time_bins)]
        return names + [f"val/bayes_gap/t_bin_{k}" for k in range(self.n_time_bins)]

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: dict[str, Tensor],
                batch: dict[str, Tensor], batch_idx: int) -> None:
        exact = trainer.datamodule.exact_eps(outputs["x_t"], outputs["abar"], outputs).float()
        eps_hat, noise = outputs["eps_hat"].float(), outputs["noise"].float()
        per_dim = lambda a: a.pow(2).flatten(1).mean(1)  # noqa: E731  (B n_t,)
        score_err = 0.5 * per_dim(eps_hat - exact) / (1 - outputs["abar"].float())
        bayes = pl_module.loss_scale * per_dim(noise - exact)
        self.update("val/score_error", score_err)
        self.update("val/bayes_risk", bayes)
        gap = outputs["loss"] - bayes
        self.update("val/bayes_gap", gap)
        bins = self.time_bins(outputs)
        for k in range(self.n_time_bins):
            mask = bins == k
            if mask.any():
                self.update(f"val/score_error/t_bin_{k}", score_err[mask])
                self.update(f"val/bayes_gap/t_bin_{k}", gap[mask])
