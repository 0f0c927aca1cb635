"""Physics metrics of ball videos (metrics.ball_physics): the tracker finds simulated balls within a pixel, real
videos score as the simulator's physics says, shuffled-frame videos far worse, hand-made violations are caught,
and the sums are additive (what makes them equal under DDP)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_theory.distributions.bouncing_ball import BouncingBall
from diffusion_theory.metrics.ball_physics import (
    merge_sums,
    physics_summary,
    physics_sums,
    track_centroids,
    video_physics,
)

BALL = BouncingBall(size=64, radius=6.0, speed=3.0)


@pytest.fixture(scope="module")
def real():
    videos, centres = BALL.sample_videos(64, 48, seed=11)
    return videos, centres


def test_tracker_recovers_positions_within_a_pixel(real):
    videos, centres = real
    for threshold in (0.0, 0.25, 0.5):
        pos, valid = track_centroids(videos, threshold)
        assert valid.all()
        assert (pos - centres).norm(dim=-1).max() < 0.1  # well within a pixel (symmetric anti-aliased disc)
    pos, valid = track_centroids(torch.zeros(2, 8, 8))
    assert not valid.any() and torch.isnan(pos).all()


def test_exact_paths_have_exact_physics(real):
    _, centres = real
    s = physics_summary(physics_sums(centres, 64, 6.0))
    assert s["speed_error"] < 1e-12 and s["mean_speed"] == pytest.approx(3.0)
    assert s["reflection_ok"] == 1.0 and s["bounces_per_video"] > 1.5
    assert s["out_of_box"] == 0 and s["out_of_box_max"] == 0 and s["lost_frames"] == 0


def test_real_videos_score_well_and_shuffled_frames_far_worse(real):
    videos, _ = real
    good = video_physics(videos, 64, 6.0)
    assert good["speed_error"] < 0.01 and good["mean_speed"] == pytest.approx(3.0, abs=0.02)
    assert good["reflection_ok"] == 1.0
    g = torch.Generator().manual_seed(0)
    perm = torch.stack([torch.randperm(videos.shape[1], generator=g) for _ in range(videos.shape[0])])
    shuffled = videos[torch.arange(videos.shape[0])[:, None], perm]
    bad = video_physics(shuffled, 64, 6.0)
    assert bad["speed_error"] > 20 * good["speed_error"]
    assert bad["mean_speed"] > 3 * good["mean_speed"]
    assert math.isnan(bad["reflection_ok"]) or bad["reflection_ok"] < 0.8


def straight_then(v_out: tuple[float, float], wall_x: float = 58.0) -> torch.Tensor:
    """A path moving right at 3 px/frame into x = wall_x, then leaving with velocity v_out (one video, 12 frames)."""
    pts = [(wall_x - 3.0 * (6 - k) + 1.5, 30.0 + 0.5 * k) for k in range(7)]  # contact between frames 6 and 7
    x, y = pts[-1]
    x = wall_x - (x + 3.0 - wall_x)  # frame 7: folded step
    y += 0.5
    pts.append((x, y))
    for _ in range(4):
        x, y = x + v_out[0], y + v_out[1]
        pts.append((x, y))
    return torch.tensor([pts], dtype=torch.float64)


def test_reflection_law_checked():
    ok = physics_summary(physics_sums(straight_then((-3.0, 0.5)), 64, 6.0))
    assert ok["bounces_per_video"] == 1 and ok["reflection_ok"] == 1.0
    wrong_angle = physics_summary(physics_sums(straight_then((-1.0, 2.8)), 64, 6.0))
    assert wrong_angle["bounces_per_video"] == 1 and wrong_angle["reflection_ok"] == 0.0
    mid_air = physics_summary(physics_sums(straight_then((-3.0, 0.5), wall_x=40.0), 64, 6.0))
    assert mid_air["bounces_per_video"] == 1 and mid_air["reflection_ok"] == 0.0  # "bounce" far from any wall


def test_out_of_box_and_lost_frames():
    path = torch.tensor([[[10.0, 30.0], [5.0, 30.0], [4.0, 30.0], [float("nan"), float("nan")]]], dtype=torch.float64)
    s = physics_summary(physics_sums(path, 64, 6.0))
    assert s["out_of_box_max"] == pytest.approx(2.0)
    assert s["out_of_box"] == pytest.approx((0 + 1 + 2) / 3)
    assert s["lost_frames"] == pytest.approx(0.25)


def test_sums_are_additive(real):
    _, centres = real
    noisy = centres + 0.3 * torch.randn(centres.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    whole = physics_sums(noisy, 64, 6.0)
    parts = merge_sums(physics_sums(noisy[:23], 64, 6.0), physics_sums(noisy[23:], 64, 6.0))
    for key in whole:
        assert float(parts[key]) == pytest.approx(float(whole[key]), rel=1e-12), key
