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
        self.T = float(T)
        self.t0 = float(t0)
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
        """n training times t ~ Unif[t0, T] (paper 2 (GP) eq. (6)), float32, shape (n,)."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t0 + (self.T - self.t0) * u

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
            f"n_eval_times={self.n_eval_times}, eval_spacing={self.eval_spacing!r}"
        )


def _f64(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t).to(torch.float64)
