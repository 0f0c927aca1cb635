"""Training-time distributions of the continuous process of paper 2 (GP): Unif[t0, T] (eq. (6)) and the noise levels
of the paper's 1000-step linear-beta DDPM (``time_sampling: ddpm_linear``), against closed forms and the discrete
schedule itself."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.schedules import LinearBetaSchedule

LEVELS = (0.99, 0.9, 0.5, 0.1, 0.01, 0.001)


def test_ddpm_linear_time_is_minus_log_alpha_bar_of_the_discrete_ddpm():
    # The share of training draws above each noise level equals the share of the 1000 DDPM steps above it (the
    # discrete chain's cumulative product computed independently), up to its discreteness and the t0/T clipping.
    s = ContinuousVPSchedule(T=10.0, t0=1e-3, time_sampling="ddpm_linear")
    alpha_bars = LinearBetaSchedule(T=1000).alpha_bars  # (1000,)
    for a in LEVELS:
        assert s.fraction_above(a) == pytest.approx(float((alpha_bars > a).double().mean()), abs=0.01), a
    # about 10 % of training at abar > 0.9 against about 1 % for Unif[t0, T] (the numbers)
    assert 0.08 < s.fraction_above(0.9) < 0.11
    assert ContinuousVPSchedule(T=10.0, t0=1e-3).fraction_above(0.9) == pytest.approx(
        (-math.log(0.9) - 1e-3) / (10.0 - 1e-3)
    )


@pytest.mark.parametrize("time_sampling", ["uniform", "ddpm_linear"])
def test_sampled_times_follow_the_closed_form(time_sampling):
    s = ContinuousVPSchedule(T=10.0, t0=1e-3, time_sampling=time_sampling)
    n = 400_000
    t = s.sample_times(n, generator=torch.Generator().manual_seed(0))  # (n,)
    assert t.shape == (n,) and t.dtype == torch.float32
    assert float(t.min()) >= s.t0 - 1e-7 and float(t.max()) <= s.T + 1e-6
    abar = torch.exp(-t.double())
    for a in LEVELS:
        p = s.fraction_above(a)
        se = math.sqrt(p * (1 - p) / n)
        assert abs(float((abar > a).double().mean()) - p) < 5 * se + 1e-6, a


def test_ddpm_linear_inverse_and_ends():
    s = ContinuousVPSchedule(T=10.0, t0=1e-3, time_sampling="ddpm_linear")
    for t in (1e-3, 0.1, 1.0, 5.0, 10.0):
        assert float(s.ddpm_linear_time(torch.tensor(s.ddpm_linear_u(t), dtype=torch.float64))) == pytest.approx(t)
    # t(1) = b0 + (b1 - b0) / 2 = 0.1 + 9.95: -log abar at the DDPM's last step in the continuous limit
    assert float(s.ddpm_linear_time(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(10.05)


def test_bad_time_sampling_is_one_clear_error():
    with pytest.raises(ValueError, match="schedule.time_sampling must be 'uniform' or 'ddpm_linear'; got 'first'"):
        ContinuousVPSchedule(time_sampling="first")
    with pytest.raises(ValueError, match="beta_start <= beta_end"):
        ContinuousVPSchedule(time_sampling="ddpm_linear", beta_start=0.02, beta_end=1e-4)
