"""The bouncing-ball simulator (paper 2, Sec. 6.2): in the box, exact elastic reflection against an independent
event-by-event simulation, constant speed, deterministic per seed, the disc's rendering, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_theory.distributions.bouncing_ball import BouncingBall, fold, render_discs


def event_simulation(
    start: tuple[float, float], angle: float, speed: float, lo: float, hi: float, frames: int, substeps: int = 1
) -> list[tuple[float, float]]:
    """Independent reference: move frame by frame, reflecting off each wall at the exact contact time."""
    x, y = start
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    out = [(x, y)]
    for _ in range(frames - 1):
        remaining = 1.0
        while remaining > 1e-15:
            times = []
            for pos, vel in ((x, vx), (y, vy)):
                if vel > 0:
                    times.append((hi - pos) / vel)
                elif vel < 0:
                    times.append((lo - pos) / vel)
                else:
                    times.append(math.inf)
            hit = min(times)
            dt = min(hit, remaining)
            x, y, remaining = x + vx * dt, y + vy * dt, remaining - dt
            if hit <= dt + 1e-15 and remaining >= 0:
                if times[0] <= dt + 1e-15:
                    vx = -vx
                if times[1] <= dt + 1e-15:
                    vy = -vy
        out.append((x, y))
    return out


def test_fold_is_a_reflection():
    u = torch.linspace(-30, 30, 601, dtype=torch.float64)
    f = fold(u, 7.0)
    assert f.min() >= 0 and f.max() <= 7.0
    assert torch.allclose(fold(-u, 7.0), f)  # mirror at 0
    assert torch.allclose(fold(14.0 - u, 7.0), f)  # mirror at W
    assert torch.allclose(fold(u + 14.0, 7.0), f)  # period 2W


def test_trajectories_match_event_simulation_and_stay_in_the_box():
    ball = BouncingBall(size=64, radius=6.0, speed=3.7)
    start, angle = ball.initial_states(40, seed=3)
    paths = ball.trajectories(start, angle, frames=90)  # (40, 90, 2): several bounces each
    lo, hi = ball.radius, ball.size - ball.radius
    assert paths.min() >= lo - 1e-12 and paths.max() <= hi + 1e-12
    for i in range(40):
        ref = torch.tensor(
            event_simulation(tuple(start[i].tolist()), float(angle[i]), ball.speed, lo, hi, 90), dtype=torch.float64
        )
        assert torch.allclose(paths[i], ref, atol=1e-9), i


def test_speed_is_constant_and_reflection_flips_one_component():
    ball = BouncingBall(size=32, radius=3.0, speed=2.0)
    paths = ball.sample_trajectories(50, 60, seed=1)
    v = paths[:, 1:] - paths[:, :-1]  # (50, 59, 2)
    start, angle = ball.initial_states(50, seed=1)
    vx, vy = ball.speed * torch.cos(angle), ball.speed * torch.sin(angle)
    # away from bounces every step is the initial velocity with each component's sign possibly flipped
    assert torch.allclose(v[..., 0].abs().max(1).values, vx.abs(), atol=1e-9)
    assert torch.allclose(v[..., 1].abs().max(1).values, vy.abs(), atol=1e-9)
    speed = v.norm(dim=-1)
    full = (v[..., 0].abs() - vx.abs()[:, None]).abs() < 1e-9
    full &= (v[..., 1].abs() - vy.abs()[:, None]).abs() < 1e-9
    assert full.float().mean() > 0.8  # most steps contain no bounce
    assert torch.allclose(speed[full], torch.full_like(speed[full], 2.0))
    assert (speed <= 2.0 + 1e-9).all()  # a folded step is never longer than the speed


def test_deterministic_per_seed_and_nested():
    ball = BouncingBall(64, 5.0, 3.0)
    a, _ = ball.sample_videos(6, 10, seed=7)
    b, _ = ball.sample_videos(6, 10, seed=7)
    c, _ = ball.sample_videos(6, 10, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    big = ball.sample_trajectories(2000, 5, seed=7)  # two chunks of initial states
    assert torch.equal(big[:6], ball.sample_trajectories(6, 5, seed=7))


def test_render_is_a_disc_of_the_right_area():
    centres = torch.tensor([[20.3, 31.7], [10.0, 50.5]], dtype=torch.float64)
    frames = render_discs(centres, 64, 6.0)  # (2, 64, 64)
    assert frames.min() >= 0 and frames.max() <= 1
    assert torch.allclose(frames.sum((-2, -1)), torch.full((2,), math.pi * 36.0, dtype=frames.dtype), rtol=0.02)
    # pixel (row 31, column 20) has centre (20.5, 31.5): inside the first disc
    assert frames[0, 31, 20] == 1.0 and frames[0, 0, 0] == 0.0


@pytest.mark.parametrize(
    "kwargs, field",
    [({"radius": 32.0}, "radius"), ({"radius": 0.0}, "radius"), ({"speed": 0.0}, "speed"), ({"size": 1}, "size")],
)
def test_bad_geometry_fails_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BouncingBall(**{"size": 64, "radius": 4.0, "speed": 3.0, **kwargs})


def test_bad_frame_count():
    ball = BouncingBall()
    for frames in (0, -3, 2.5):
        with pytest.raises(ValueError, match="frames must be a positive integer"):
            ball.sample_trajectories(2, frames, seed=0)
