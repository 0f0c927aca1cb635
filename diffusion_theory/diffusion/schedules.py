"""Noise schedules: one interface for discrete DDPM chains and continuous VP processes.

Every schedule describes the forward marginal

    X^t = sqrt(abar_t) X^0 + sqrt(1 - abar_t) E,      E ~ N(0, I)        (paper 1 (MTGM) eq. (2))

and knows how to draw training times. Discrete schedules index t in {1, ..., T}
(integer tensors); continuous ones take t in [t0, T] (float tensors).

- ``LinearAlphaSchedule``: paper 1, Sec. 5.1: alpha_t linear from alpha_1 to alpha_T,
  abar_t = prod_{i<=t} alpha_i.
- ``LinearBetaSchedule``: Ho et al. / the DiT code base: beta linear in [1e-4, 0.02], T = 1000.
- ``ContinuousVPSchedule`` (in ``continuous.py``): paper 2, alpha_t = e^{-t/2}.
"""

from __future__ import annotations

import abc
from typing import Literal

import torch
from torch import Tensor

from diffusion_theory.init_config import RecordsInitArgs  # checkpoints record the constructor arguments

TimeSampling = Literal["uniform", "first", "last"]
EvalSpacing = Literal["log_snr", "alpha_bar"]


class NoiseSchedule(RecordsInitArgs, torch.nn.Module, abc.ABC):
    """Interface shared by discrete and continuous schedules (abstract: subclasses implement the three methods)."""

    discrete: bool = True

    @abc.abstractmethod
    def alpha_bar(self, t: Tensor) -> Tensor:  # (B,) -> (B,)
        """abar_t for each time t."""

    @abc.abstractmethod
    def sample_times(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """n training times drawn from the schedule's training distribution. (n,)"""

    @abc.abstractmethod
    def eval_times(self) -> Tensor:
        """The times at which evaluation measures every sample. (n_t,)"""

    def model_time(self, t: Tensor) -> Tensor:
        """The scalar a network embeds for time t (float)."""
        return t.float()

    def add_noise(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward marginal, paper 1 (MTGM) eq. (2): X^t = sqrt(abar_t) X^0 + sqrt(1 - abar_t) E."""
        abar = self.alpha_bar(t).to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


class DiscreteSchedule(NoiseSchedule):
    """A discrete chain given by its per-step alphas; t in {1, ..., T}.

    Args:
        alphas: (T,) per-step alpha_t = 1 - beta_t, each in (0, 1).
        time_sampling: which steps training draws from (paper 1, Fig. 2D):
            ``uniform`` over [T], ``first`` = the first 40 % of steps, ``last`` = the last 40 %.
        n_eval_steps: the evaluation grid (``eval_times``): null (the default) = every step of the training
            range; n = n distinct steps of that range, evenly spaced in noise level (``eval_spacing``), always
            including its first and last step. A 1000-step image DDPM validates on e.g. 20 steps.
        eval_spacing: the noise level the n steps are evenly spaced in: ``log_snr`` (default), equal steps of
            log(abar_t / (1 - abar_t)), dense at both ends of the chain where a linear schedule's noise level
            changes fastest; or ``alpha_bar``, equal steps of abar_t (sparse near t = 1).
    """

    discrete = True

    def __init__(
        self,
        alphas: Tensor,
        time_sampling: TimeSampling = "uniform",
        fraction: float = 0.4,
        n_eval_steps: int | None = None,
        eval_spacing: EvalSpacing = "log_snr",
    ):
        super().__init__()
        alphas = torch.as_tensor(alphas, dtype=torch.float64)
        if alphas.dim() != 1 or alphas.numel() < 1:
            raise ValueError("schedule: T must be >= 1 (got an empty alpha sequence)")
        if not bool(((alphas > 0) & (alphas < 1)).all()):
            raise ValueError(
                f"schedule: every alpha_t must lie in (0, 1); got min {alphas.min():.4g}, max {alphas.max():.4g}"
            )
        if time_sampling not in ("uniform", "first", "last"):
            raise ValueError(f"schedule.time_sampling must be one of uniform, first, last; got {time_sampling!r}")
        if not 0 < fraction <= 1:
            raise ValueError(f"schedule.fraction must lie in (0, 1]; got {fraction}")
        self.T = int(alphas.numel())
        self.time_sampling = time_sampling
        self.fraction = fraction
        self.register_buffer("alphas", alphas, persistent=False)
        self.register_buffer("alpha_bars", torch.cumprod(alphas, 0), persistent=False)  # (T,)
        if eval_spacing not in ("log_snr", "alpha_bar"):
            raise ValueError(f"schedule.eval_spacing must be 'log_snr' or 'alpha_bar'; got {eval_spacing!r}")
        lo, hi = self.time_range
        if n_eval_steps is not None and (int(n_eval_steps) != n_eval_steps or not 1 <= n_eval_steps <= hi - lo + 1):
            raise ValueError(
                f"schedule.n_eval_steps must be null (every step) or an integer in [1, {hi - lo + 1}] "
                f"(the number of training steps, {lo}..{hi}); got {n_eval_steps}"
            )
        self.n_eval_steps = None if n_eval_steps is None else int(n_eval_steps)
        self.eval_spacing: EvalSpacing = eval_spacing

    def alpha_bar(self, t: Tensor) -> Tensor:  # t: (B,) ints in [1, T]
        return self.alpha_bars.to(t.device)[t.long() - 1]

    @property
    def time_range(self) -> tuple[int, int]:
        """Inclusive range [lo, hi] of the training times."""
        k = max(1, int(round(self.fraction * self.T)))
        if self.time_sampling == "first":
            return 1, k
        if self.time_sampling == "last":
            return self.T - k + 1, self.T
        return 1, self.T

    def sample_times(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        lo, hi = self.time_range
        return torch.randint(lo, hi + 1, (n,), generator=generator, device=device)

    def eval_times(self) -> Tensor:
        """The evaluation grid, ascending int64 steps (n_t,), within the training range (all of [T] for ``uniform``).

        Default (``n_eval_steps`` null): every step of the training range, so evaluation averages exactly over
        the training distribution of t and the loss is paper 1 (MTGM) eq. (3) of the objective being trained
        (Fig. 2D compares strategies by the excess risk of their own objective; steps never trained keep their
        initial v_t). With ``n_eval_steps`` = n: ``noise_level_grid`` of the range."""
        lo, hi = self.time_range
        steps = torch.arange(lo, hi + 1)
        if self.n_eval_steps is None or self.n_eval_steps == steps.numel():
            return steps
        level = self.noise_level(steps)
        return steps[noise_level_grid(level, self.n_eval_steps)]

    def noise_level(self, t: Tensor) -> Tensor:
        """The quantity ``eval_spacing`` spaces evenly: log(abar_t / (1 - abar_t)) or abar_t, float64 (decreasing in t)."""
        abar = self.alpha_bar(t)
        return torch.log(abar) - torch.log1p(-abar) if self.eval_spacing == "log_snr" else abar

    def snr(self) -> Tensor:
        """abar_t / (1 - abar_t) for every t (Luo, 2022)."""
        return self.alpha_bars / (1 - self.alpha_bars)


class LinearAlphaSchedule(DiscreteSchedule):
    """Paper 1, Sec. 5.1: alpha_t = alpha_1 - (alpha_1 - alpha_T)(t - 1)/(T - 1), abar_t = prod alpha_i."""

    def __init__(
        self,
        T: int = 50,
        alpha_1: float = 0.98,
        alpha_T: float = 0.95,
        time_sampling: TimeSampling = "uniform",
        fraction: float = 0.4,
        n_eval_steps: int | None = None,
        eval_spacing: EvalSpacing = "log_snr",
    ):
        if T < 1:
            raise ValueError(f"schedule.T must be >= 1; got {T}")
        for name, a in (("alpha_1", alpha_1), ("alpha_T", alpha_T)):
            if not 0 < a < 1:
                raise ValueError(f"schedule.{name} must lie in (0, 1); got {a}")
        if T == 1:
            alphas = torch.tensor([alpha_1], dtype=torch.float64)
        else:
            s = torch.arange(T, dtype=torch.float64) / (T - 1)
            alphas = alpha_1 - (alpha_1 - alpha_T) * s
        super().__init__(alphas, time_sampling, fraction, n_eval_steps, eval_spacing)


class LinearBetaSchedule(DiscreteSchedule):
    """Ho et al. (2020) and the DiT code base: beta_t linear from beta_start to beta_end over T steps."""

    def __init__(
        self,
        T: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        time_sampling: TimeSampling = "uniform",
        fraction: float = 0.4,
        n_eval_steps: int | None = None,
        eval_spacing: EvalSpacing = "log_snr",
    ):
        if T < 1:
            raise ValueError(f"schedule.T must be >= 1; got {T}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"schedule: need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        super().__init__(1 - betas, time_sampling, fraction, n_eval_steps, eval_spacing)


def noise_level_grid(level: Tensor, n: int) -> Tensor:
    """Indices of n distinct entries of a monotone sequence ``level`` (m,), n <= m, evenly spaced in its value.

    Targets level[0] + (level[-1] - level[0]) k / (n - 1), k = 0..n-1 (the midpoint for n = 1); each takes the
    nearest entry, then collisions (where the level changes by more than one target step per entry) are pushed
    apart to the next free entries, keeping the ends: the result is ascending, distinct, and contains 0 and
    m - 1 for n >= 2. Returns int64 (n,).
    """
    m = level.numel()
    if not 1 <= n <= m:
        raise ValueError(f"noise_level_grid: need 1 <= n <= {m}; got {n}")
    level = level.double()
    if n == 1:
        targets = (level[:1] + level[-1:]) / 2
    else:
        targets = torch.linspace(float(level[0]), float(level[-1]), n, dtype=torch.float64)
    idx = (level.view(1, -1) - targets.view(-1, 1)).abs().argmin(1).tolist()  # nearest entry of each target
    for k in range(1, n):  # distinct and ascending, from the left
        idx[k] = max(idx[k], idx[k - 1] + 1)
    for k in range(n - 1, -1, -1):  # within [0, m - 1], from the right
        idx[k] = min(idx[k], m - 1 - (n - 1 - k))
    return torch.tensor(idx, dtype=torch.int64)
