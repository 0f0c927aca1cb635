"""Multi-token Gaussian mixtures (MTGM), paper 1 (MTGM) Definition 1, with their exact denoisers.

Layout: a data point is X in R^{P x d} (token-major, the transpose of the paper's d x P).

Definition 1. With M orthogonal patterns mu_1..mu_M in R^d, mu_i^T mu_j = sqrt(d) delta_ij:
    1. Z ~ Unif{z in {0,1}^M : ||z||_0 = K}
    2. pi_i(Z) = Z_i pi~_i / (Z^T pi~)
    3. Y_p | Z ~ Categorical(pi(Z)),   x_p | Y_p ~ N(mu_{Y_p}, rho^2 I),  p = 1..P.

Exact quantities used by the diagnostics:
    oracle MMSE noise estimate   E[E | X^t, M_Y] = c_t (X^t - sqrt(abar_t) M_Y)       (paper 1 (MTGM) eq. (13))
    with c_t = sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t)                             (paper 1 (MTGM) eq. (16))
    oracle risk per dimension    rho^2 abar_t / (rho^2 abar_t + 1 - abar_t) / 2          (paper 1 (MTGM) eqs. (14), (33))
    Bayes noise estimate         E[E | X^t] = c_t (X^t - sqrt(abar_t) E[M_Y | X^t])       (paper 1 (MTGM) eq. (6))
where E[M_Y | X^t] comes from the exact posterior over the K-subset Z and the token labels Y,
enumerating all C(M, K) subsets (see ``MTGM._label_posterior``): a few batched matrix products
and a log-sum-exp over the subsets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------
# Pattern proportions pi~
# ----------------------------------------------------------------------------------------


def resolve_pi_tilde(
    M: int, pi_tilde: str | Sequence[float] = "uniform", pi_min: float | None = None, field: str = "pi_tilde"
) -> Tensor:
    """pi~ as a (M,) float64 tensor from ``uniform``, an explicit list, or its minimal entry.

    With ``pi_min`` one pattern (index 0) gets pi_min and the other M - 1 share the remainder
    equally, so that min_u pi~_u = pi_min (Fig. 2C sweeps it). ``pi_min`` overrides ``pi_tilde``.
    """
    if pi_min is not None:
        if not 0 < pi_min <= 1.0 / M:
            raise ValueError(
                f"{field.replace('pi_tilde', 'pi_min')}: must lie in (0, 1/M] = (0, {1.0 / M:.4g}] "
                f"so that it is the minimal entry; got {pi_min}"
            )
        rest = (1.0 - pi_min) / (M - 1)
        return torch.tensor([pi_min] + [rest] * (M - 1), dtype=torch.float64)
    if isinstance(pi_tilde, str):
        if pi_tilde != "uniform":
            raise ValueError(f"{field}: expected 'uniform' or a list of {M} probabilities; got {pi_tilde!r}")
        return torch.full((M,), 1.0 / M, dtype=torch.float64)
    p = torch.as_tensor(list(pi_tilde), dtype=torch.float64)
    check_simplex(p, M, field)
    return p


def check_simplex(p: Tensor, M: int, field: str) -> None:
    """pi~ must be a point of the probability simplex with every entry > 0 (Definition 1)."""
    if p.shape != (M,):
        raise ValueError(f"{field}: must have M = {M} entries; got {tuple(p.shape)}")
    if bool((p <= 0).any()):
        raise ValueError(f"{field}: every entry must be > 0 (min_m pi~_m > 0 in Definition 1); got {p.tolist()}")
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{field}: entries must sum to 1 (a point of the simplex); they sum to {float(p.sum()):.6g}")


def k_subsets(M: int, K: int) -> Tensor:
    """All K-subsets of [M] as a (C(M, K), M) 0/1 float64 matrix, in lexicographic order."""
    rows = []
    for combo in itertools.combinations(range(M), K):
        z = torch.zeros(M, dtype=torch.float64)
        z[list(combo)] = 1.0
        rows.append(z)
    return torch.stack(rows)


def subset_proportions(subsets: Tensor, pi_tilde: Tensor) -> Tensor:
    """pi(Z) for every subset, Definition 1 step 2: (n_Z, M), rows on the simplex."""
    weights = subsets * pi_tilde  # (n_Z, M)
    return weights / weights.sum(-1, keepdim=True)


def orthogonal_patterns(M: int, d: int, seed: int = 0) -> Tensor:
    """M patterns with mu_i^T mu_j = sqrt(d) delta_ij: d^{1/4} times orthonormal rows. (M, d) float64."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, M, generator=g, dtype=torch.float64))  # (d, M) orthonormal columns
    return q.T.contiguous() * d**0.25


# ----------------------------------------------------------------------------------------
# The distribution
# ----------------------------------------------------------------------------------------


@dataclass
class MTGMSample:
    x0: Tensor  # (B, P, d) clean tokens
    labels: Tensor  # (B, P) token pattern Y_p in [M]
    subsets: Tensor  # (B, M) 0/1 subset Z


class MTGM:
    """The MTGM distribution D(pi~, K, {mu_i}, rho^2) of Definition 1.

    Args:
        d: token dimension (d >= M so that M orthogonal patterns exist).
        M: number of patterns.
        K: number of distinct patterns per data point, 0 < K < M.
        P: tokens per data point.
        rho: standard deviation of each Gaussian component (> 0).
        pi_tilde: (M,) pattern proportions on the simplex, all entries > 0.
        pattern_seed: seed of the random orthogonal patterns.
    """

    def __init__(self, d: int, M: int, K: int, P: int, rho: float, pi_tilde: Tensor, pattern_seed: int = 0):
        validate_mtgm_shape(d=d, M=M, K=K, P=P, rho=rho)
        check_simplex(torch.as_tensor(pi_tilde, dtype=torch.float64), M, "pi_tilde")
        self.d, self.M, self.K, self.P, self.rho = d, M, K, P, float(rho)
        self.pi_tilde = torch.as_tensor(pi_tilde, dtype=torch.float64)
        self.patterns = orthogonal_patterns(M, d, pattern_seed)  # (M, d)
        self.subsets = k_subsets(M, K)  # (n_Z, M)
        self.subset_pi = subset_proportions(self.subsets, self.pi_tilde)  # (n_Z, M)

    def with_pi_tilde(self, pi_tilde: Tensor) -> MTGM:
        """Same patterns, other proportions: the shifted distribution D(pi~', K, {mu_i}, rho) of Sec. 5.1."""
        other = object.__new__(MTGM)
        other.__dict__.update(self.__dict__)
        other.pi_tilde = torch.as_tensor(pi_tilde, dtype=torch.float64)
        check_simplex(other.pi_tilde, self.M, "pi_tilde")
        other.subset_pi = subset_proportions(self.subsets, other.pi_tilde)
        return other

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> MTGMSample:
        """n i.i.d. data points by Definition 1."""
        n_z = self.subsets.shape[0]
        z_idx = torch.randint(0, n_z, (n,), generator=generator)  # step 1: uniform K-subset
        probs = self.subset_pi[z_idx]  # (n, M)                       step 2
        labels = torch.multinomial(probs, self.P, replacement=True, generator=generator)  # (n, P) step 3
        means = self.patterns[labels]  # (n, P, d)
        noise = torch.randn(n, self.P, self.d, generator=generator, dtype=torch.float64)
        x0 = means + self.rho * noise
        return MTGMSample(x0=x0.to(dtype), labels=labels, subsets=self.subsets[z_idx])

    # -- exact denoisers --------------------------------------------------------------------
    def oracle_coefficient(self, abar: Tensor) -> Tensor:
        """c_t = sqrt(1 - abar_t) / (1 - abar_t + rho^2 abar_t), paper 1 (MTGM) eq. (16)."""
        abar = abar.double()
        return (1 - abar).sqrt() / (1 - abar + self.rho**2 * abar)

    def oracle_eps(self, x_t: Tensor, abar: Tensor, labels: Tensor) -> Tensor:
        """E[E | X^t, M_Y] = c_t (X^t - sqrt(abar_t) M_Y), paper 1 (MTGM) eq. (13).
        x_t: (B, P, d), abar: (B,), labels: (B, P)."""
        c = self.oracle_coefficient(abar).view(-1, 1, 1)
        means = self.patterns.to(x_t.device)[labels]  # (B, P, d)
        out = c * (x_t.double() - abar.double().sqrt().view(-1, 1, 1) * means)
        return out.to(x_t.dtype)

    def oracle_risk_per_step(self, abar: Tensor) -> Tensor:
        """Oracle risk at each t with the loss's normalisation: rho^2 abar / (rho^2 abar + 1 - abar) / 2,
        paper 1 (MTGM) eq. (33)."""
        abar = abar.double()
        return 0.5 * self.rho**2 * abar / (self.rho**2 * abar + 1 - abar)

    def _label_posterior(self, x: Tensor, abar: Tensor, dtype: torch.dtype) -> Tensor:
        """p(Y_p = u | X^t) for one chunk, token-minor: (B, M, P). x: (B, P, d), abar: (B,).

        Given Y, tokens are independent with x^t_p ~ N(sqrt(abar) mu_{Y_p}, s^2 I), s^2 = rho^2 abar + 1 - abar
        (paper 1 (MTGM) Definition 1 and eq. (2)). All ||mu_u|| are equal, so the likelihood ratio of the components is
        L_up = exp(sqrt(abar) mu_u.x_p / s^2), normalised here to max_u L_up = 1 per token. Then
            D_Zp         = sum_u pi_u(Z) L_up                   (n_Z, M) @ (B, M, P): p(x_p | Z) up to a factor of p
            log p(Z|X^t) = sum_p log D_Zp + const               (Z uniform a priori; a log-sum-exp over Z)
            p(Y_p=u|X^t) = L_up sum_Z pi_u(Z) p(Z|X^t) / D_Zp    (M, n_Z) @ (B, n_Z, P)
        Tokens are the last (contiguous) axis, so the sum over tokens is a contiguous reduction and the two
        matrix products batch over data points without transposes.
        """
        x = x.to(dtype)  # (B, P, d)
        abar = abar.to(device=x.device, dtype=torch.float64).view(-1, 1, 1)
        scale = (abar.sqrt() / (self.rho**2 * abar + 1 - abar)).to(dtype)  # (B, 1, 1)  sqrt(abar) / s^2
        mu = self.patterns.to(device=x.device, dtype=dtype)  # (M, d)
        pis = self.subset_pi.to(device=x.device, dtype=dtype)  # (n_Z, M)
        loglik = (mu @ x.mT).mul_(scale)  # (B, M, P)
        lik = loglik.sub_(loglik.amax(1, keepdim=True)).exp_()  # (B, M, P), max entry 1 per token
        mix = (pis @ lik).clamp_min_(torch.finfo(dtype).tiny)  # (B, n_Z, P)  D_Zp
        log_post_z = mix.log().sum(-1, dtype=torch.float64)  # (B, n_Z), accumulated in float64
        post_z = torch.softmax(log_post_z, dim=-1).to(dtype)  # (B, n_Z)  p(Z | X^t)
        ratio = mix.reciprocal_().mul_(post_z.unsqueeze(-1))  # (B, n_Z, P)  p(Z | X^t) / D_Zp
        return lik.mul_(pis.T @ ratio)  # (B, M, P)

    def posterior_token_labels(
        self, x_t: Tensor, abar: Tensor, dtype: torch.dtype = torch.float64, chunk: int = 128
    ) -> Tensor:
        """Exact posterior p(Y_p = u | X^t), (B, P, M), enumerating every K-subset Z (see ``_label_posterior``).

        No sampling is involved. ``dtype`` float64 (default) is exact to rounding; float32 (the fast
        evaluation path) keeps the sum over tokens of log D_Zp in float64 and agrees to ~1e-5.
        Work is done in chunks of ``chunk`` data points so that the (chunk, C(M, K), P) intermediates stay in the
        last-level cache (128 x 70 x 256 float32: 9 MB) with few enough operations for threads under contention.
        """
        out = torch.empty(*x_t.shape[:-1], self.M, dtype=dtype, device=x_t.device)  # (B, P, M)
        for i in range(0, x_t.shape[0], chunk):
            out[i : i + chunk] = self._label_posterior(x_t[i : i + chunk], abar[i : i + chunk], dtype).mT
        return out

    def posterior_mean_patterns(self, x_t: Tensor, abar: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
        """E[M_Y | X^t] = sum_u p(Y_p = u | X^t) mu_u, (B, P, d) in ``dtype``."""
        return self.posterior_token_labels(x_t, abar, dtype) @ self.patterns.to(device=x_t.device, dtype=dtype)

    def bayes_eps(self, x_t: Tensor, abar: Tensor, dtype: torch.dtype = torch.float64, chunk: int = 128) -> Tensor:
        """The MMSE noise estimate E[E | X^t] = c_t (X^t - sqrt(abar_t) E[M_Y | X^t]) (paper 1 (MTGM) eqs. (6), (16)).
        x_t: (B, P, d).

        ``dtype``: arithmetic of the posterior (see ``posterior_token_labels``); the result has x_t's dtype.
        Computed chunk by chunk: c_t X^t plus the (B P, M) @ (M, d) product of the posterior with -c_t sqrt(abar_t) mu.
        """
        abar = abar.to(device=x_t.device, dtype=torch.float64)
        c = self.oracle_coefficient(abar)  # (B,)
        c_mean = (-c * abar.sqrt()).to(dtype).view(-1, 1, 1)  # (B, 1, 1)
        c = c.to(dtype).view(-1, 1, 1)
        mu = self.patterns.to(device=x_t.device, dtype=dtype)  # (M, d)
        out = torch.empty(x_t.shape, dtype=dtype, device=x_t.device)  # (B, P, d)
        for i in range(0, x_t.shape[0], chunk):
            post = self._label_posterior(x_t[i : i + chunk], abar[i : i + chunk], dtype).mul_(c_mean[i : i + chunk])
            o = torch.mul(x_t[i : i + chunk].to(dtype), c[i : i + chunk], out=out[i : i + chunk])  # (b, P, d)
            o.baddbmm_(post.mT, mu.expand(post.shape[0], -1, -1))  # + (b, P, M) @ (M, d)
        return out.to(x_t.dtype)

    # -- theory quantities ------------------------------------------------------------------
    def pattern_ratios(self) -> Tensor:
        """nu_u(K) = E[sum_p 1[Y_p = u] / P] = E_Z[pi_u(Z)] exactly, paper 1 (MTGM) eq. (7). (M,)"""
        return self.subset_pi.mean(0)

    def nu_min(self) -> float:
        """nu^pi~_min(K) = min_u nu_u(K), paper 1 (MTGM) eq. (7)."""
        return float(self.pattern_ratios().min())

    def imbalance(self) -> float:
        """delta(pi~) = min_u pi~_u / max_u pi~_u, paper 1 (MTGM) eq. (8)."""
        return float(self.pi_tilde.min() / self.pi_tilde.max())


def validate_mtgm_shape(d: int, M: int, K: int, P: int, rho: float) -> None:
    """Definition 1's constraints, each error naming the field and the rule."""
    if M < 2:
        raise ValueError(f"M: need at least 2 patterns (0 < K < M); got M = {M}")
    if not 0 < K < M:
        raise ValueError(f"K: must satisfy 0 < K < M = {M} (Definition 1); got K = {K}")
    if d < M:
        raise ValueError(f"d: must be >= M = {M} so that M orthogonal patterns exist in R^d; got d = {d}")
    if P < 1:
        raise ValueError(f"P: must be >= 1 token per data point; got P = {P}")
    if not (rho > 0 and math.isfinite(rho)):
        raise ValueError(f"rho: must be > 0 (rho^2 is the component variance); got rho = {rho}")
