"""Covariance of generated sequences against the truth: paper 2, Appendix F, Fig. 1 and Fig. 4(a).

Every ``every_n_epochs`` validations, generate n sequences with the (EMA) network and the sampler,
estimate Gamma_hat (Appendix F's projection gamma_hat(i, j) = <Sigma_hat_ij, Sigma>_F / ||Sigma||_F^2)
and Sigma_hat, and log

    val/cov_rel_error        eps = ||Gamma_hat (x) Sigma_hat - Gamma (x) Sigma||_F^2
                                   / ||(Gamma_hat (x) Sigma_hat)_truth - Gamma (x) Sigma||_F^2   (Appendix F)
                             with the denominator from the first n training sequences: eps ~ 1 means
                             "as close to the truth as n training sequences are"
    val/cov_error_generated  the numerator / ||Gamma (x) Sigma||_F^2 (relative squared Frobenius error)
    val/cov_error_training   the denominator / ||Gamma (x) Sigma||_F^2

Figure ``fig1_covariance.png``: Gamma_hat against Gamma and Sigma_hat against Sigma (Fig. 1).
Under DDP the sequences are drawn across ranks and reassembled on every rank
(``GenerationDiagnostic.generate``), so eps is computed identically on all ranks.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl

from diffusion_theory import plotting
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.callbacks.generation_diagnostic import GenerationDiagnostic
from diffusion_theory.metrics.covariance import covariance_relative_error, kron_inner
from diffusion_theory.protocols import KnowsCovariance

DEFAULT_N_SAMPLES = 1000  # Sec. 6.1: "we generate 1000 samples"


class CovarianceError(GenerationDiagnostic):
    """Needs data implementing ``true_covariance`` and ``training_sequences`` (KnowsCovariance).

    Args:
        every_n_epochs: generate at every n-th validation (generation is the expensive part).
        n_samples: sequences to generate; null: as many as the data's training set (``training_set_size()``),
            or 1000 (paper 2 Sec. 6.1) when the data has no finite training set.
        sampler: ``auto`` (ddpm for discrete schedules, sde for the continuous one), ddpm, ddim, sde, ode.
        n_steps: backward steps; null: the paper's 1000 (all T for ddpm).
        sampler_options: further sampler arguments (``diffusion.samplers``), e.g. {spacing: log, method: heun}
            for the probability-flow ODE.
        chunk_size: sequences generated per batch (and the unit split across DDP ranks).
        seed: seed of the generation (chunk k uses (seed, k), on every rank and in every run).
        sigma_estimate: Sigma_hat of Appendix F's estimate (``metrics.covariance``): normalized | diagonal_mean | true.
    """

    requires = (("data", KnowsCovariance),)

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int | None = None,
        sampler: str = "auto",
        n_steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        chunk_size: int = 500,
        seed: int = 0,
        sigma_estimate: Literal["normalized", "diagonal_mean", "true"] = "normalized",
    ):
        if n_samples is not None and n_samples < 2:
            raise ValueError(f"CovarianceError.n_samples must be >= 2 or null; got {n_samples}")
        super().__init__(every_n_epochs, n_samples, sampler, n_steps, sampler_options, chunk_size, seed)
        self.sigma_estimate = sigma_estimate
        self._result = None

    def default_n_samples(self, trainer: pl.Trainer) -> int:
        n_train = trainer.datamodule.training_set_size()
        return int(n_train) if n_train else DEFAULT_N_SAMPLES

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        dm = trainer.datamodule
        n = self.resolve_n(trainer)
        generated = self.generate(trainer, pl_module, n)  # (n, N, d), same on all ranks
        gamma, sigma = dm.true_covariance()
        result = covariance_relative_error(
            generated.cpu(), dm.training_sequences(n), gamma, sigma, sigma_estimate=self.sigma_estimate
        )
        scale = kron_inner(gamma, sigma, gamma, sigma)  # ||Gamma (x) Sigma||_F^2
        self._result = (result, gamma, sigma, n)
        return {
            "val/cov_rel_error": result.epsilon,
            "val/cov_error_generated": result.numerator / scale,
            "val/cov_error_training": result.denominator / scale,
        }

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        if self._result is None:
            return
        result, gamma, sigma, n = self._result
        self._result = None
        fig = plotting.covariance_figure(
            result.gamma_hat.numpy(),
            gamma.numpy(),
            result.sigma_hat.numpy(),
            sigma.numpy(),
            f"Fig. 1: covariance of {n} generated sequences, step {trainer.global_step}: relative error eps = "
            f"{values['val/cov_rel_error']:.3g} (1 = as good as {n} training sequences)",
        )
        save_figure(trainer, fig, "fig1_covariance")
