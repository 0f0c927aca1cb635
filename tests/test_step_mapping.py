"""Paper 2's backward steps (Fig. 5, 12: k of the DiT code base's 1000-step linear-beta DDPM) map to our
process by noise level (equal alpha-bar), checked against a hand-written product and a brute-force search."""

import math

import pytest
import torch

from diffusion_theory.callbacks.attention_sampling import PAPER_STEPS, map_steps
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.samplers import (
    alpha_bar_at,
    callback_times,
    reference_alpha_bar,
    respaced_steps,
    steps_at_noise_levels,
)
from diffusion_theory.diffusion.schedules import LinearBetaSchedule


def paper_alpha_bar(k: int) -> float:
    """abar after k of 1000 backward steps, by a plain loop: prod_{i=1}^{1000-k} (1 - beta_i), beta linear 1e-4..0.02."""
    out = 1.0
    for i in range(1, 1000 - k + 1):
        out *= 1 - (1e-4 + (0.02 - 1e-4) * (i - 1) / 999)
    return out


def nearest_by_loop(target: float, grid: list[float]) -> int:
    best, best_d = 0, math.inf
    for k, a in enumerate(grid):
        d = abs(math.log(a) - math.log(target))
        if d < best_d:
            best, best_d = k, d
    return best


def test_reference_alpha_bar_is_the_paper_ddpm_product():
    values = reference_alpha_bar(PAPER_STEPS)
    for k, v in zip(PAPER_STEPS, values.tolist()):
        assert v == pytest.approx(paper_alpha_bar(k), rel=1e-9)
    assert values[-1] == 1.0  # step 1000: the generated sample
    assert values[PAPER_STEPS.index(800)] == pytest.approx(0.66, abs=0.005)  # the example
    with pytest.raises(ValueError, match="reference_steps"):
        reference_alpha_bar([1001])


@pytest.mark.parametrize("n_steps, spacing", [(100, "uniform"), (8, "uniform"), (50, "log")])
def test_vp_process_records_the_step_of_equal_noise_level(n_steps, spacing):
    schedule = ContinuousVPSchedule(T=10.0, t0=1e-3)
    times = schedule.time_grid(n_steps, spacing).tolist()
    mapped = map_steps(PAPER_STEPS, 1000, schedule, n_steps, spacing)
    grid = [math.exp(-t) for t in times]
    assert mapped == [nearest_by_loop(paper_alpha_bar(k), grid) for k in PAPER_STEPS]
    assert mapped[0] == 0 and mapped[-1] == n_steps  # pure noise and the sample stay at the ends
    if n_steps == 100 and spacing == "uniform":
        # step 800: abar 0.66, i.e. t = -log(0.66) = 0.42, recorded at t = 0.401 (step 96), where the step
        # fraction (step 80, t = 2.0) meant abar = e^-2 = 0.135
        assert mapped[PAPER_STEPS.index(800)] == 96
        assert abs(times[96] - (-math.log(paper_alpha_bar(800)))) < (10 - 1e-3) / 100 / 2 + 1e-12


def test_discrete_schedules_match_by_alpha_bar():
    paper = LinearBetaSchedule(T=1000)
    assert map_steps(PAPER_STEPS, 1000, paper, None) == list(PAPER_STEPS)  # the paper's own chain
    respaced = map_steps(PAPER_STEPS, 1000, paper, 100)
    grid = alpha_bar_at(paper, callback_times(paper, 100)).tolist()
    assert respaced == [nearest_by_loop(paper_alpha_bar(k), grid) for k in PAPER_STEPS]
    assert callback_times(paper, 100).tolist() == respaced_steps(1000, 100) + [0] and grid[-1] == 1.0
    other = LinearBetaSchedule(T=50, beta_start=1e-3, beta_end=0.2)  # a different chain: not k * 50 / 1000
    mapped = map_steps(PAPER_STEPS, 1000, other, None)
    grid = alpha_bar_at(other, callback_times(other, None)).tolist()
    assert mapped == [nearest_by_loop(paper_alpha_bar(k), grid) for k in PAPER_STEPS]
    assert mapped != [round(k * 50 / 1000) for k in PAPER_STEPS]


def test_targets_beyond_the_grid_map_to_its_ends():
    grid = torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64)
    assert steps_at_noise_levels(torch.tensor([1e-6, 0.4, 1.0], dtype=torch.float64), grid) == [0, 1, 2]
