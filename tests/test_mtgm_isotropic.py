"""The best-isotropic-W study (paper 1 (MTGM) eq. (1) with W = c d Pi, least-squares v_t) against brute force."""
from __future__ import annotations

import pytest
import torch

from diffusion_theory.experiments.mtgm_isotropic import (best_isotropic_gap, isotropic_gaps, isotropic_residual,
                                                         least_squares_loss)


def test_residual_matches_a_token_by_token_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)  # (B, P, d)
    a = torch.randn(4, 2, generator=g, dtype=torch.float64)
    proj = a @ torch.linalg.pinv(a)  # a projector of rank 2
    c = 0.7
    want = torch.empty_like(x)
    for b in range(3):
        for p in range(5):
            logits = torch.stack([c * x[b, j] @ proj @ x[b, p] for j in range(5)])  # x_j^T (c d Pi) x_p / d
            w = torch.exp(logits - logits.max())
            want[b, p] = x[b, p] - sum(w[j] / w.sum() * x[b, j] for j in range(5))
    torch.testing.assert_close(isotropic_residual(x, proj, c, chunk=2), want)
    # c = 0: uniform attention, x_p minus the token mean
    torch.testing.assert_close(isotropic_residual(x, proj, 0.0), x - x.mean(1, keepdim=True))


def test_least_squares_v_is_the_best_scale_per_step():
    g = torch.Generator().manual_seed(1)
    T, n = 3, 4
    t = torch.arange(1, T + 1).repeat(n)  # (n T,)
    resid = torch.randn(n * T, 5, 2, generator=g, dtype=torch.float64)
    noise = 0.8 * resid + 0.3 * torch.randn(n * T, 5, 2, generator=g, dtype=torch.float64)

    def loss_at(v: torch.Tensor) -> float:  # v (T,): 0.5 mean over steps of mean ||v_t r - E||^2
        return sum(0.5 * (v[k] * resid[t == k + 1] - noise[t == k + 1]).pow(2).mean().item() for k in range(T)) / T

    best = least_squares_loss(resid, noise, t, T)
    v_star = torch.stack([torch.linalg.lstsq(resid[t == k].reshape(-1, 1), noise[t == k].reshape(-1, 1)).solution[0, 0]
                          for k in range(1, T + 1)])
    assert best == pytest.approx(loss_at(v_star), rel=1e-12)
    for k in range(T):
        for dv in (-1e-2, 1e-2):
            assert loss_at(v_star + dv * torch.eye(T, dtype=torch.float64)[k]) > best


def test_best_gap_is_the_smallest_over_the_scanned_scales():
    scales = (0.0, 0.25, 0.5)
    gaps = isotropic_gaps(8, 16, scales, n_eval=3)
    c, gap = best_isotropic_gap(8, 16, scales, n_eval=3)
    assert gap == min(gaps.values()) and gaps[c] == gap
    assert best_isotropic_gap(8, 16, (c,), n_eval=3) == (c, gap)
