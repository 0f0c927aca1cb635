"""Appendix F kernel estimation and covariance relative error (paper 2)."""

import pytest
import torch

from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences
from diffusion_theory.metrics.covariance import (
    covariance_relative_error,
    empirical_block_covariance,
    estimate_kernel,
    kron_distance_sq,
)


def test_kron_identity_matches_brute_force_kron():
    g = torch.Generator().manual_seed(0)
    A, C = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    B, D = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)
    brute = (torch.kron(A, B) - torch.kron(C, D)).pow(2).sum()
    assert kron_distance_sq(A, B, C, D).item() == pytest.approx(brute.item(), rel=1e-12)
    assert kron_distance_sq(A, B, A, B).item() == pytest.approx(0.0, abs=1e-12)


def test_block_covariance_matches_numpy_style_biased_covariance():
    x = torch.randn(500, 6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 2.0
    blocks = empirical_block_covariance(x)  # (N, N, d, d)
    full = torch.cov(x.reshape(500, -1).T, correction=0)  # Appendix F divides by n
    assert torch.allclose(blocks.permute(0, 2, 1, 3).reshape(18, 18), full, atol=1e-12)
    assert torch.allclose(blocks[1, 4], full[3:6, 12:15], atol=1e-12)


def test_gamma_hat_is_the_frobenius_projection_of_each_block():
    """Closed-form gamma_hat equals argmin_a ||Sigma_hat_ij - a Sigma||_F computed block by block (lstsq)."""
    gp = GaussianProcessSequences(N=7, d=3, length_scale=5.0, nu=1.5, seed=4)
    x = gp.sample(800, generator=3, dtype=torch.float64)
    est = estimate_kernel(x, gp.sigma)
    blocks = empirical_block_covariance(x)
    design = gp.sigma.reshape(-1, 1)  # (d^2, 1)
    for i, j in [(0, 0), (2, 5), (6, 1)]:
        a = torch.linalg.lstsq(design, blocks[i, j].reshape(-1, 1)).solution.item()
        assert est.gamma_hat[i, j].item() == pytest.approx(a, rel=1e-10)
    # sigma_hat variants
    mean_diag = torch.stack([blocks[i, i] for i in range(7)]).mean(0)
    assert torch.allclose(estimate_kernel(x, gp.sigma, sigma_estimate="diagonal_mean").sigma_hat, mean_diag, atol=1e-12)
    normalized = est.sigma_hat
    assert torch.linalg.matrix_norm(normalized).item() == pytest.approx(torch.linalg.matrix_norm(gp.sigma).item())
    assert torch.allclose(normalized / normalized.norm(), mean_diag / mean_diag.norm(), atol=1e-12)
    assert torch.equal(estimate_kernel(x, gp.sigma, sigma_estimate="true").sigma_hat, gp.sigma)


def test_gamma_hat_recovers_gamma_on_large_samples():
    gp = GaussianProcessSequences(N=12, d=4, length_scale=8.0, nu=1.5, mean=1.0, seed=0)
    n = 20_000
    x = gp.sample(n, generator=5, dtype=torch.float64)
    est = estimate_kernel(x, gp.sigma)
    # per-sequence terms c_k[i]^T Sigma c_k[j] / ||Sigma||^2 give the standard error of each entry
    c = x - x.mean(0)
    terms = torch.einsum("kia,ab,kjb->kij", c, gp.sigma, c) / gp.sigma.pow(2).sum()
    std_err = terms.std(0) / n**0.5
    assert ((est.gamma_hat - gp.gamma).abs() / std_err).max() < 6.0
    assert (est.gamma_hat - gp.gamma).abs().max() < 0.1
    # a known mean gives the same estimate up to the mean's sampling error
    assert torch.allclose(estimate_kernel(x, gp.sigma, mean=1.0).gamma_hat, est.gamma_hat, atol=0.02)


def test_relative_error_is_near_one_for_samples_of_the_true_process():
    """eps compares two estimates from equal sample sizes: for a second draw of the same process it
    is a ratio of two identically distributed errors. One ratio is noisy (the error of a smooth kernel
    has few effective degrees of freedom), so we pool ten independent pairs."""
    gp = GaussianProcessSequences(N=32, d=4, length_scale=4.0, nu=1.0, seed=0)
    num = den = 0.0
    for k in range(10):
        result = covariance_relative_error(
            gp.sample(2000, generator=100 + k), gp.training_set(2000, seed=200 + k), gp.gamma, gp.sigma
        )
        assert result.epsilon > 0
        num, den = num + result.numerator.item(), den + result.denominator.item()
    assert 1 / 1.5 < num / den < 1.5  # over 20 seed groups the pooled ratio ranged 0.92..1.33


def test_relative_error_is_large_for_white_noise():
    gp = GaussianProcessSequences(N=32, d=4, length_scale=64.0, nu=2.0, seed=0)
    training = gp.training_set(2000, seed=1)
    # white noise with the right per-entry variance but no temporal or spatial correlation
    white = torch.randn(2000, 32, 4, generator=torch.Generator().manual_seed(2)) * gp.marginal_variance.sqrt().float()
    assert covariance_relative_error(white, training, gp.gamma, gp.sigma).epsilon > 50
    # a 10 % variance error is already clearly visible
    good = gp.sample(2000, generator=3)
    assert (
        covariance_relative_error(good * 1.1**0.5, training, gp.gamma, gp.sigma).epsilon
        > 2 * covariance_relative_error(good, training, gp.gamma, gp.sigma).epsilon
    )


def test_relative_error_uses_the_first_n_training_sequences_and_checks_sizes():
    gp = GaussianProcessSequences(N=8, d=2, length_scale=4.0, nu=1.0)
    gen, train = gp.sample(300, generator=1), gp.training_set(1000, seed=0)
    r = covariance_relative_error(gen, train, gp.gamma, gp.sigma)
    assert r.training.n == 300
    r_exact = covariance_relative_error(gen, train[:300], gp.gamma, gp.sigma)
    assert r.epsilon.item() == pytest.approx(r_exact.epsilon.item(), rel=1e-12)
    # the dataclass's numerator is the brute-force Kronecker distance
    brute = (torch.kron(r.gamma_hat, r.sigma_hat) - torch.kron(gp.gamma, gp.sigma)).pow(2).sum()
    assert r.numerator.item() == pytest.approx(brute.item(), rel=1e-9)
    with pytest.raises(ValueError, match="training"):
        covariance_relative_error(gen, train[:100], gp.gamma, gp.sigma)
    with pytest.raises(ValueError, match="sigma_estimate"):
        estimate_kernel(gen, gp.sigma, sigma_estimate="mle")
