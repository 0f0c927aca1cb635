"""MTGM (paper 1): Definition-1 sampling, eq. (1), oracle risk, exact Bayes posterior."""

import itertools
import math

import pytest
import torch

from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
from diffusion_theory.distributions.mtgm import MTGM, resolve_pi_tilde
from diffusion_theory.networks.theory_transformer import OneLayerTransformer


def make(d=8, M=4, K=2, P=16, rho=0.3, pi=None):
    pi = resolve_pi_tilde(M, "uniform") if pi is None else torch.tensor(pi, dtype=torch.float64)
    return MTGM(d=d, M=M, K=K, P=P, rho=rho, pi_tilde=pi)


def test_schedule_matches_closed_form():
    s = LinearAlphaSchedule(T=50, alpha_1=0.98, alpha_T=0.95)
    t = torch.arange(1, 51)
    alphas = 0.98 - (0.98 - 0.95) * (t - 1).double() / 49
    torch.testing.assert_close(s.alphas, alphas)
    expected = torch.tensor([math.prod(alphas[:k].tolist()) for k in range(1, 51)], dtype=torch.float64)
    torch.testing.assert_close(s.alpha_bar(t), expected)
    assert s.alpha_bar(torch.tensor([1]))[0] == pytest.approx(0.98)


def test_time_sampling_strategies_cover_their_ranges():
    g = torch.Generator().manual_seed(0)
    for mode, lo, hi in (("uniform", 1, 50), ("first", 1, 20), ("last", 31, 50)):
        t = LinearAlphaSchedule(time_sampling=mode).sample_times(20000, generator=g)
        assert int(t.min()) == lo and int(t.max()) == hi
        counts = torch.bincount(t - lo, minlength=hi - lo + 1).double()
        assert counts.std() / counts.mean() < 0.15  # uniform on its range


def test_evaluation_times_are_the_training_range():
    assert LinearAlphaSchedule(time_sampling="uniform").eval_times().tolist() == list(range(1, 51))
    assert LinearAlphaSchedule(time_sampling="first").eval_times().tolist() == list(range(1, 21))
    assert LinearAlphaSchedule(time_sampling="last").eval_times().tolist() == list(range(31, 51))


def test_patterns_are_orthogonal_with_norm_sqrt_d():
    dist = make(d=64, M=8, K=4)
    gram = dist.patterns @ dist.patterns.T
    torch.testing.assert_close(gram, 8.0 * torch.eye(8, dtype=torch.float64))


def test_definition1_sampling_statistics():
    pi = [0.1, 0.2, 0.3, 0.4]
    dist = make(d=8, M=4, K=2, P=64, rho=0.5, pi=pi)
    s = dist.sample(20000, generator=torch.Generator().manual_seed(1))
    # Z uniform over the 6 two-subsets
    z_codes = (s.subsets * torch.tensor([1, 2, 4, 8.0], dtype=torch.float64)).sum(1)
    assert s.subsets.sum(1).eq(2).all()
    freq = torch.unique(z_codes, return_counts=True)[1].double() / 20000
    assert freq.numel() == 6 and (freq - 1 / 6).abs().max() < 0.015
    # labels lie in Z and follow pi(Z): token fractions match nu_u(K) = E_Z[pi_u(Z)] (eq. 7)
    assert torch.gather(s.subsets, 1, s.labels).eq(1).all()
    frac = torch.bincount(s.labels.flatten(), minlength=4).double() / s.labels.numel()
    torch.testing.assert_close(frac, dist.pattern_ratios(), atol=1e-2, rtol=0)  # ~4 sigma of the Z draw
    # conditionally on Z, labels follow pi(Z) (Definition 1 step 2-3)
    for z_row, pi_z in zip(dist.subsets, dist.subset_pi):
        rows = (s.subsets == z_row).all(1)
        cond = torch.bincount(s.labels[rows].flatten(), minlength=4).double() / s.labels[rows].numel()
        torch.testing.assert_close(cond, pi_z, atol=6e-3, rtol=0)
    # tokens: mean mu_{Y}, covariance rho^2 I
    resid = s.x0.double() - dist.patterns[s.labels]
    assert resid.mean().abs() < 2e-3
    assert resid.var().item() == pytest.approx(0.25, rel=0.01)


def test_pattern_ratio_closed_form_uniform():
    # with uniform pi~, nu_u(K) = 1/M for every u
    dist = make(d=8, M=5, K=3)
    torch.testing.assert_close(dist.pattern_ratios(), torch.full((5,), 0.2, dtype=torch.float64))
    # pi_min: one pattern gets pi_min, delta = pi_min / rest
    pi = resolve_pi_tilde(5, pi_min=0.04)
    assert float(pi.min()) == pytest.approx(0.04) and float(pi.sum()) == pytest.approx(1.0)
    d2 = MTGM(d=8, M=5, K=3, P=4, rho=0.3, pi_tilde=pi)
    assert d2.imbalance() == pytest.approx(0.04 / 0.24)
    # brute-force nu_min over subsets
    nus = [sum(pi[u] / pi[list(z)].sum() for z in itertools.combinations(range(5), 3) if u in z) / 10 for u in range(5)]
    assert d2.nu_min() == pytest.approx(float(min(nus)))


def test_eq1_against_per_token_loop():
    torch.manual_seed(0)
    d, P, T = 6, 5, 7
    net = OneLayerTransformer(d=d, T=T)
    with torch.no_grad():
        net.W.copy_(torch.randn(d, d))
    x = torch.randn(3, P, d)
    t = torch.tensor([1, 4, 7])
    out = net(x, t)
    for b in range(3):
        X = x[b].T  # paper layout d x P
        for p in range(P):
            a = torch.softmax(X.T @ net.W @ X[:, p] / d, dim=0)  # (P,)
            ref = net.v[t[b] - 1] * (X[:, p] - X @ a)
            torch.testing.assert_close(out[b, p], ref, atol=1e-5, rtol=1e-5)


def test_oracle_risk_closed_form_against_monte_carlo():
    dist = make(d=8, M=4, K=2, P=32, rho=0.3)
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(2)
    for t in (1, 25, 50):
        sample = dist.sample(4000, generator=g, dtype=torch.float64)
        abar = s.alpha_bar(torch.full((4000,), t))
        eps = torch.randn(sample.x0.shape, generator=g, dtype=torch.float64)
        xt = s.add_noise(sample.x0, torch.full((4000,), t), eps)
        err = 0.5 * (eps - dist.oracle_eps(xt, abar, sample.labels)).pow(2).mean()
        assert float(err) == pytest.approx(float(dist.oracle_risk_per_step(abar[:1])), rel=0.01)


def gaussian_logpdf(x, mean, var):
    return (-(x - mean).pow(2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)).sum(-1)


def brute_force_bayes_eps(dist, xt, abar):
    """E[E | X^t] by enumerating every (Z, Y) with the full joint density."""
    a = float(abar)
    var = dist.rho**2 * a + 1 - a
    c = math.sqrt(1 - a) / var
    subsets = [tuple(z) for z in itertools.combinations(range(dist.M), dist.K)]
    P = xt.shape[0]
    logs, estimates = [], []
    for z in subsets:
        pz = dist.pi_tilde[list(z)] / dist.pi_tilde[list(z)].sum()
        for ys in itertools.product(range(dist.K), repeat=P):
            labels = [z[k] for k in ys]
            lp = -math.log(len(subsets)) + sum(math.log(pz[k]) for k in ys)
            means = math.sqrt(a) * dist.patterns[labels]
            lp += float(gaussian_logpdf(xt, means, var).sum())
            logs.append(lp)
            estimates.append(c * (xt - means))
    w = torch.softmax(torch.tensor(logs, dtype=torch.float64), 0)
    return (w.view(-1, 1, 1) * torch.stack(estimates)).sum(0)


@pytest.mark.parametrize("t", [1, 20, 50])
def test_exact_bayes_posterior_against_brute_force(t):
    dist = make(d=4, M=4, K=2, P=3, rho=0.6, pi=[0.1, 0.2, 0.3, 0.4])
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(t)
    sample = dist.sample(3, generator=g, dtype=torch.float64)
    tt = torch.full((3,), t)
    xt = s.add_noise(sample.x0, tt, torch.randn(sample.x0.shape, generator=g, dtype=torch.float64))
    fast = dist.bayes_eps(xt, s.alpha_bar(tt))
    for b in range(3):
        torch.testing.assert_close(
            fast[b], brute_force_bayes_eps(dist, xt[b], s.alpha_bar(tt)[b]), atol=1e-9, rtol=1e-7
        )


def test_bayes_between_oracle_and_trivial():
    # R_oracle <= R_Bayes (more information cannot hurt), and Bayes beats the posterior-free c_t X^t
    dist = make(d=16, M=4, K=2, P=8, rho=0.3)
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(3)
    sample = dist.sample(2000, generator=g, dtype=torch.float64)
    t = torch.full((2000,), 10)
    eps = torch.randn(sample.x0.shape, generator=g, dtype=torch.float64)
    xt = s.add_noise(sample.x0, t, eps)
    abar = s.alpha_bar(t)
    r_oracle = (eps - dist.oracle_eps(xt, abar, sample.labels)).pow(2).mean()
    r_bayes = (eps - dist.bayes_eps(xt, abar)).pow(2).mean()
    r_prior = (eps - dist.oracle_coefficient(abar).view(-1, 1, 1) * xt).pow(2).mean()
    assert r_oracle < r_bayes < r_prior


def test_float32_posterior_path_agrees_with_float64_at_paper_scale():
    dist = make(d=64, M=8, K=4, P=256, rho=0.3)
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(5)
    sample = dist.sample(6, generator=g)
    t = torch.tensor([1, 2, 10, 25, 40, 50])
    xt = s.add_noise(sample.x0, t, torch.randn(sample.x0.shape, generator=g))
    exact = dist.bayes_eps(xt, s.alpha_bar(t), torch.float64)
    fast = dist.bayes_eps(xt, s.alpha_bar(t), torch.float32)
    torch.testing.assert_close(fast, exact, atol=2e-5, rtol=1e-4)
    # chunking does not change the result
    chunked = dist.posterior_token_labels(xt, s.alpha_bar(t), torch.float64, chunk=4)
    torch.testing.assert_close(chunked, dist.posterior_token_labels(xt, s.alpha_bar(t)))


def brute_force_label_posterior(dist, xt, abar):
    """p(Y_p = u | X^t), (P, M), by enumerating every (Z, Y) with the full joint density (Definition 1, eq. 2)."""
    a = float(abar)
    var = dist.rho**2 * a + 1 - a
    subsets = [tuple(z) for z in itertools.combinations(range(dist.M), dist.K)]
    P = xt.shape[0]
    logs, onehots = [], []
    for z in subsets:
        pz = dist.pi_tilde[list(z)] / dist.pi_tilde[list(z)].sum()
        for ys in itertools.product(range(dist.K), repeat=P):
            labels = [z[k] for k in ys]
            lp = sum(math.log(pz[k]) for k in ys)
            lp += float(gaussian_logpdf(xt, math.sqrt(a) * dist.patterns[labels], var).sum())
            logs.append(lp)
            onehots.append(torch.nn.functional.one_hot(torch.tensor(labels), dist.M).double())
    w = torch.softmax(torch.tensor(logs, dtype=torch.float64), 0)
    return (w.view(-1, 1, 1) * torch.stack(onehots)).sum(0)


@pytest.mark.parametrize("t", [1, 30, 50])
def test_label_posterior_against_brute_force(t):
    dist = make(d=5, M=5, K=3, P=3, rho=0.5, pi=[0.05, 0.15, 0.2, 0.25, 0.35])
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(10 + t)
    sample = dist.sample(4, generator=g, dtype=torch.float64)
    tt = torch.full((4,), t)
    xt = s.add_noise(sample.x0, tt, torch.randn(sample.x0.shape, generator=g, dtype=torch.float64))
    abar = s.alpha_bar(tt)
    post = dist.posterior_token_labels(xt, abar, chunk=3)  # a chunk boundary inside the batch
    torch.testing.assert_close(post.sum(-1), torch.ones(4, 3, dtype=torch.float64))
    for b in range(4):
        torch.testing.assert_close(post[b], brute_force_label_posterior(dist, xt[b], abar[b]), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_bayes_eps_equals_posterior_mean_formula(dtype):
    # bayes_eps adds the posterior product to c_t X^t chunk by chunk; eq. (6) written out from the posterior mean
    dist = make(d=16, M=6, K=3, P=40, rho=0.3)
    s = LinearAlphaSchedule()
    g = torch.Generator().manual_seed(7)
    sample = dist.sample(37, generator=g, dtype=dtype)  # 37: not a multiple of any chunk below
    t = torch.randint(1, 51, (37,), generator=g)
    xt = s.add_noise(sample.x0, t, torch.randn(sample.x0.shape, generator=g, dtype=dtype))
    abar = s.alpha_bar(t)
    c = dist.oracle_coefficient(abar).view(-1, 1, 1)
    mean = dist.posterior_mean_patterns(xt, abar, torch.float64)
    expected = c * (xt.double() - abar.sqrt().view(-1, 1, 1) * mean)
    for chunk in (1, 5, 32, 64):
        got = dist.bayes_eps(xt, abar, dtype, chunk=chunk)
        assert got.dtype == dtype
        tol = dict(atol=1e-12, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(got.double(), expected, **tol)
