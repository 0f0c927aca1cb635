"""Kernel estimation and the covariance relative error of paper 2, Appendix F.

Samples S_k in R^{N x d} (k = 1..n), row i the frame at time index i. Appendix F:

    mu_hat_i      = 1/n sum_k S_k[i]                                                  (d,)
    Sigma_hat_ij  = 1/n sum_k (S_k[i] - mu_hat_i)(S_k[j] - mu_hat_j)^T                 (d, d)
    gamma_hat(i, j) = argmin_a ||Sigma_hat_ij - a Sigma||_F = <Sigma_hat_ij, Sigma>_F / ||Sigma||_F^2

with Sigma the TRUE spatial covariance. Since <u w^T, Sigma>_F = u^T Sigma w for symmetric Sigma,

    Gamma_hat = 1/(n ||Sigma||_F^2) sum_k C_k Sigma C_k^T,    C_k = S_k - mu_hat    (N, N)

which costs n N^2 d (no (Nd) x (Nd) matrix is needed for Gamma_hat).

The spatial factor Sigma_hat of the estimate Gamma_hat (x) Sigma_hat is not spelled out in
Appendix F; the only explicit description is the caption of Fig. 7, which shows
gamma_hat_ij * Sigma_hat "where we set ||Sigma_hat||_F = ||Sigma||_F". We therefore take
Sigma_hat = the average diagonal block 1/N sum_i Sigma_hat_ii (the empirical Cov[X_h], which is
the same Sigma for every h by stationarity), rescaled to Frobenius norm ||Sigma||_F
(``sigma_estimate='normalized'``, the default). This keeps the overall scale of the estimate in
Gamma_hat alone (a variance error c is counted once, not as c^2). ``'diagonal_mean'`` keeps
the average block unscaled and ``'true'`` uses Sigma itself.

Relative error (Appendix F):

    eps = ||Gamma_hat (x) Sigma_hat - Gamma (x) Sigma||_F^2
          / ||(Gamma_hat (x) Sigma_hat)_truth - Gamma (x) Sigma||_F^2

where the denominator uses the same estimator on an equal number of training sequences, so
eps ~ 1 means "as good as the training data". Frobenius norms use

    ||A (x) B - C (x) D||_F^2 = ||A||^2 ||B||^2 - 2 <A, C><B, D> + ||C||^2 ||D||^2,

so no Kronecker product is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

SigmaEstimate = Literal["normalized", "diagonal_mean", "true"]


# ----------------------------------------------------------------------------------------
# Kronecker-product Frobenius algebra
# ----------------------------------------------------------------------------------------


def kron_inner(A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """<A (x) B, C (x) D>_F = <A, C>_F <B, D>_F (A, C same shape; B, D same shape)."""
    return (A * C).sum() * (B * D).sum()


def kron_distance_sq(A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """||A (x) B - C (x) D||_F^2 without forming a Kronecker product (clamped at 0 against round-off)."""
    A, B, C, D = (m.to(torch.float64) for m in (A, B, C, D))
    value = kron_inner(A, B, A, B) - 2 * kron_inner(A, B, C, D) + kron_inner(C, D, C, D)
    return value.clamp_min(0)


# ----------------------------------------------------------------------------------------
# Appendix F estimators
# ----------------------------------------------------------------------------------------


def center(samples: Tensor, mean: Tensor | float | None = None) -> Tensor:
    """float64 samples minus the empirical mean mu_hat_i (mean=None, Appendix F) or a known mean.

    samples: (n, N, d); mean: None, a float, a (d,) or an (N, d) tensor. Returns (n, N, d).
    """
    if samples.dim() != 3:
        raise ValueError(f"samples must have shape (n, N, d); got {tuple(samples.shape)}")
    if samples.shape[0] < 1:
        raise ValueError("samples must contain at least one sequence (n >= 1)")
    x = samples.to(torch.float64)
    if mean is None:
        return x - x.mean(0, keepdim=True)
    return x - torch.as_tensor(mean, dtype=torch.float64, device=x.device)


def empirical_block_covariance(samples: Tensor, mean: Tensor | float | None = None) -> Tensor:
    """All blocks Sigma_hat_ij of the empirical (Nd) x (Nd) covariance, shape (N, N, d, d).

    Uses one (Nd) x (Nd) Gram matrix X^T X / n (X: (n, Nd)); divides by n as in Appendix F.
    """
    c = center(samples, mean)  # (n, N, d)
    n, N, d = c.shape
    flat = c.reshape(n, N * d)  # (n, Nd)
    cov = flat.T @ flat / n  # (Nd, Nd)
    return cov.reshape(N, d, N, d).permute(0, 2, 1, 3)  # (N, N, d, d)


@dataclass
class KernelEstimate:
    """Appendix F estimate of the covariance as gamma_hat (x) sigma_hat (float64)."""

    gamma_hat: Tensor  # (N, N): gamma_hat(i, j) = <Sigma_hat_ij, Sigma>_F / ||Sigma||_F^2
    sigma_hat: Tensor  # (d, d): spatial factor, see ``sigma_estimate``
    n: int  # number of sequences used


def estimate_kernel(
    samples: Tensor, sigma: Tensor, mean: Tensor | float | None = None, sigma_estimate: SigmaEstimate = "normalized"
) -> KernelEstimate:
    """gamma_hat (N, N) and sigma_hat (d, d) from samples (n, N, d) and the true Sigma (d, d).

    gamma_hat = 1/(n ||Sigma||_F^2) sum_k C_k Sigma C_k^T (Appendix F's projection, in closed form);
    sigma_hat per ``sigma_estimate`` (module docstring). Cost O(n N^2 d).
    """
    if sigma_estimate not in ("normalized", "diagonal_mean", "true"):
        raise ValueError(f"sigma_estimate must be 'normalized', 'diagonal_mean' or 'true'; got {sigma_estimate!r}")
    c = center(samples, mean)  # (n, N, d)
    n, N, d = c.shape
    sigma = sigma.to(device=c.device, dtype=torch.float64)
    if sigma.shape != (d, d):
        raise ValueError(f"sigma must have shape (d, d) = ({d}, {d}) to match the samples; got {tuple(sigma.shape)}")
    weighted = c @ sigma  # (n, N, d): C_k Sigma
    # sum_k C_k Sigma C_k^T as one (N, n d) x (n d, N) product.
    gamma_hat = weighted.permute(1, 0, 2).reshape(N, n * d) @ c.permute(1, 0, 2).reshape(N, n * d).T  # (N, N)
    gamma_hat = gamma_hat / (n * (sigma * sigma).sum())
    gamma_hat = 0.5 * (gamma_hat + gamma_hat.T)  # exact symmetry (round-off only)

    if sigma_estimate == "true":
        sigma_hat = sigma.clone()
    else:
        sigma_hat = torch.einsum("kia,kib->ab", c, c) / (n * N)  # (d, d): mean diagonal block 1/N sum_i Sigma_hat_ii
        if sigma_estimate == "normalized":
            sigma_hat = sigma_hat * (torch.linalg.matrix_norm(sigma) / torch.linalg.matrix_norm(sigma_hat))
    return KernelEstimate(gamma_hat=gamma_hat, sigma_hat=sigma_hat, n=n)


@dataclass
class CovarianceRelativeError:
    """Result of ``covariance_relative_error`` (all float64 tensors)."""

    generated: KernelEstimate  # estimate from the generated samples
    training: KernelEstimate  # estimate from an equal number of training sequences
    numerator: Tensor  # ||Gamma_hat (x) Sigma_hat - Gamma (x) Sigma||_F^2, generated samples
    denominator: Tensor  # the same for the training sequences
    epsilon: Tensor  # numerator / denominator

    @property
    def gamma_hat(self) -> Tensor:  # (N, N), generated samples
        return self.generated.gamma_hat

    @property
    def sigma_hat(self) -> Tensor:  # (d, d), generated samples
        return self.generated.sigma_hat


def covariance_relative_error(
    generated: Tensor,
    training: Tensor,
    gamma: Tensor,
    sigma: Tensor,
    mean: Tensor | float | None = None,
    sigma_estimate: SigmaEstimate = "normalized",
) -> CovarianceRelativeError:
    """Appendix F's relative error eps of generated samples against training data.

    generated: (n, N, d); training: (n', N, d) with n' >= n (its first n sequences are used,
    the "equal amount of training data"); gamma (N, N) and sigma (d, d): the true factors.
    mean: None estimates the mean from each set (Appendix F); else a known mean.
    """
    if generated.dim() != 3 or training.dim() != 3 or generated.shape[1:] != training.shape[1:]:
        raise ValueError(
            f"generated and training must both be (n, N, d) with the same N, d; "
            f"got {tuple(generated.shape)} and {tuple(training.shape)}"
        )
    n, N, d = generated.shape
    if training.shape[0] < n:
        raise ValueError(
            f"training must hold at least as many sequences as generated (eps compares equal "
            f"sample sizes); got {training.shape[0]} training for {n} generated"
        )
    if gamma.shape != (N, N):
        raise ValueError(f"gamma must have shape (N, N) = ({N}, {N}); got {tuple(gamma.shape)}")
    gamma = gamma.to(device=generated.device, dtype=torch.float64)
    sigma = sigma.to(device=generated.device, dtype=torch.float64)
    est_gen = estimate_kernel(generated, sigma, mean, sigma_estimate)
    est_train = estimate_kernel(training[:n].to(generated.device), sigma, mean, sigma_estimate)
    numerator = kron_distance_sq(est_gen.gamma_hat, est_gen.sigma_hat, gamma, sigma)
    denominator = kron_distance_sq(est_train.gamma_hat, est_train.sigma_hat, gamma, sigma)
    return CovarianceRelativeError(
        generated=est_gen,
        training=est_train,
        numerator=numerator,
        denominator=denominator,
        epsilon=numerator / denominator,
    )
