"""Stationary Gaussian AR(1) sequences and their exact noise posterior mean (pure math, no Lightning).

P tokens in R^d, each of the d coordinates an independent AR(1) chain along the sequence:

    x_1 = s z_1,      x_{i+1} = a x_i + s sqrt(1 - a^2) z_{i+1},      z_i ~ N(0, I_d),  |a| < 1

so every token has variance s^2 and

    Cov(x_i, x_j) = C_ij I_d,      C_ij = s^2 a^{|i-j|}      (C: P x P Toeplitz),   Cov(vec X^0) = C (x) I_d.

The textbook chain x_{i+1} = a x_i + N(0, 1) is s^2 = 1 / (1 - a^2).

Forward process X^t = sqrt(abar) X^0 + sqrt(1 - abar) E, E ~ N(0, I) independent of X^0:

    Cov(X^t) = (abar C + (1 - abar) I_P) (x) I_d,       Cov(E, X^t) = sqrt(1 - abar) I,

and all of them are jointly Gaussian with mean zero, so

    E[E | X^t] = sqrt(1 - abar) (abar C + (1 - abar) I_P)^{-1} X^t          (acting on the position axis)
               = sqrt(1 - abar) U diag(1 / (abar lambda_k + 1 - abar)) U^T X^t,     C = U diag(lambda) U^T,

the Bayes-optimal noise prediction; the score is grad log p_t(X^t) = -E[E | X^t] / sqrt(1 - abar).
One eigendecomposition of C serves every abar.
"""

from __future__ import annotations

import torch
from torch import Tensor


def validate_ar1(P: int, a: float, variance: float) -> None:
    if P < 1:
        raise ValueError(f"data.P must be >= 1; got {P}")
    if not -1 < a < 1:
        raise ValueError(f"data.a must lie in (-1, 1) for a stationary AR(1) chain; got {a}")
    if not variance > 0:
        raise ValueError(f"data.variance must be > 0; got {variance}")


class AR1Process:
    """The law of X^0 above and its exact posterior noise mean.

    Args:
        P: tokens per sequence.
        a: lag-one correlation, |a| < 1.
        variance: s^2, the variance of every coordinate of every token.
    """

    def __init__(self, P: int, a: float, variance: float = 1.0):
        validate_ar1(P, a, variance)
        self.P, self.a, self.variance = P, float(a), float(variance)
        i = torch.arange(P)
        lag = (i[:, None] - i[None, :]).abs()  # (P, P)
        a64 = torch.tensor(self.a, dtype=torch.float64)
        self.covariance = self.variance * a64**lag  # C, (P, P)
        # Explicit Cholesky factor of C from the recursion: x_i = s a^{i-1} z_1 + s sqrt(1-a^2) sum_{2<=j<=i} a^{i-j} z_j
        s = self.variance**0.5
        L = torch.tril(a64 ** (i[:, None] - i[None, :]).clamp_min(0)) * s * (1 - self.a**2) ** 0.5
        L[:, 0] = s * a64**i
        self.cholesky = L  # (P, P), L L^T = C
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.covariance)  # lambda (P,), U (P, P)

    def sample(self, n: int, d: int, generator: torch.Generator | None = None) -> Tensor:
        """n sequences X^0 = L Z, Z ~ N(0, I): (n, P, d), float32."""
        z = torch.randn(n, self.P, d, generator=generator, dtype=torch.float64)
        return (self.cholesky @ z).float()

    def posterior_noise_mean(self, x_t: Tensor, abar: Tensor) -> Tensor:
        """E[E | X^t] for x_t (N, P, d) and abar (N,), computed in float64, returned in x_t's dtype. (N, P, d)"""
        if x_t.dim() != 3 or x_t.shape[1] != self.P:
            raise ValueError(f"AR(1) posterior: x_t must be (N, P={self.P}, d); got {tuple(x_t.shape)}")
        U = self.eigenvectors.to(x_t.device)
        lam = self.eigenvalues.to(x_t.device)
        ab = abar.to(device=x_t.device, dtype=torch.float64).reshape(-1, 1)  # (N, 1)
        gain = (1 - ab).sqrt() / (ab * lam + 1 - ab)  # (N, P): sqrt(1-abar) / (abar lambda_k + 1 - abar)
        y = torch.einsum("pk,npd->nkd", U, x_t.double())  # U^T X^t
        return torch.einsum("pk,nkd->npd", U, gain.unsqueeze(-1) * y).to(x_t.dtype)
