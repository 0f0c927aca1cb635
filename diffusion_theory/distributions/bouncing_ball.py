"""Videos of a ball bouncing in a box: paper 2, Sec. 6.2 and Appendix F (Fig. 6, Fig. 13).

"a sequence of gray-scale image frames of resolution 64x64 [...] the ball starts moving toward a random
direction in a cube and bounces back when hitting a wall" (paper 2, Sec. 6.2). Pure torch, no Lightning.

Geometry (continuous pixel coordinates): the image covers [0, L]^2, pixel (i, j) is the unit square with
centre (j + 0.5, i + 0.5) (x = column, y = row). A ball of radius r stays inside the image, so its centre
moves in [r, L - r]^2, a box of width W = L - 2r.

Motion, exactly and without a time loop: constant speed s, direction theta ~ U[0, 2 pi), start c_0 ~ U[r, L - r]^2.
Elastic reflection at the walls is the unfolded straight line u(t) = c_0 - r + s t (cos theta, sin theta) folded
back into [0, W] by the triangle wave

    fold(u) = W - |(u mod 2W) - W|,         c(t) = r + fold(u(t))      (per axis)

which reflects each coordinate at 0 and W with angle in = angle out and keeps the speed (|dc/dt| = s except at
the instant of a bounce). Frame k shows the ball at t = k.

Rendering: an anti-aliased disc, intensity clamp(r + 1/2 - |p - c|, 0, 1) at every pixel centre p (1 inside,
a one-pixel linear ramp at the rim), vectorised over videos, frames and pixels (no Python loop over pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Videos are drawn in chunks of this many from one generator, so that the first n videos of a set of any size
# n' >= n are the same (a larger data set extends a smaller one).
STATE_CHUNK = 1024


def fold(u: Tensor, width: float) -> Tensor:
    """The triangle wave W - |(u mod 2W) - W| in [0, W]: elastic reflection at 0 and W of the unfolded path u."""
    return width - ((u % (2 * width)) - width).abs()


@dataclass(frozen=True)
class BouncingBall:
    """A ball of ``radius`` moving at ``speed`` pixels per frame in an L x L frame (paper 2, Sec. 6.2).

    Args:
        size: L, frame side in pixels (paper: 64).
        radius: ball radius in pixels; the ball must fit: 0 < radius and 2 radius < size.
        speed: pixels per frame, > 0.
    """

    size: int = 64
    radius: float = 4.0
    speed: float = 3.0

    def __post_init__(self) -> None:
        validate_geometry(self.size, self.radius, self.speed)

    @property
    def width(self) -> float:
        """W = L - 2r: the side of the box the ball's centre moves in."""
        return self.size - 2 * self.radius

    # -- random initial states -------------------------------------------------------------------------
    def initial_states(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """(start (n, 2) uniform in [r, L - r]^2, direction angle (n,) uniform in [0, 2 pi)), float64.

        Deterministic for ``seed``; drawn in chunks of ``STATE_CHUNK`` so the first n of any larger set agree."""
        check_count("n", n)
        g = torch.Generator().manual_seed(int(seed))
        rows = []
        for _ in range(0, n, STATE_CHUNK):
            rows.append(torch.rand(STATE_CHUNK, 3, generator=g, dtype=torch.float64))  # (chunk, 3)
        u = torch.cat(rows)[:n]  # (n, 3)
        start = self.radius + self.width * u[:, :2]
        return start, 2 * math.pi * u[:, 2]

    # -- motion ------------------------------------------------------------------------------------------
    def trajectories(self, start: Tensor, angle: Tensor, frames: int) -> Tensor:
        """Centres (n, frames, 2) (x, y), float64, of balls starting at ``start`` (n, 2) with direction ``angle`` (n,).

        Frame k: c = r + fold(start - r + k s (cos angle, sin angle)) per axis (module docstring)."""
        check_count("frames", frames)
        direction = torch.stack([torch.cos(angle), torch.sin(angle)], -1).to(torch.float64)  # (n, 2)
        k = torch.arange(frames, dtype=torch.float64)  # (F,)
        unfolded = (start.to(torch.float64) - self.radius)[:, None, :] + self.speed * k[None, :, None] * direction[
            :, None, :
        ]
        return self.radius + fold(unfolded, self.width)  # (n, F, 2)

    def sample_trajectories(self, n: int, frames: int, seed: int) -> Tensor:
        """Centres (n, frames, 2) of n videos drawn from ``seed`` (``initial_states``)."""
        start, angle = self.initial_states(n, seed)
        return self.trajectories(start, angle, frames)

    def uniform_positions(self, n: int, seed: int) -> Tensor:
        """n centres (n, 2) uniform in [r, L - r]^2: single frames for the VAE (the ball's stationary law)."""
        start, _ = self.initial_states(n, seed)
        return start

    # -- rendering ---------------------------------------------------------------------------------------
    def render(self, centres: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Frames (..., L, L) in [0, 1] of balls at ``centres`` (..., 2) (x, y); anti-aliased discs."""
        return render_discs(centres, self.size, self.radius, dtype)

    def sample_videos(self, n: int, frames: int, seed: int) -> tuple[Tensor, Tensor]:
        """(videos (n, frames, L, L) float32 in [0, 1], centres (n, frames, 2) float64)."""
        centres = self.sample_trajectories(n, frames, seed)
        return self.render(centres), centres


def render_discs(centres: Tensor, size: int, radius: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """clamp(r + 1/2 - |p - c|, 0, 1) at every pixel centre p = (j + 1/2, i + 1/2): centres (..., 2) -> (..., L, L)."""
    grid = torch.arange(size, dtype=dtype) + 0.5  # (L,) pixel centres
    c = centres.to(dtype)
    dx2 = (grid - c[..., 0:1]).square()  # (..., L): along x (columns)
    dy2 = (grid - c[..., 1:2]).square()  # (..., L): along y (rows)
    dist = (dy2[..., :, None] + dx2[..., None, :]).sqrt_()  # (..., L rows, L cols)
    return dist.neg_().add_(radius + 0.5).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------
# Checks (one clear error, before any work)
# ----------------------------------------------------------------------------------------


def check_count(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")


def validate_geometry(size: int, radius: float, speed: float, prefix: str = "") -> None:
    """size >= 2 integer; the ball fits the frame (0 < radius < size / 2); speed > 0."""
    if int(size) != size or size < 2:
        raise ValueError(f"{prefix}size must be an integer >= 2 (the frame side in pixels); got {size}")
    if not 0 < radius < size / 2:
        raise ValueError(
            f"{prefix}radius must satisfy 0 < radius < size / 2 = {size / 2:g} so the ball fits the "
            f"{size} x {size} frame; got {radius}"
        )
    if not speed > 0:
        raise ValueError(f"{prefix}speed must be > 0 pixels per frame (a ball at speed 0 never moves); got {speed}")
