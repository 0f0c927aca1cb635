"""Paper 1 (MTGM) formulas in metrics/: against brute force on tiny cases and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
from diffusion_theory.distributions.mtgm import MTGM, resolve_pi_tilde
from diffusion_theory.metrics.pattern_attention import query_key_means, same_pattern_mass
from diffusion_theory.metrics.risks import denoising_risk, output_scale_error, score_error, time_averaged_snr


def test_score_error_is_eq5_by_brute_force():
    g = torch.Generator().manual_seed(0)
    B, P, d = 3, 4, 2
    eps_hat, exact = (
        torch.randn(B, P, d, generator=g, dtype=torch.float64),
        torch.randn(B, P, d, generator=g, dtype=torch.float64),
    )
    abar = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    got = score_error(eps_hat, exact, abar)
    for b in range(B):
        s_theta = -eps_hat[b] / math.sqrt(1 - abar[b])  # the network's score
        s = -exact[b] / math.sqrt(1 - abar[b])  # the true score of the noisy law
        want = sum(float(s_theta[p, k] - s[p, k]) ** 2 for p in range(P) for k in range(d)) / (2 * d * P)
        assert float(got[b]) == pytest.approx(want, rel=1e-12)


def test_bayes_risk_of_a_gaussian_matches_its_closed_form():
    # X^0 ~ N(0, c I): E[E | X^t] = sqrt(1 - abar) X^t / (c abar + 1 - abar), and
    # E ||E - E[E | X^t]||^2 / n = c abar / (c abar + 1 - abar)  (the Bayes risk, paper 1 eq. (6), times 2)
    g = torch.Generator().manual_seed(1)
    c, n, B = 2.5, 16, 20000
    for a in (0.9, 0.5, 0.05):
        x0 = math.sqrt(c) * torch.randn(B, n, generator=g, dtype=torch.float64)
        noise = torch.randn(B, n, generator=g, dtype=torch.float64)
        x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * noise
        posterior = math.sqrt(1 - a) * x_t / (c * a + 1 - a)
        risk = denoising_risk(noise, posterior, loss_scale=0.5)  # (B,)
        want = 0.5 * c * a / (c * a + 1 - a)
        se = float(risk.std()) / math.sqrt(B)
        assert float(risk.mean()) == pytest.approx(want, abs=5 * se)


def test_oracle_risk_matches_eq33():
    dist = MTGM(d=8, M=4, K=2, P=16, rho=0.4, pi_tilde=resolve_pi_tilde(4, "uniform"))
    s = dist.sample(3000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    for a in (0.95, 0.6, 0.2):
        abar = torch.full((3000,), a, dtype=torch.float64)
        noise = torch.randn(s.x0.shape, generator=g, dtype=torch.float64)
        x_t = math.sqrt(a) * s.x0 + math.sqrt(1 - a) * noise
        risk = denoising_risk(noise, dist.oracle_eps(x_t, abar, s.labels), loss_scale=0.5)
        se = float(risk.std()) / math.sqrt(risk.numel())
        assert float(risk.mean()) == pytest.approx(float(dist.oracle_risk_per_step(abar[:1])), abs=5 * se)


def test_output_scale_error_is_the_mean_absolute_deviation_and_zero_at_the_oracle():
    dist = MTGM(d=8, M=4, K=2, P=4, rho=0.3, pi_tilde=resolve_pi_tilde(4, "uniform"))
    abar = LinearAlphaSchedule(T=50).alpha_bars
    oracle = dist.oracle_coefficient(abar)  # eq. (16)
    assert float(output_scale_error(oracle, oracle)) == 0.0
    learned = oracle + torch.linspace(-0.2, 0.3, 50, dtype=torch.float64)
    want = sum(abs(float(x) - float(y)) for x, y in zip(learned, oracle)) / 50
    assert float(output_scale_error(learned, oracle)) == pytest.approx(want, rel=1e-12)


def test_time_averaged_snr_by_brute_force():
    s = LinearAlphaSchedule(T=50, alpha_1=0.98, alpha_T=0.95)
    alphas = [0.98 - 0.03 * k / 49 for k in range(50)]
    abar = [math.prod(alphas[: k + 1]) for k in range(50)]
    want = sum(a / (1 - a) for a in abar) / 50
    assert time_averaged_snr(s.alpha_bar(torch.arange(1, 51))) == pytest.approx(want, rel=1e-12)
    from diffusion_theory.callbacks.theory_quantities import schedule_snr

    assert schedule_snr(LinearAlphaSchedule(time_sampling="last")) == pytest.approx(
        sum(a / (1 - a) for a in abar[30:]) / 20
    )


def random_attention(B=3, P=7, M=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, P, P, generator=g, dtype=torch.float64), torch.randint(0, M, (B, P), generator=g)


def test_same_pattern_mass_is_eq20_by_brute_force():
    logits, labels = random_attention()
    got = same_pattern_mass(logits, labels)  # (B, P)
    B, P = labels.shape
    for b in range(B):
        for p in range(P):
            weights = [math.exp(float(logits[b, p, j])) for j in range(P)]
            want = sum(w for j, w in enumerate(weights) if labels[b, j] == labels[b, p]) / sum(weights)
            assert float(got[b, p]) == pytest.approx(want, rel=1e-12)
    # equal logits: the mass is the share of the query's pattern among the tokens
    flat = same_pattern_mass(torch.zeros_like(logits), labels)
    share = (labels.unsqueeze(-1) == labels.unsqueeze(-2)).double().mean(-1)
    torch.testing.assert_close(flat, share)


def test_query_key_means_are_eqs18_19_by_brute_force():
    logits, labels = random_attention(B=4, P=6, M=2, seed=5)
    B, P = labels.shape
    for u in (0, 1):
        got = query_key_means(logits, labels, u)
        same = [
            float(logits[b, p, j])
            for b in range(B)
            for p in range(P)
            for j in range(P)
            if labels[b, p] == u and labels[b, j] == u and j != p
        ]
        diff = [
            float(logits[b, p, j])
            for b in range(B)
            for p in range(P)
            for j in range(P)
            if labels[b, p] == u and labels[b, j] != u
        ]
        for kind, values in (("same", same), ("diff", diff)):
            mean, count = got[kind]
            assert int(count) == len(values)
            assert float(mean) == pytest.approx(sum(values) / len(values), rel=1e-12)
    mean, count = query_key_means(logits, labels, 7)["same"]  # a pattern no token has
    assert int(count) == 0 and math.isnan(float(mean))
