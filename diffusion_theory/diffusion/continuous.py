"""The continuous variance-preserving (Ornstein-Uhlenbeck) forward process of paper 2.

Paper 2, Sec. 2 (Forward):   dX_t = -1/2 X_t dt + dW_t,   t in [0, T],
whose marginal is
    X_t = alpha_t X_0 + sigma_t E,   alpha_t = e^{-t/2},  sigma_t = sqrt(1 - e^{-t})       (paper 2 (GP) eq. (2))
so that abar_t = alpha_t^2 = e^{-t}. Training draws t ~ Unif[t0, T] with an early-stopping
time t0 > 0 (Sec. 5, paper 2 (GP) eq. (6)); sampling integrates the backward process from T down to t0
(see ``samplers.reverse_sde_euler_maruyama`` and ``samplers.probability_flow_ode``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from diffusion_theory.diffusion.schedules import NoiseSchedule

TimeSpacing = Literal["uniform", "log"]
ContinuousTimeSampling = Literal["uniform", "ddpm_linear"]


class ContinuousVPSchedule(NoiseSchedule):
    """Paper 2's forward process: alpha_t = e^{-t/2}, sigma_t = sqrt(1 - e^{-t}), t in [t0, T].

    Args:
        T: terminal time. At T = 10, abar_T = e^{-10} ~ 4.5e-5, so X_T is N(0, I) to 5e-5.
        t0: early-stopping time (paper 2 (GP) eq. (6)); training times and the sampler's last
            time are never below it.
        model_time_scale: the network embeds ``model_time(t) = t * model_time_scale / T``;
            the default 1000 puts t in [0, 1000], the range of the discrete DiT steps, so the
            sinusoidal timestep embedding (periods up to 10^4) sees the same spread of inputs.
        n_eval_times: size of the fixed grid of times at which validation measures every
            evaluation sample (``eval_times``).
        eval_spacing: that grid from t0 to T, ``log`` (equal steps in log t, the default: the
            score changes fastest near t0) or ``uniform``. Validation averages over this grid,
            so ``val/ddpm_loss`` weights the times equally on it, not like Unif[t0, T].
        time_sampling: the distribution of the training times. ``uniform`` (the default): t ~ Unif[t0, T],
            paper 2 (GP) eq. (6). ``ddpm_linear``: the noise levels of a 1000-step DDPM with beta linear from
            ``beta_start`` to ``beta_end`` (Ho et al. 2020, the schedule paper 2 trains with in Sec. 6), in the
            continuous limit: t(u) = b0 u + (b1 - b0) u^2 / 2 with b0 = 1000 beta_start, b1 = 1000 beta_end and
            u uniform on the u-range that maps to [t0, T] (``ddpm_linear_time``). Under it about 10 % of the
            training draws have abar > 0.9, against about 1 % under ``uniform`` (``fraction_above``).
        beta_start, beta_end: the DDPM's per-step betas of ``ddpm_linear`` (defaults: 1e-4, 0.02).

    Times are float tensors of any shape; ``alpha_bar``, ``alpha`` and ``sigma`` return float64
    (like ``DiscreteSchedule.alpha_bar``).
    """

    discrete = False

    def __init__(
        self,
        T: float = 10.0,
        t0: float = 1e-3,
        model_time_scale: float = 1000.0,
        n_eval_times: int = 20,
        eval_spacing: TimeSpacing = "log",
        time_sampling: ContinuousTimeSampling = "uniform",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ):
        super().__init__()
        if not (T > t0 > 0):
            raise ValueError(
                f"schedule.T must be > t0 > 0 (terminal time above the early-stopping time); got T={T}, t0={t0}"
            )
        if not model_time_scale > 0:
            raise ValueError(f"schedule.model_time_scale must be > 0; got {model_time_scale}")
        if n_eval_times < 1:
            raise ValueError(f"schedule.n_eval_times must be >= 1; got {n_eval_times}")
        if eval_spacing not in ("uniform", "log"):
            raise ValueError(f"schedule.eval_spacing must be 'uniform' or 'log'; got {eval_spacing!r}")
        if time_sampling not in ("uniform", "ddpm_linear"):
            raise ValueError(f"schedule.time_sampling must be 'uniform' or 'ddpm_linear'; got {time_sampling!r}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"schedule: need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}")
        self.T = float(T)
        self.t0 = float(t0)
        self.time_sampling: ContinuousTimeSampling = time_sampling
        self.b0, self.b1 = 1000.0 * float(beta_start), 1000.0 * float(beta_end)
        self.model_time_scale = float(model_time_scale)
        self.n_eval_times = int(n_eval_times)
        self.eval_spacing: TimeSpacing = eval_spacing

    # ------------------------------------------------------------------ marginal coefficients
    def alpha_bar(self, t: Tensor) -> Tensor:  # (...) -> (...)
        """abar_t = e^{-t}."""
        return torch.exp(-_f64(t))

    def alpha(self, t: Tensor) -> Tensor:  # (...) -> (...)
        """alpha_t = e^{-t/2} (paper 2 (GP) eq. (2))."""
        return torch.exp(-0.5 * _f64(t))

    def sigma(self, t: Tensor) -> Tensor:  # (...) -> (...)
        """sigma_t = sqrt(1 - e^{-t}) (paper 2 (GP) eq. (2)), computed as sqrt(-expm1(-t)) for small t."""
        return torch.sqrt(-torch.expm1(-_f64(t)))

    # ------------------------------------------------------------------ times
    def sample_times(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """n training times, float32, shape (n,): t ~ Unif[t0, T] (paper 2 (GP) eq. (6)) for ``uniform``; for
        ``ddpm_linear`` t = ddpm_linear_time(u), u ~ Unif[u(t0), u(T)]."""
        u = torch.rand(n, generator=generator, device=device)
        if self.time_sampling == "uniform":
            return self.t0 + (self.T - self.t0) * u
        lo, hi = self.ddpm_linear_u(self.t0), self.ddpm_linear_u(self.T)
        return self.ddpm_linear_time(lo + (hi - lo) * u.double()).float()

    def ddpm_linear_time(self, u: Tensor) -> Tensor:  # (...) -> (...)
        """t(u) = b0 u + (b1 - b0) u^2 / 2: -log abar of a DDPM with beta linear in the step, at step 1000 u
        (the continuous limit of prod_k (1 - beta_k), the VP-SDE of Song et al. 2021 with beta_min = b0,
        beta_max = b1)."""
        return self.b0 * u + 0.5 * (self.b1 - self.b0) * u * u

    def ddpm_linear_u(self, t: float) -> float:
        """The inverse of ``ddpm_linear_time`` on u >= 0."""
        a = 0.5 * (self.b1 - self.b0)
        if a == 0:
            return t / self.b0
        return (-self.b0 + math.sqrt(self.b0 * self.b0 + 4.0 * a * t)) / (2.0 * a)

    def fraction_above(self, alpha_bar: float) -> float:
        """The share of training times with abar_t > ``alpha_bar`` (closed form, either time sampling)."""
        t = min(max(-math.log(alpha_bar), self.t0), self.T)  # abar_t > a  <=>  t < -log a
        if self.time_sampling == "uniform":
            return (t - self.t0) / (self.T - self.t0)
        lo, hi = self.ddpm_linear_u(self.t0), self.ddpm_linear_u(self.T)
        return (self.ddpm_linear_u(t) - lo) / (hi - lo)

    def eval_times(self) -> Tensor:
        """The validation grid: ``n_eval_times`` times from t0 to T (ascending), float32, shape (n_t,).

        ``log`` spacing: t_k = t0 (T / t0)^{k / (n - 1)}; ``uniform``: t_k = t0 + (T - t0) k / (n - 1).
        A single time (n_eval_times = 1) is the geometric (log) or arithmetic (uniform) middle.
        """
        n = self.n_eval_times
        if n == 1:
            mid = math.sqrt(self.t0 * self.T) if self.eval_spacing == "log" else 0.5 * (self.t0 + self.T)
            return torch.tensor([mid], dtype=torch.float32)
        return self.time_grid(n - 1, self.eval_spacing).flip(0).float()

    def model_time(self, t: Tensor) -> Tensor:
        """The float the network embeds: t * model_time_scale / T (in [0, 1000] by default)."""
        return t.float() * (self.model_time_scale / self.T)

    def time_grid(self, n_steps: int, spacing: TimeSpacing = "uniform", device=None) -> Tensor:
        """Backward time grid T = t_0' > t_1' > ... > t_{n_steps}' = t0, float64, shape (n_steps + 1,).

        ``uniform``: equal steps in t. ``log``: equal steps in log t (finer near t0, where the
        score changes fastest).
        """
        if n_steps < 1:
            raise ValueError(f"sampler.n_steps must be >= 1; got {n_steps}")
        if spacing == "uniform":
            return torch.linspace(self.T, self.t0, n_steps + 1, dtype=torch.float64, device=device)
        if spacing == "log":
            grid = torch.logspace(
                math.log10(self.T), math.log10(self.t0), n_steps + 1, dtype=torch.float64, device=device
            )
            grid[0], grid[-1] = self.T, self.t0  # exact end points
            return grid
        raise ValueError(f"sampler.spacing must be 'uniform' or 'log'; got {spacing!r}")

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, t0={self.t0}, model_time_scale={self.model_time_scale}, "
            f"n_eval_times={self.n_eval_times}, eval_spacing={self.eval_spacing!r}, "
            f"time_sampling={self.time_sampling!r}"
        )


def _f64(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t).to(torch.float64)
