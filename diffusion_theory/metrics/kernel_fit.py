"""Which kernel of paper 2's family does an attention score matrix look like? Fit (nu, l) instead of correlating.

Paper 2 (GP) Sec. 2 / Sec. 6.1: Gamma_ij = exp(-|i - j|^nu / l). A Pearson correlation of a score matrix with one
Gamma cannot tell that Gamma from any other decreasing function of the lag (a linear decay 1 - |i - j| / N reaches
0.896 against l = 64, nu = 2 at N = 32). Here the whole family is fitted:

    S_ij ~ a exp(-|i - j|^nu / l) + b,    a > 0                      (the scores' scale and offset are free)

by least squares in (a, b) for each (nu, l) of a grid (closed form), then a local refinement of (nu, l). A kernel
that barely decays across the N-frame window is an affine image of a straight line in the lag and cannot be told
from one, so l is bounded by the kernel decaying to at most 3/4 at the largest lag: (N - 1)^nu / l >= ln(4/3)
(``MIN_DECAY``; at N = 32 this admits every (nu, l) of the CPU-scale Fig. 4(a) grid except l = 1024). The
report reads the fitted (nu, l) against the data's across the Fig. 4(a) grid, and the relative residual
||S - fit||_F / ||S - mean(S)||_F (0 for an exact member of the family).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

NU_RANGE = (0.25, 4.0)
L_MIN = 0.25
MIN_DECAY = 0.25  # the kernel falls by at least this much (from 1) across the window


@dataclass(frozen=True)
class KernelFit:
    nu: float
    length_scale: float
    scale: float  # a
    offset: float  # b
    rel_residual: float  # ||S - a Gamma - b||_F / ||S - mean S||_F

    def fits(self, tol: float) -> bool:
        """The family describes S within relative residual ``tol``."""
        return self.rel_residual <= tol


def _lags(N: int) -> Tensor:
    h = torch.arange(N, dtype=torch.float64)
    return (h[:, None] - h[None, :]).abs()  # (N, N)


def l_max(N: int, nu: float) -> float:
    """The largest identifiable l: the kernel decays to 1 - MIN_DECAY at lag N - 1."""
    return (N - 1) ** nu / -math.log(1 - MIN_DECAY)


def _affine_sse(S: Tensor, g: Tensor) -> tuple[float, float, float]:
    """Least-squares (a, b) of S ~ a g + b over all entries, and the sum of squared residuals. S, g (N, N)."""
    y, x = S.flatten(), g.flatten()
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    a = float(((x - xm) * (y - ym)).sum() / sxx) if sxx > 0 else 0.0
    b = float(ym - a * xm)
    return a, b, float(((y - a * x - b) ** 2).sum())


def fit_kernel_family(S: Tensor, n_nu: int = 76, n_l: int = 120, refine: int = 3) -> KernelFit:
    """Fit S (N, N) by a exp(-|i - j|^nu / l) + b, a > 0, nu in NU_RANGE, L_MIN <= l <= ``l_max``(N, nu).
    If no member has a > 0 (S grows with the lag), nu = l = nan, a = 0 and the relative residual is 1.

    Grid over nu (linear) and log l, then ``refine`` rounds of a 5 x 5 grid around the best point, each 4x finer.
    """
    if S.dim() != 2 or S.shape[0] != S.shape[1] or S.shape[0] < 3:
        raise ValueError(f"fit_kernel_family: S must be a square (N, N) matrix with N >= 3; got {tuple(S.shape)}")
    S = S.to(torch.float64)
    N = S.shape[0]
    lag = _lags(N)
    total = float(((S - S.mean()) ** 2).sum())
    if total == 0:
        raise ValueError("fit_kernel_family: S is constant; no kernel can be identified")

    def evaluate(nu: float, log_l: float):
        l = math.exp(log_l)
        if not (NU_RANGE[0] <= nu <= NU_RANGE[1]) or not (L_MIN <= l <= l_max(N, nu)):
            return None
        a, b, sse = _affine_sse(S, torch.exp(-(lag**nu) / l))
        return None if a <= 0 else (sse, nu, l, a, b)

    lo_l = math.log(L_MIN)
    candidates = []
    for nu in torch.linspace(*NU_RANGE, n_nu).tolist():
        hi_l = math.log(l_max(N, nu))
        for log_l in torch.linspace(lo_l, hi_l, n_l).tolist():
            r = evaluate(nu, log_l)
            if r is not None:
                candidates.append(r)
    if not candidates:  # S rises with the lag (or has no lag structure): no member describes it
        return KernelFit(nu=math.nan, length_scale=math.nan, scale=0.0, offset=float(S.mean()), rel_residual=1.0)
    best = min(candidates)
    d_nu, d_log_l = (NU_RANGE[1] - NU_RANGE[0]) / (n_nu - 1), 10.0 / n_l
    for _ in range(refine):
        nu0, log_l0 = best[1], math.log(best[2])
        for i in range(-2, 3):
            for j in range(-2, 3):
                r = evaluate(nu0 + i * d_nu / 2, log_l0 + j * d_log_l / 2)
                if r is not None and r[0] < best[0]:
                    best = r
        d_nu, d_log_l = d_nu / 4, d_log_l / 4
    sse, nu, l, a, b = best
    return KernelFit(nu=nu, length_scale=l, scale=a, offset=b, rel_residual=math.sqrt(sse / total))


def fit_layers(scores: Tensor) -> list[KernelFit]:
    """One fit per layer of average score matrices (L, N, N) (heads already averaged)."""
    return [fit_kernel_family(s) for s in scores]
