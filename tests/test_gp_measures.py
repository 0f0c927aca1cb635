"""Paper 2 (GP) measures of issue 12: the kernel-family fit of score matrices, the per-frame variance ratio and eps
with an expected denominator, against synthetic cases with known answers and brute-force loops."""

from __future__ import annotations

import pytest
import torch

from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences, kernel_matrix
from diffusion_theory.metrics.attention import pearson_correlation
from diffusion_theory.metrics.covariance import covariance_relative_error
from diffusion_theory.metrics.gp_sequences import expected_denominator_eps, per_frame_variance_ratio
from diffusion_theory.metrics.kernel_fit import fit_kernel_family, l_max

N = 32
TOL = 0.005  # relative residual below which the family "fits" a noise-free matrix


def lags(n: int) -> torch.Tensor:
    h = torch.arange(n, dtype=torch.float64)
    return (h[:, None] - h[None, :]).abs()


@pytest.mark.parametrize("nu,l", [(2.0, 64.0), (1.0, 4.0), (1.5, 16.0), (2.0, 256.0), (1.0, 64.0)])
def test_fit_recovers_the_parameters_of_a_family_member_up_to_scale_and_offset(nu, l):
    assert l <= l_max(N, nu)
    fit = fit_kernel_family(2.5 * kernel_matrix(N, l, nu) - 0.7)
    assert fit.nu == pytest.approx(nu, rel=0.02) and fit.length_scale == pytest.approx(l, rel=0.06)
    assert fit.scale == pytest.approx(2.5, rel=0.02) and fit.offset == pytest.approx(-0.7, abs=0.02)
    assert fit.fits(TOL)


def test_fit_with_noise_stays_near_the_truth():
    g = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(N, N, generator=g, dtype=torch.float64)
    fit = fit_kernel_family(kernel_matrix(N, 64.0, 2.0) + 0.5 * (noise + noise.T))
    assert fit.nu == pytest.approx(2.0, abs=0.15) and fit.length_scale == pytest.approx(64.0, rel=0.3)


def test_a_linear_decay_correlates_with_gamma_but_does_not_fit_the_family():
    linear = 1 - lags(N) / N
    gamma = kernel_matrix(N, 64.0, 2.0)
    r = float(pearson_correlation(linear.flatten(), gamma.flatten()))
    assert r > 0.85  # the point: correlation alone cannot tell them apart
    fit = fit_kernel_family(linear)
    assert not fit.fits(TOL)
    assert fit.rel_residual > 3 * fit_kernel_family(gamma).rel_residual + TOL / 2
    assert abs(fit.nu - 2.0) > 0.5  # and its parameters are far from the kernel it correlates with


def test_a_matrix_rising_with_the_lag_has_no_fit():
    fit = fit_kernel_family(-kernel_matrix(N, 64.0, 2.0))
    assert fit.rel_residual == 1.0 and fit.nu != fit.nu and not fit.fits(0.5)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        fit_kernel_family(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="constant"):
        fit_kernel_family(torch.ones(5, 5))


def test_per_frame_variance_ratio_against_a_loop_and_the_truth():
    gp = GaussianProcessSequences(N=8, d=3, length_scale=4.0, nu=1.5)
    x = gp.sample(4000, generator=1, dtype=torch.float64)  # (n, N, d)
    ratio = per_frame_variance_ratio(x, gp.gamma, gp.sigma)
    loop = torch.tensor(
        [
            sum(float(x[k, i] @ x[k, i]) for k in range(x.shape[0]))
            / x.shape[0]
            / float(gp.gamma[i, i] * torch.trace(gp.sigma))
            for i in range(8)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(ratio, loop)
    assert (ratio - 1).abs().max() < 0.1  # true samples: 1 in every frame up to sampling error
    inflated = x.clone()
    inflated[:, 0] *= 1.25**0.5  # 25 % excess variance in the first frame only
    r2 = per_frame_variance_ratio(inflated, gp.gamma, gp.sigma, mean=None)
    assert r2[0] / ratio[0] == pytest.approx(1.25, rel=0.01) and torch.allclose(r2[1:], ratio[1:], rtol=0.01)
    with pytest.raises(ValueError, match="gamma must be"):
        per_frame_variance_ratio(x, gp.gamma[:4, :4], gp.sigma)


def test_expected_denominator_eps_is_the_appendix_f_numerator_over_the_mean_denominator():
    gp = GaussianProcessSequences(N=8, d=3, length_scale=4.0, nu=1.5)
    gen = gp.sample(200, generator=10, dtype=torch.float64)
    draws = [gp.sample(200, generator=20 + j, dtype=torch.float64) for j in range(4)]
    out = expected_denominator_eps(gen, draws, gp.gamma, gp.sigma)
    singles = [covariance_relative_error(gen, t, gp.gamma, gp.sigma) for t in draws]
    assert out.numerator == pytest.approx(float(singles[0].numerator))
    assert out.denominators == pytest.approx([float(s.denominator) for s in singles])
    assert out.epsilon == pytest.approx(out.numerator / (sum(out.denominators) / 4))
    assert out.frobenius_error == pytest.approx(out.numerator**0.5)
    # true samples as "generated": the mean numerator over repeats equals the mean denominator (both are the same
    # statistic of n true sequences), so eps with the expected denominator is 1 on average (60 + 60 draws of 100)
    many = [gp.sample(100, generator=1000 + j, dtype=torch.float64) for j in range(60)]
    ref = expected_denominator_eps(many[0], many, gp.gamma, gp.sigma)
    nums = [
        expected_denominator_eps(
            gp.sample(100, generator=5000 + k, dtype=torch.float64), many[:1], gp.gamma, gp.sigma
        ).numerator
        for k in range(60)
    ]
    assert (sum(nums) / 60) / (sum(ref.denominators) / 60) == pytest.approx(1.0, abs=0.3)
    with pytest.raises(ValueError, match="same n|generated shape"):
        expected_denominator_eps(gen, [gen[:10]], gp.gamma, gp.sigma)


# ---- where the boundary-frame excess variance comes from (experiments.gp_boundary) -----------------------------


class ExactModule:
    """A stand-in for a trained DiffusionModule whose noise prediction is the exact E[E | X^t] (paper 2 (GP) eq. (2))
    plus ``boundary_error`` on the first and last frames: the denoiser the boundary measures should recognise."""

    def __init__(self, dm, boundary_error: float = 0.0):
        from diffusion_theory.diffusion.continuous import ContinuousVPSchedule

        self.dm, self.schedule, self.boundary_error = (
            dm,
            ContinuousVPSchedule(T=10.0, t0=1e-3, n_eval_times=6),
            boundary_error,
        )
        self.inference_network = None

    def denoise(self, x_t, t, network=None):
        eps = self.dm.dist.eps_posterior_mean(x_t.double(), self.schedule.alpha_bar(t).double()).to(x_t.dtype)
        eps[:, [0, -1]] += self.boundary_error
        return eps


def test_boundary_measures_of_the_exact_denoiser_and_of_one_wrong_at_the_ends():
    from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
    from diffusion_theory.experiments.gp_boundary import boundary_measures

    dm = GaussianProcessDataModule(N=8, d=2, length_scale=4.0, nu=1.5, n_eval=16)
    ode = {"sampler": "ode", "n_steps": 40, "sampler_options": {"spacing": "log"}}
    exact = boundary_measures(ExactModule(dm), dm, 4000, ode, n_time_bins=2)
    # the exact denoiser: the model's samples are the sampler's (same x_T, same function), with variance ratio 1 up to
    # sampling noise (4000 samples of 2 coordinates: standard error ~ 1.6 %) at every frame, and zero excess
    assert exact.model_ratio == pytest.approx(exact.sampler_ratio, abs=1e-5)
    assert all(abs(r - 1) < 0.08 for r in exact.sampler_ratio)
    assert all(e < 1e-10 for row in exact.denoiser_excess for e in row)
    assert len(exact.bin_times) == 2 and exact.bin_times[0][0] == pytest.approx(1e-3)
    # wrong by 0.1 on every coordinate of the two end frames: excess exactly 0.01 there, 0 elsewhere
    wrong = boundary_measures(ExactModule(dm, boundary_error=0.1), dm, 500, ode, n_time_bins=2)
    for row in wrong.denoiser_excess:
        assert row[0] == pytest.approx(0.01, rel=1e-4) and row[-1] == pytest.approx(0.01, rel=1e-4)
        assert max(row[1:-1]) < 1e-10
    assert wrong.sampler_ratio == pytest.approx(
        boundary_measures(ExactModule(dm), dm, 500, ode, n_time_bins=2).sampler_ratio
    )
