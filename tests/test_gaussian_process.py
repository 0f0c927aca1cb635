"""GaussianProcessSequences: Kronecker sampling, nested training sets, exact score (paper 2, eq. 2)."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences, kernel_matrix


def full_covariance(gp: GaussianProcessSequences) -> torch.Tensor:
    """Brute-force (Nd, Nd) covariance Gamma (x) Sigma, only for tiny N, d."""
    return torch.kron(gp.gamma, gp.sigma)


def test_kernel_and_sigma_follow_section_6_1():
    gp = GaussianProcessSequences(N=6, d=3, length_scale=4.0, nu=1.5, seed=7)
    i, j = 2, 5
    assert gp.gamma[i, j].item() == pytest.approx(math.exp(-(abs(i - j) ** 1.5) / 4.0), rel=1e-12)
    assert torch.allclose(torch.diagonal(gp.gamma), torch.ones(6, dtype=torch.float64))
    A = torch.randn(3, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.allclose(gp.sigma, A.T @ A)
    # Sigma depends on the seed only
    assert not torch.allclose(gp.sigma, GaussianProcessSequences(N=6, d=3, seed=8).sigma)
    # the factors reproduce the matrices
    assert torch.allclose(gp.gamma_factor @ gp.gamma_factor.T, gp.gamma, atol=1e-12)
    assert torch.allclose(gp.sigma_factor @ gp.sigma_factor.T, gp.sigma, atol=1e-12)


@pytest.mark.parametrize("factorization", ["eigh", "cholesky"])
def test_kronecker_sampler_covariance_matches_gamma_kron_sigma(factorization):
    gp = GaussianProcessSequences(N=5, d=3, length_scale=3.0, nu=1.0, mean=0.4, seed=2, factorization=factorization)
    n = 60_000
    x = gp.sample(n, generator=11, dtype=torch.float64).reshape(n, -1)  # (n, Nd), frame-major stacking
    C = full_covariance(gp)
    emp_cov = torch.cov(x.T)
    # entrywise standard error of a Gaussian sample covariance: sqrt((C_ii C_jj + C_ij^2) / n)
    std_err = ((torch.diagonal(C)[:, None] * torch.diagonal(C)[None, :] + C**2) / n).sqrt()
    assert ((emp_cov - C).abs() / std_err).max() < 5.0
    mean_z = (x.mean(0) - 0.4) / (torch.diagonal(C) / n).sqrt()
    assert mean_z.abs().max() < 5.0


def test_sampler_detects_a_wrong_covariance():
    """The check above is not vacuous: samples with Gamma = I fail it."""
    gp = GaussianProcessSequences(N=5, d=3, length_scale=3.0, nu=1.0, seed=2)
    white = GaussianProcessSequences(N=5, d=3, length_scale=1e-6, nu=1.0, seed=2)  # Gamma ~ I
    n = 60_000
    x = white.sample(n, generator=11, dtype=torch.float64).reshape(n, -1)
    C = full_covariance(gp)
    std_err = ((torch.diagonal(C)[:, None] * torch.diagonal(C)[None, :] + C**2) / n).sqrt()
    assert ((torch.cov(x.T) - C).abs() / std_err).max() > 5.0


def test_training_sets_are_nested_and_seeded():
    gp = GaussianProcessSequences(N=16, d=4)
    big = gp.training_set(2500, seed=3)
    small = gp.training_set(1100, seed=3)
    assert big.shape == (2500, 16, 4) and small.dtype == torch.float32
    assert torch.equal(big[:1100], small)
    assert torch.equal(gp.training_set(10, seed=3), small[:10])
    assert not torch.allclose(gp.training_set(10, seed=4), small[:10])
    g = torch.Generator().manual_seed(3)
    assert torch.equal(gp.sample(1100, generator=g), small)


def test_paper_default_is_sampled_with_eigh_despite_singular_gamma():
    gp = GaussianProcessSequences()  # N=128, d=8, l=64, nu=2: Cholesky of Gamma fails in float64
    x = gp.sample(4, generator=0)
    assert x.shape == (4, 128, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("mean", [0.0, 0.7])
def test_score_equals_autograd_of_gaussian_log_density(mean):
    gp = GaussianProcessSequences(N=4, d=3, length_scale=2.0, nu=2.0, mean=mean, seed=5)
    B = 5
    abar = torch.tensor([0.99, 0.7, 0.3, 0.05, 1e-3], dtype=torch.float64)
    x = torch.randn(B, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    expected = []
    for b in range(B):
        cov = abar[b] * full_covariance(gp) + (1 - abar[b]) * torch.eye(12, dtype=torch.float64)
        mvn = MultivariateNormal(abar[b].sqrt() * mean * torch.ones(12, dtype=torch.float64), covariance_matrix=cov)
        v = x[b].reshape(-1).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mvn.log_prob(v), v)
        expected.append(grad.reshape(4, 3))
    expected = torch.stack(expected)
    assert torch.allclose(gp.score(x, abar), expected, rtol=1e-9, atol=1e-9)
    # unbatched input with a float abar
    assert torch.allclose(gp.score(x[1], 0.7), expected[1], rtol=1e-9, atol=1e-9)
    # E[E | X^t] = -sqrt(1 - abar) score
    eps = gp.eps_posterior_mean(x, abar)
    assert torch.allclose(eps, -(1 - abar).sqrt().view(-1, 1, 1) * expected, rtol=1e-9, atol=1e-9)


def test_eps_posterior_mean_is_the_conditional_mean_of_the_noise():
    """Monte-Carlo check of E[E | X^t] through the regression identity E[(E - f(X^t)) g(X^t)] = 0 for
    f = eps_posterior_mean and g linear: the residual is uncorrelated with X^t."""
    gp = GaussianProcessSequences(N=3, d=2, length_scale=2.0, nu=1.0, mean=0.3, seed=1)
    n, abar = 200_000, 0.4
    x0 = gp.sample(n, generator=1, dtype=torch.float64)
    e = torch.randn(n, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xt = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * e
    residual = (e - gp.eps_posterior_mean(xt, abar)).reshape(n, -1)  # (n, 6)
    feats = xt.reshape(n, -1)
    cross = residual.T @ (feats - feats.mean(0)) / n  # (6, 6) sample Cov(residual, X^t)
    assert cross.abs().max() < 5 * (residual.var(0).max() * feats.var(0).max() / n).sqrt()
    assert residual.mean(0).abs().max() < 5 * (residual.var(0).max() / n).sqrt()
    # and a wrong predictor (the prior-free guess (x - alpha mu) sqrt(1-abar)) is correlated
    wrong = (e - math.sqrt(1 - abar) * (xt - math.sqrt(abar) * 0.3)).reshape(n, -1)
    assert (wrong.T @ (feats - feats.mean(0)) / n).abs().max() > 0.05


def test_exact_eps_fn_uses_the_schedule():
    gp = GaussianProcessSequences(N=4, d=2, length_scale=2.0, nu=1.0)
    schedule = ContinuousVPSchedule(T=10.0, t0=1e-3)
    x = torch.randn(3, 4, 2)
    t = torch.tensor([0.5, 2.0, 9.0], dtype=torch.float64)
    expected = gp.eps_posterior_mean(x, torch.exp(-t))
    assert torch.allclose(gp.exact_eps_fn(schedule)(x, t), expected)


def test_score_for_paper_size_runs_batched():
    gp = GaussianProcessSequences()
    x = torch.randn(8, 128, 8)
    s = gp.score(x, torch.linspace(0.01, 0.99, 8))
    assert s.shape == x.shape and s.dtype == torch.float32 and torch.isfinite(s).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(length_scale=0.0), "length_scale"),
        (dict(length_scale=-3.0), "length_scale"),
        (dict(nu=0.0), "nu"),
        (dict(nu=2.5), "nu"),
        (dict(N=0), "N"),
        (dict(d=0), "d"),
        (dict(jitter=-1e-3), "jitter"),
        (dict(factorization="svd"), "factorization"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"gp\.{field}\b"):
        GaussianProcessSequences(**kwargs)


def test_nu_above_two_message_says_not_positive_definite():
    with pytest.raises(ValueError, match="positive"):
        GaussianProcessSequences(nu=2.5)


def test_cholesky_failure_reports_min_eigenvalue_and_jitter():
    with pytest.raises(ValueError) as info:
        GaussianProcessSequences(N=128, length_scale=64.0, nu=2.0, factorization="cholesky")
    message = str(info.value)
    assert "gp.gamma" in message and "Cholesky" in message and "min eigenvalue" in message and "jitter" in message
    lam_min = torch.linalg.eigvalsh(kernel_matrix(128, 64.0, 2.0)).min().item()
    assert f"{lam_min:.3g}" in message
    # the jitter the message points to makes it work
    gp = GaussianProcessSequences(N=128, length_scale=64.0, nu=2.0, factorization="cholesky", jitter=1e-6)
    assert torch.allclose(
        gp.gamma_factor @ gp.gamma_factor.T,
        kernel_matrix(128, 64.0, 2.0) + 1e-6 * torch.eye(128, dtype=torch.float64),
        atol=1e-10,
    )
