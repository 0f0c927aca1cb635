"""Does the network restore the temporal correlation that noise destroys?

Tweedie: from a noise prediction f, x0_hat(f) = (X^t - sqrt(1 - abar) f) / sqrt(abar) estimates X^0, and
f = E[E | X^t] gives the posterior mean E[X^0 | X^t]. The lag-one autocorrelation of a sequence
Y = (y_1, ..., y_P), y_i in R^d,

    r(Y) = sum_{i<P} <y_i, y_{i+1}> / sum_{i<=P} ||y_i||^2,

is scale-free, so r(x0_hat(f)) = r(X^t - sqrt(1 - abar) f). Logged, averaged over evaluation samples and times:

    val/lag1_corr        = E r(x0_hat(eps_hat))                                   (the network)
    val/lag1_corr_exact  = E r(x0_hat(E[E | X^t]))                                (the Bayes-optimal denoiser)
    val/lag1_corr_error  = E |r(x0_hat(eps_hat)) - r(x0_hat(E[E | X^t]))|        (also per time bin: /t_bin_k)

A denoiser that shrinks each token on its own leaves r at that of X^t, which the noise pulls towards 0;
only one that uses the neighbouring tokens reaches the exact value. Needs data with ``exact_eps``
(``KnowsPosteriorNoise``), sequences (B, P, d) with P >= 2.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor

from diffusion_theory.callbacks.diagnostic import BatchDiagnostic
from diffusion_theory.protocols import KnowsPosteriorNoise


def lag_one_correlation(y: Tensor) -> Tensor:
    """r(Y) for y (N, P, d) with P >= 2: (N,)."""
    num = (y[:, :-1] * y[:, 1:]).sum(dim=(1, 2))
    den = y.pow(2).sum(dim=(1, 2)).clamp_min(1e-30)
    return num / den


class LagOneCorrelation(BatchDiagnostic):
    """Lag-one autocorrelation of the network's denoised sequences against the exact posterior mean's."""

    requires = (("data", KnowsPosteriorNoise),)

    def metric_names(self, trainer, pl_module) -> list[str]:
        names = ["val/lag1_corr", "val/lag1_corr_exact", "val/lag1_corr_error"]
        return names + self.time_bin_names("val/lag1_corr_error")

    def measure(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: dict[str, Tensor],
        batch: dict[str, Tensor],
        batch_idx: int,
    ) -> None:
        x_t = outputs["x_t"].float()  # (B n_t, P, d)
        if x_t.dim() != 3 or x_t.shape[1] < 2:
            raise ValueError(
                f"LagOneCorrelation needs sequences x_t of shape (B, P, d) with P >= 2; got {tuple(x_t.shape)}"
            )
        sigma = (1 - outputs["abar"].float()).sqrt().view(-1, 1, 1)  # sqrt(1 - abar), (B n_t, 1, 1)
        exact = trainer.datamodule.exact_eps(outputs["x_t"], outputs["abar"], outputs).float()
        r_net = lag_one_correlation(x_t - sigma * outputs["eps_hat"].float())
        r_exact = lag_one_correlation(x_t - sigma * exact)
        error = (r_net - r_exact).abs()
        self.update("val/lag1_corr", r_net)
        self.update("val/lag1_corr_exact", r_exact)
        self.update_with_time_bins("val/lag1_corr_error", error, outputs)
