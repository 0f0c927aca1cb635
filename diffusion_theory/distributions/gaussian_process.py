"""Sequences sampled from a Gaussian process on an integer grid, with the exact noised score.

Paper 2, Sec. 2 and Sec. 6.1. A sequence is X = [x_1, ..., x_N]^T in R^{N x d} (frame-major:
row i is the frame at time index h_i = i). Stacked as v = vec(X) = [x_1; ...; x_N] in R^{Nd},

    v ~ N(mu, Gamma (x) Sigma),   Gamma_ij = gamma(h_i, h_j) = exp(-|h_i - h_j|^nu / l),
    Sigma = A^T A,  A in R^{d x d} with i.i.d. N(0, 1) entries (Sec. 6.1).

In matrix form (Gamma (x) Sigma) vec(X) = vec(Gamma X Sigma), so everything below works on
(N, d) matrices and never forms an (Nd) x (Nd) matrix:

* sampling:  X = mu + L_Gamma G L_Sigma^T with G an (N, d) matrix of i.i.d. N(0, 1) and
  L L^T the factorisations of Gamma and Sigma;
* the score of the noised marginal X^t = alpha_t X^0 + sigma_t E, abar = alpha_t^2 (paper 2 (GP) eq. (2)):

      grad log p_t(v) = -(abar Gamma (x) Sigma + (1 - abar) I)^{-1} (v - alpha_t mu),

  computed with Gamma = U diag(lam) U^T, Sigma = V diag(s) V^T:

      score(X) = -U [ (U^T (X - alpha_t mu) V) / (abar lam_i s_a + 1 - abar) ]_{ia} V^T;

* the exact noise posterior mean E[E | X^t] = -sigma_t score (Tweedie), the optimal eps-prediction.

For smooth kernels (nu = 2, l >= 64 at N = 128) Gamma is positive definite in exact arithmetic
but its smallest eigenvalues (~1e-69) are below float64 resolution, so Cholesky fails. The
default ``factorization='eigh'`` uses the symmetric square root U diag(sqrt(max(lam, 0))), which
reproduces Gamma to machine precision; ``factorization='cholesky'`` insists on a Cholesky factor
of Gamma + jitter I and reports when there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

Factorization = Literal["eigh", "cholesky"]
Kernel = Literal["gp", "white"]

# Standard normals are drawn in chunks of this many sequences from one generator, so that the
# first n sequences of a set of any size n' >= n are the same (``training_set``).
SAMPLE_CHUNK = 1024

# An eigenvalue of Gamma below -EIG_TOL * max eigenvalue is not round-off: the matrix is indefinite.
EIG_TOL = 1e-8


def kernel_matrix(N: int, length_scale: float, nu: float) -> Tensor:
    """Gamma_ij = exp(-|i - j|^nu / l) on the grid h_i = i, i = 1..N; float64 (N, N)."""
    h = torch.arange(N, dtype=torch.float64)
    return torch.exp(-((h[:, None] - h[None, :]).abs() ** nu) / length_scale)


def _left_multiply(M: Tensor, X: Tensor) -> Tensor:
    """M @ X[b] for every b as ONE (N, N) x (N, B d) matrix product: X (B, N, d) -> (B, N, d).

    (A batched matmul of B tiny matrices is slow, and pathologically so with OpenMP threads
    competing with another process.)
    """
    B, N, d = X.shape
    out = M @ X.transpose(0, 1).reshape(N, B * d)  # (N, B d)
    return out.reshape(N, B, d).transpose(0, 1)


class GaussianProcessSequences:
    """N frames in R^d from a stationary GP with covariance Gamma (x) Sigma (paper 2, Sec. 6.1).

    Args:
        N: sequence length (number of frames / tokens); paper: 128.
        d: frame dimension; paper: 8.
        length_scale: l in gamma(h, h') = exp(-|h - h'|^nu / l); paper: {4, 16, 64, 256, 1024}.
        nu: exponent, in (0, 2]; paper: {1, 2^{1/4}, 2^{1/2}, 2^{3/4}, 2}.
        mean: the constant mean mu of every entry (paper: 0).
        seed: seeds A, hence Sigma = A^T A. Samples take their own seed / generator.
        jitter: added to Gamma's diagonal (Gamma <- Gamma + jitter I); 0 reproduces the paper.
        factorization: ``eigh`` (symmetric PSD square root, always works for nu in (0, 2]) or
            ``cholesky`` (lower-triangular factor; fails when Gamma + jitter I is numerically
            singular).
        kernel: ``gp`` (gamma above) or ``white``: Gamma_ij = 1{i = j}, frames independent
            N(mu, Sigma) (Sec. 3.1's extreme case; the control without temporal correlation).
            ``white`` ignores length_scale and nu.

    Attributes (float64, CPU):
        gamma (N, N), sigma (d, d), gamma_eigenvalues (N,), gamma_eigenvectors (N, N),
        sigma_eigenvalues (d,), sigma_eigenvectors (d, d), gamma_factor (N, N), sigma_factor (d, d).
    """

    def __init__(
        self,
        N: int = 128,
        d: int = 8,
        length_scale: float = 64.0,
        nu: float = 2.0,
        mean: float = 0.0,
        seed: int = 0,
        jitter: float = 0.0,
        factorization: Factorization = "eigh",
        kernel: Kernel = "gp",
    ):
        for name, value in (("N", N), ("d", d)):
            if int(value) != value or value < 1:
                raise ValueError(f"gp.{name} must be an integer >= 1; got {value}")
        if not length_scale > 0:
            raise ValueError(f"gp.length_scale must be > 0; got {length_scale}")
        if not 0 < nu <= 2:
            raise ValueError(
                f"gp.nu must lie in (0, 2]: exp(-|h|^nu / l) is a positive-definite kernel only for "
                f"0 < nu <= 2 (beyond 2 Gamma is not positive semi-definite); got {nu}"
            )
        if not jitter >= 0:
            raise ValueError(f"gp.jitter must be >= 0; got {jitter}")
        if factorization not in ("eigh", "cholesky"):
            raise ValueError(f"gp.factorization must be 'eigh' or 'cholesky'; got {factorization!r}")
        if kernel not in ("gp", "white"):
            raise ValueError(f"gp.kernel must be 'gp' or 'white'; got {kernel!r}")
        self.N, self.d = int(N), int(d)
        self.length_scale, self.nu, self.mean = float(length_scale), float(nu), float(mean)
        self.seed, self.jitter, self.factorization = int(seed), float(jitter), factorization
        self.kernel = kernel

        if kernel == "white":
            gamma = torch.eye(self.N, dtype=torch.float64)
        else:
            gamma = kernel_matrix(self.N, self.length_scale, self.nu)
        gamma = gamma + self.jitter * torch.eye(self.N, dtype=torch.float64)
        A = torch.randn(self.d, self.d, generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64)
        sigma = A.T @ A
        self.gamma, self.sigma = gamma, sigma  # (N, N), (d, d)

        lam, U = torch.linalg.eigh(gamma)
        s, V = torch.linalg.eigh(sigma)
        self._check_psd("gamma", lam)
        self._check_psd("sigma", s)
        self.gamma_eigenvalues, self.gamma_eigenvectors = lam.clamp_min(0), U
        self.sigma_eigenvalues, self.sigma_eigenvectors = s.clamp_min(0), V
        if factorization == "cholesky":
            self.gamma_factor = self._cholesky("gamma", gamma, lam)
            self.sigma_factor = self._cholesky("sigma", sigma, s)
        else:
            self.gamma_factor = U * self.gamma_eigenvalues.sqrt()  # (N, N), L L^T = Gamma
            self.sigma_factor = V * self.sigma_eigenvalues.sqrt()  # (d, d)
        self._device_cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    # ------------------------------------------------------------------ validation helpers
    def _describe(self, name: str) -> str:
        if name == "sigma":
            return f"d={self.d}, seed={self.seed}"
        return f"N={self.N}, nu={self.nu:g}, length_scale={self.length_scale:g}, jitter={self.jitter:g}"

    @staticmethod
    def _remedy(name: str, amount: str) -> str:
        if name == "sigma":
            return "Sigma = A^T A is drawn from gp.seed: choose another gp.seed"
        return f"Set gp.jitter > 0 ({amount}) to add jitter * I to Gamma's diagonal"

    def _check_psd(self, name: str, eigenvalues: Tensor) -> None:
        lo, hi = float(eigenvalues.min()), float(eigenvalues.max())
        if lo < -EIG_TOL * max(hi, 1e-300):
            raise ValueError(
                f"gp.{name} is not positive semi-definite ({self._describe(name)}): min eigenvalue "
                f"{lo:.3g} (max {hi:.3g}). {self._remedy(name, f'at least {-lo:.3g}')}"
            )

    def _cholesky(self, name: str, matrix: Tensor, eigenvalues: Tensor) -> Tensor:
        L, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            raise ValueError(
                f"gp.{name} is not numerically positive definite ({self._describe(name)}): Cholesky "
                f"failed, min eigenvalue {float(eigenvalues.min()):.3g} "
                f"(max {float(eigenvalues.max()):.3g}). {self._remedy(name, 'e.g. 1e-6')}, "
                f"or use gp.factorization='eigh'"
            )
        return L

    def _on(self, device: torch.device, dtype: torch.dtype = torch.float64) -> tuple[Tensor, ...]:
        """(U, lam, V, s) on a device, cached."""
        key = (torch.device(device), dtype)
        if key not in self._device_cache:
            self._device_cache[key] = tuple(
                m.to(device=device, dtype=dtype)
                for m in (
                    self.gamma_eigenvectors,
                    self.gamma_eigenvalues,
                    self.sigma_eigenvectors,
                    self.sigma_eigenvalues,
                )
            )
        return self._device_cache[key]

    # ------------------------------------------------------------------ covariance
    @property
    def marginal_variance(self) -> Tensor:
        """Per-entry variance of X: diag(Gamma)_i * diag(Sigma)_a, shape (N, d)."""
        return torch.diagonal(self.gamma)[:, None] * torch.diagonal(self.sigma)[None, :]

    # ------------------------------------------------------------------ sampling
    def _normal_chunks(self, n: int, generator: torch.Generator | int | None) -> Iterator[Tensor]:
        """N(0, 1) float64 CPU chunks (N, <= SAMPLE_CHUNK, d) covering n sequences, time-major.

        Every chunk is drawn at full size SAMPLE_CHUNK and then cut, so the first n sequences never
        depend on how many are requested after them (prefix-stable draws). The time-major layout
        makes L_Gamma G one (N, N) x (N, chunk d) product with no copy of G.
        """
        if int(n) != n or n < 0:
            raise ValueError(f"n must be an integer >= 0; got {n}")
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        drawn = 0
        while drawn < n:
            chunk = torch.randn(self.N, SAMPLE_CHUNK, self.d, generator=generator, dtype=torch.float64)
            chunk = chunk[:, : n - drawn]
            drawn += chunk.shape[1]
            yield chunk

    def sample(
        self,
        n: int,
        generator: torch.Generator | int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """n sequences, (n, N, d): X = mu + L_Gamma G L_Sigma^T, G ~ N(0, I) (Kronecker sampling).

        ``generator``: a CPU torch.Generator, an int seed, or None for torch's global generator.
        The same seed gives the same sequences, and sample(n, s) is a prefix of sample(n', s)
        for n <= n' (chunked draws). Arithmetic in float64, two GEMMs per chunk, written
        straight into the output in ``dtype``.
        """
        X = torch.empty(n, self.N, self.d, dtype=dtype)
        start = 0
        for G in self._normal_chunks(n, generator):  # (N, rows, d)
            rows = G.shape[1]
            spatial = (G.reshape(self.N * rows, self.d) @ self.sigma_factor.T).reshape(self.N, rows * self.d)
            frames = (self.gamma_factor @ spatial).reshape(self.N, rows, self.d)  # L_Gamma G L_Sigma^T, time-major
            X[start : start + rows] = frames.transpose(0, 1)
            start += rows
        if self.mean != 0:
            X += self.mean
        return X.to(device)

    def training_set(self, n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """The first n sequences of the training stream with this seed, (n, N, d).

        training_set(n, s) == training_set(n', s)[:n] for every n <= n' (nested training sets, so
        the n-sweep of Fig. 4(a) trains on growing supersets). Use a different seed for
        evaluation draws.
        """
        return self.sample(n, generator=int(seed), dtype=dtype)

    # ------------------------------------------------------------------ exact score (paper 2 (GP) eq. (2))
    def _score64(self, x: Tensor, abar: Tensor | float) -> Tensor:
        """float64 score for x (B, N, d) and abar broadcastable to (B,)."""
        U, lam, V, s = self._on(x.device)
        abar = torch.as_tensor(abar, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)  # (B or 1, 1, 1)
        centered = x.to(torch.float64) - abar.sqrt() * self.mean  # (B, N, d): X^t - alpha_t mu
        rotated = _left_multiply(U.T, centered @ V)  # (B, N, d): U^T X V, coordinates in the eigenbasis
        eig = abar * (lam[:, None] * s[None, :]) + (1 - abar)  # (B, N, d): eigenvalues of the noised covariance
        return -_left_multiply(U, (rotated / eig) @ V.T)  # (B, N, d)

    def score(self, x_t: Tensor, abar: Tensor | float) -> Tensor:
        """grad log p_t(x_t) for X^t = sqrt(abar) X^0 + sqrt(1 - abar) E (paper 2 (GP) eq. (2)).

        x_t: (B, N, d) or (N, d); abar: a float, a 0-d tensor or a (B,) tensor in (0, 1]
        (abar = e^{-t} for paper 2's process). Returns x_t's shape and dtype; computed in float64
        through the Kronecker eigen-decomposition (never an (Nd) x (Nd) matrix).
        """
        x = x_t.reshape(-1, self.N, self.d)  # (B, N, d)
        return self._score64(x, abar).to(x_t.dtype).reshape(x_t.shape)

    def eps_posterior_mean(self, x_t: Tensor, abar: Tensor | float) -> Tensor:
        """E[E | X^t = x_t] = -sqrt(1 - abar) * score(x_t): the Bayes-optimal noise prediction.

        Same shapes as ``score``.
        """
        x = x_t.reshape(-1, self.N, self.d)  # (B, N, d)
        abar = torch.as_tensor(abar, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
        eps = -(1 - abar).sqrt() * self._score64(x, abar)  # (B, N, d)
        return eps.to(x_t.dtype).reshape(x_t.shape)

    def exact_eps_fn(self, schedule) -> Callable[[Tensor, Tensor], Tensor]:
        """eps_fn(x_t, t) = E[E | X^t] for a schedule (anything with ``alpha_bar(t)``), for the samplers."""

        def eps_fn(x_t: Tensor, t: Tensor) -> Tensor:
            return self.eps_posterior_mean(x_t, schedule.alpha_bar(t))

        return eps_fn

    def __repr__(self) -> str:
        return (
            f"GaussianProcessSequences(N={self.N}, d={self.d}, length_scale={self.length_scale:g}, nu={self.nu:g}, "
            f"mean={self.mean:g}, seed={self.seed}, jitter={self.jitter:g}, factorization={self.factorization!r}, "
            f"kernel={self.kernel!r})"
        )
