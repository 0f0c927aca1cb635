"""Generated Gaussian-process sequences against the truth: per-frame variance and eps with an expected denominator.

Paper 2 (GP) Sec. 2: X = (x_1..x_N), Cov(x_i, x_j) = Gamma_ij Sigma, so Var of frame i is Gamma_ii Sigma.

    per_frame_variance_ratio   r_i = (1/n sum_k ||x_k[i] - m_i||^2) / (Gamma_ii tr Sigma)       (N,)
                               1 for every frame when the samples have the true marginal law; a boundary excess
                               (first and last frames) shows as r_1, r_N > 1.
    expected_denominator_eps   Appendix F's eps = num / den with den replaced by its average over several
                               independent draws of n true sequences: eps = num / mean_j den_j. One draw's den
                               varies several-fold (true samples alone give eps from ~0.5 to ~1.6), the average
                               does not, so eps differences between settings become resolvable. Also returned:
                               the raw Frobenius error sqrt(num), comparable across settings whose den differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusion_theory.metrics.covariance import SigmaEstimate, estimate_kernel, kron_distance_sq


def per_frame_variance_ratio(
    samples: Tensor, gamma: Tensor, sigma: Tensor, mean: Tensor | float | None = 0.0
) -> Tensor:
    """r_i for samples (n, N, d), gamma (N, N), sigma (d, d); ``mean`` None estimates each frame's mean from the
    samples (then with the 1/(n - 1) correction), else the known mean (paper 2 Sec. 6.1: mu = 0). Float64 (N,)."""
    if samples.dim() != 3:
        raise ValueError(f"per_frame_variance_ratio: samples must be (n, N, d); got {tuple(samples.shape)}")
    n, N, d = samples.shape
    if gamma.shape != (N, N) or sigma.shape != (d, d):
        raise ValueError(
            f"per_frame_variance_ratio: gamma must be ({N}, {N}) and sigma ({d}, {d}); "
            f"got {tuple(gamma.shape)} and {tuple(sigma.shape)}"
        )
    x = samples.to(torch.float64)
    if mean is None:
        if n < 2:
            raise ValueError("per_frame_variance_ratio: estimating the mean needs n >= 2 samples")
        var = (x - x.mean(0)).pow(2).sum((0, 2)) / (n - 1)  # (N,)
    else:
        var = (x - torch.as_tensor(mean, dtype=torch.float64)).pow(2).sum((0, 2)) / n
    return var / (torch.diagonal(gamma.to(torch.float64)) * torch.trace(sigma.to(torch.float64)))


@dataclass(frozen=True)
class ExpectedDenominatorEps:
    epsilon: float  # numerator / mean(denominators)
    numerator: float  # ||Gamma_hat (x) Sigma_hat - Gamma (x) Sigma||_F^2 of the generated samples
    denominators: list[float]  # the same for each draw of true sequences
    frobenius_error: float  # sqrt(numerator): the raw error, comparable across settings


def expected_denominator_eps(
    generated: Tensor,
    true_draws: Sequence[Tensor],
    gamma: Tensor,
    sigma: Tensor,
    mean: Tensor | float | None = None,
    sigma_estimate: SigmaEstimate = "normalized",
) -> ExpectedDenominatorEps:
    """eps of ``generated`` (n, N, d) with the Appendix F denominator averaged over ``true_draws`` (each (n, N, d):
    n true sequences, the same n as generated); the estimator is ``metrics.covariance.estimate_kernel``."""
    if not true_draws:
        raise ValueError("expected_denominator_eps: needs at least one draw of true sequences")
    if any(t.shape != generated.shape for t in true_draws):
        raise ValueError(
            f"expected_denominator_eps: every true draw must have the generated shape "
            f"{tuple(generated.shape)} (eps compares equal sample sizes); got "
            f"{[tuple(t.shape) for t in true_draws]}"
        )
    gamma, sigma = gamma.to(torch.float64), sigma.to(torch.float64)

    def distance(x: Tensor) -> float:
        est = estimate_kernel(x, sigma, mean, sigma_estimate)
        return float(kron_distance_sq(est.gamma_hat, est.sigma_hat, gamma, sigma))

    num = distance(generated)
    dens = [distance(t) for t in true_draws]
    return ExpectedDenominatorEps(
        epsilon=num / (sum(dens) / len(dens)), numerator=num, denominators=dens, frobenius_error=num**0.5
    )
