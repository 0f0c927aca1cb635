"""Samplers driven by the exact noise predictor of a tiny Gaussian process must reproduce its law."""

import math

import pytest
import torch

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.samplers import (
    ddim,
    ddpm_ancestral,
    probability_flow_ode,
    respaced_steps,
    reverse_sde_euler_maruyama,
)
from diffusion_theory.diffusion.schedules import LinearBetaSchedule
from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These loops run thousands of small element-wise ops; with 2 OpenMP threads on a shared 2-core
    machine each op can wait tens of ms for a busy core (measured 40x slower). One thread is also the
    fastest choice for tensors this small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


N_SAMPLES = 10_000
GP = GaussianProcessSequences(N=4, d=2, length_scale=2.0, nu=1.0, mean=0.5, seed=1)  # covariance eigenvalues 0.07..1.6
SHAPE = (N_SAMPLES, 4, 2)


def law_errors(x: torch.Tensor, abar_end: float = 1.0) -> tuple[float, float]:
    """(max |mean error| in standard errors, relative Frobenius error of the covariance) against the
    law of sqrt(abar) X_0 + sqrt(1 - abar) E (abar_end = 1: the data law itself)."""
    flat = x.reshape(x.shape[0], -1).double()
    cov = abar_end * torch.kron(GP.gamma, GP.sigma) + (1 - abar_end) * torch.eye(8, dtype=torch.float64)
    mean = math.sqrt(abar_end) * GP.mean
    mean_z = ((flat.mean(0) - mean) / (torch.diagonal(cov) / flat.shape[0]).sqrt()).abs().max().item()
    cov_err = ((torch.cov(flat.T) - cov).norm() / cov.norm()).item()
    return mean_z, cov_err


# The sampling error of the covariance alone is ~1.5 % at 10^4 samples; discretisation adds ~1 %.
COV_TOL = 0.06
MEAN_Z_TOL = 5.0


def test_law_check_rejects_standard_normal_samples():
    """Negative control: N(0, I) (what the samplers start from) fails the check."""
    mean_z, cov_err = law_errors(torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)))
    assert mean_z > MEAN_Z_TOL and cov_err > 5 * COV_TOL


def test_ddpm_ancestral_reproduces_the_gaussian_law():
    schedule = LinearBetaSchedule(T=1000)
    x = ddpm_ancestral(GP.exact_eps_fn(schedule), schedule, SHAPE, generator=torch.Generator().manual_seed(0))
    mean_z, cov_err = law_errors(x)
    assert mean_z < MEAN_Z_TOL and cov_err < COV_TOL


def test_ddim_reproduces_the_gaussian_law_and_is_deterministic():
    schedule = LinearBetaSchedule(T=1000)
    eps_fn = GP.exact_eps_fn(schedule)
    x = ddim(eps_fn, schedule, SHAPE, n_steps=200, eta=0.0, generator=torch.Generator().manual_seed(0))
    mean_z, cov_err = law_errors(x)
    assert mean_z < MEAN_Z_TOL and cov_err < COV_TOL
    x_T = torch.randn(8, 4, 2, generator=torch.Generator().manual_seed(5))
    a = ddim(eps_fn, schedule, (8, 4, 2), n_steps=20, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = ddim(eps_fn, schedule, (8, 4, 2), n_steps=20, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_ddim_with_eta_one_is_stochastic_and_still_right():
    schedule = LinearBetaSchedule(T=1000)
    x = ddim(
        GP.exact_eps_fn(schedule), schedule, SHAPE, n_steps=500, eta=1.0, generator=torch.Generator().manual_seed(0)
    )
    mean_z, cov_err = law_errors(x)
    assert mean_z < MEAN_Z_TOL and cov_err < COV_TOL


def test_reverse_sde_reproduces_the_early_stopped_law():
    schedule = ContinuousVPSchedule(T=10.0, t0=1e-3)
    x = reverse_sde_euler_maruyama(
        GP.exact_eps_fn(schedule), schedule, SHAPE, n_steps=1000, generator=torch.Generator().manual_seed(0)
    )
    mean_z, cov_err = law_errors(x, abar_end=math.exp(-1e-3))
    assert mean_z < MEAN_Z_TOL and cov_err < COV_TOL


@pytest.mark.parametrize(
    "method, n_steps, spacing", [("heun", 100, "uniform"), ("heun", 50, "log"), ("euler", 400, "uniform")]
)
def test_probability_flow_ode_reproduces_the_early_stopped_law(method, n_steps, spacing):
    schedule = ContinuousVPSchedule(T=10.0, t0=1e-3)
    x = probability_flow_ode(
        GP.exact_eps_fn(schedule),
        schedule,
        SHAPE,
        n_steps=n_steps,
        method=method,
        spacing=spacing,
        generator=torch.Generator().manual_seed(0),
    )
    mean_z, cov_err = law_errors(x, abar_end=math.exp(-1e-3))
    assert mean_z < MEAN_Z_TOL and cov_err < COV_TOL


def test_final_denoising_returns_the_tweedie_mean():
    schedule = ContinuousVPSchedule(T=10.0, t0=0.5)
    eps_fn = GP.exact_eps_fn(schedule)
    x_T = torch.randn(6, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_t0 = probability_flow_ode(eps_fn, schedule, (6, 4, 2), n_steps=10, x_T=x_T)
    x0_hat = probability_flow_ode(eps_fn, schedule, (6, 4, 2), n_steps=10, x_T=x_T, denoise_final=True)
    abar = math.exp(-0.5)
    expected = (x_t0 + (1 - abar) * GP.score(x_t0, abar)) / math.sqrt(abar)
    assert torch.allclose(x0_hat, expected, atol=1e-10)


def test_callback_is_called_at_the_requested_steps():
    schedule = LinearBetaSchedule(T=1000)
    calls = []
    x_T = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    out = ddim(
        GP.exact_eps_fn(schedule),
        schedule,
        (3, 4, 2),
        n_steps=10,
        x_T=x_T,
        callback_steps={0, 4, 10},
        callback=lambda k, t, x: calls.append((k, t.clone(), x.clone())),
    )
    assert [k for k, _, _ in calls] == [0, 4, 10]
    steps = respaced_steps(1000, 10)
    assert steps[0] == 1000 and steps[-1] == 1 and len(steps) == 10
    assert torch.equal(calls[0][1], torch.full((3,), 1000)) and torch.equal(calls[0][2], x_T)
    assert torch.equal(calls[1][1], torch.full((3,), steps[4]))
    assert torch.equal(calls[2][1], torch.zeros(3, dtype=torch.long)) and torch.equal(calls[2][2], out)

    continuous = ContinuousVPSchedule(T=10.0, t0=1e-3)
    seen = []
    reverse_sde_euler_maruyama(
        GP.exact_eps_fn(continuous),
        continuous,
        (3, 4, 2),
        n_steps=20,
        callback=lambda k, t, x: seen.append((k, t[0].item())),
    )
    assert [k for k, _ in seen] == list(range(21))
    assert seen[0][1] == pytest.approx(10.0) and seen[-1][1] == pytest.approx(1e-3)
    assert all(a[1] > b[1] for a, b in zip(seen, seen[1:]))


def test_eps_fn_receives_native_times():
    """Discrete samplers pass int steps, continuous ones float times, both as (B,) tensors."""
    seen = []

    def eps_fn(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    ddpm_ancestral(eps_fn, LinearBetaSchedule(T=5), (2, 3), generator=torch.Generator().manual_seed(0))
    assert [int(t[0]) for t in seen] == [5, 4, 3, 2, 1] and all(t.dtype == torch.long and t.shape == (2,) for t in seen)
    seen.clear()
    probability_flow_ode(eps_fn, ContinuousVPSchedule(T=2.0, t0=0.5), (2, 3), n_steps=3, method="euler")
    assert [round(float(t[0]), 6) for t in seen] == [2.0, 1.5, 1.0] and seen[0].is_floating_point()


def test_bad_sampler_arguments_name_the_field():
    schedule = LinearBetaSchedule(T=10)
    with pytest.raises(ValueError, match="n_steps"):
        ddim(GP.exact_eps_fn(schedule), schedule, (2, 4, 2), n_steps=11)
    with pytest.raises(ValueError, match="eta"):
        ddim(GP.exact_eps_fn(schedule), schedule, (2, 4, 2), n_steps=5, eta=-1)
    with pytest.raises(ValueError, match="method"):
        probability_flow_ode(GP.exact_eps_fn(schedule), ContinuousVPSchedule(), (2, 4, 2), method="rk4")
    with pytest.raises(ValueError, match="x_T"):
        ddpm_ancestral(GP.exact_eps_fn(schedule), schedule, (2, 4, 2), x_T=torch.zeros(3, 4, 2))
