"""Samplers driven by a noise predictor eps_fn(x_t, t) ~ E[E | X^t = x_t].

Conventions shared by every sampler:

* ``eps_fn(x_t, t)`` gets the batch x_t (B, ...) and the schedule's native time as a (B,)
  tensor (int64 steps in {1..T} for a ``DiscreteSchedule``, float64 times in [t0, T] for a
  ``ContinuousVPSchedule``); the caller applies ``schedule.model_time`` before its network.
* ``callback(step_index, t, x_t)`` is called at backward step k = 0, 1, ..., n_steps - 1 with
  the state BEFORE the step's update (x at time t_k, the time eps_fn is evaluated at), and a
  last time with k = n_steps, the final time and the returned sample. ``callback_steps``
  restricts the calls to those indices. A diagnostic that needs the network's attention at a
  step re-runs the network on (x_t, t) inside the callback, so the sampling path itself never
  pays for recording.
* ``x_T`` (optional) is the starting state; by default x_T ~ N(0, I) (drawn with
  ``generator``, on ``device``, in float32). ``generator`` also draws every later noise, so it
  must live on the device of the states (a CPU generator for CPU sampling).
* ``progress=True`` shows a tqdm bar over the steps.
* Arithmetic on the coefficients is float64; states keep x_T's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule, TimeSpacing
from diffusion_theory.diffusion.schedules import DiscreteSchedule

EpsFn = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, Tensor, Tensor], None]


# ----------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------


def _initial_state(
    shape: Sequence[int], x_T: Tensor | None, generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have the requested shape {tuple(shape)}; got {tuple(x_T.shape)}")
        return x_T.to(device) if device is not None else x_T
    return torch.randn(*shape, generator=generator, device=device)


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _notify(callback: StepCallback | None, callback_steps: Container[int] | None, k: int, t: Tensor, x: Tensor) -> None:
    if callback is not None and (callback_steps is None or k in callback_steps):
        callback(k, t, x)


def _batch_time(value: Tensor | float, x: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.full((x.shape[0],), float(value), dtype=dtype, device=x.device)


def _bcast(c: Tensor | float, x: Tensor) -> Tensor:
    """A float64 scalar coefficient as x's dtype, ready to broadcast."""
    return torch.as_tensor(c, dtype=torch.float64).to(device=x.device, dtype=x.dtype)


def respaced_steps(T: int, n_steps: int | None) -> list[int]:
    """n_steps evenly spaced integer steps of {1..T}, descending from T (DiT's respacing).

    n_steps=None or T gives every step T, T-1, ..., 1.
    """
    if n_steps is None:
        n_steps = T
    if not 1 <= n_steps <= T:
        raise ValueError(f"sampler.n_steps must lie in [1, T] = [1, {T}] for a discrete schedule; got {n_steps}")
    if n_steps == 1:
        return [T]
    # 1 + floor(i (T - 1) / (n_steps - 1)), i = n_steps - 1, ..., 0: strictly decreasing from T to 1.
    return [1 + (i * (T - 1)) // (n_steps - 1) for i in range(n_steps - 1, -1, -1)]


# ----------------------------------------------------------------------------------------
# Discrete schedules: DDPM ancestral sampling and DDIM
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def ddpm_ancestral(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    shape: Sequence[int],
    n_steps: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: Tensor | None = None,
    variance: Literal["posterior", "beta"] = "posterior",
    callback: StepCallback | None = None,
    callback_steps: Container[int] | None = None,
    progress: bool = False,
) -> Tensor:
    """Ancestral sampling of the reverse chain (Ho et al., 2020, Alg. 2), on the respaced steps.

    With steps t_0 = T > t_1 > ... > t_{K-1} >= 1 (all T steps when n_steps is None) and
    s the next step (abar_0 = 1 after the last one), per-step alpha = abar_t / abar_s, beta = 1 - alpha:

        x_s = 1/sqrt(alpha) (x_t - beta / sqrt(1 - abar_t) eps(x_t, t)) + sigma z,   z ~ N(0, I)
        sigma^2 = beta (1 - abar_s) / (1 - abar_t)   (``posterior``, the true reverse variance)
                  or beta                             (``beta``);  no noise on the last step.

    Returns x at time 0, shape ``shape``.
    """
    if variance not in ("posterior", "beta"):
        raise ValueError(f"sampler.variance must be 'posterior' or 'beta'; got {variance!r}")
    steps = respaced_steps(schedule.T, n_steps)
    abars = schedule.alpha_bars.to(torch.float64).cpu()
    x = _initial_state(shape, x_T, generator, device)
    for k, t in enumerate(tqdm(steps, disable=not progress, desc="ddpm")):
        t_batch = _batch_time(t, x, torch.long)
        _notify(callback, callback_steps, k, t_batch, x)
        abar_t = abars[t - 1]
        abar_s = abars[steps[k + 1] - 1] if k + 1 < len(steps) else torch.tensor(1.0, dtype=torch.float64)
        alpha = abar_t / abar_s
        beta = 1 - alpha
        eps = eps_fn(x, t_batch)
        x = (x - _bcast(beta / (1 - abar_t).sqrt(), x) * eps) / _bcast(alpha.sqrt(), x)
        if k + 1 < len(steps):
            var = beta * (1 - abar_s) / (1 - abar_t) if variance == "posterior" else beta
            x = x + _bcast(var.sqrt(), x) * _noise_like(x, generator)
    _notify(callback, callback_steps, len(steps), _batch_time(0, x, torch.long), x)
    return x


@torch.no_grad()
def ddim(
    eps_fn: EpsFn,
    schedule: DiscreteSchedule,
    shape: Sequence[int],
    n_steps: int | None = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: Tensor | None = None,
    callback: StepCallback | None = None,
    callback_steps: Container[int] | None = None,
    progress: bool = False,
) -> Tensor:
    """DDIM (Song et al., 2021, eq. 12) on n_steps respaced steps; eta = 0 is deterministic.

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        sigma  = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
        x_s    = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z

    with s the next step (abar_s = 1 after the last one, which returns x0_hat). eta = 1 gives
    DDPM ancestral sampling with the posterior variance.
    """
    if eta < 0:
        raise ValueError(f"sampler.eta must be >= 0; got {eta}")
    steps = respaced_steps(schedule.T, n_steps)
    abars = schedule.alpha_bars.to(torch.float64).cpu()
    x = _initial_state(shape, x_T, generator, device)
    for k, t in enumerate(tqdm(steps, disable=not progress, desc="ddim")):
        t_batch = _batch_time(t, x, torch.long)
        _notify(callback, callback_steps, k, t_batch, x)
        abar_t = abars[t - 1]
        abar_s = abars[steps[k + 1] - 1] if k + 1 < len(steps) else torch.tensor(1.0, dtype=torch.float64)
        eps = eps_fn(x, t_batch)
        x0_hat = (x - _bcast((1 - abar_t).sqrt(), x) * eps) / _bcast(abar_t.sqrt(), x)
        sigma = eta * ((1 - abar_s) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_s).sqrt()
        x = _bcast(abar_s.sqrt(), x) * x0_hat + _bcast((1 - abar_s - sigma**2).clamp_min(0).sqrt(), x) * eps
        if sigma > 0:
            x = x + _bcast(sigma, x) * _noise_like(x, generator)
    _notify(callback, callback_steps, len(steps), _batch_time(0, x, torch.long), x)
    return x


# ----------------------------------------------------------------------------------------
# Continuous VP process (paper 2): reverse SDE and probability-flow ODE
# ----------------------------------------------------------------------------------------


def _score(eps_fn: EpsFn, schedule: ContinuousVPSchedule, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """(score, t_batch) with score = -eps(x, t) / sigma_t."""
    t_batch = _batch_time(t, x, torch.float64)
    eps = eps_fn(x, t_batch)
    return -eps / _bcast(schedule.sigma(torch.tensor(t)), x), t_batch


def _tweedie_x0(x: Tensor, score: Tensor, schedule: ContinuousVPSchedule, t: float) -> Tensor:
    """E[X_0 | X_t = x] = (x + sigma_t^2 score) / alpha_t."""
    t = torch.tensor(t, dtype=torch.float64)
    return (x + _bcast(schedule.sigma(t) ** 2, x) * score) / _bcast(schedule.alpha(t), x)


@torch.no_grad()
def reverse_sde_euler_maruyama(
    eps_fn: EpsFn,
    schedule: ContinuousVPSchedule,
    shape: Sequence[int],
    n_steps: int = 1000,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: Tensor | None = None,
    spacing: TimeSpacing = "uniform",
    denoise_final: bool = False,
    callback: StepCallback | None = None,
    callback_steps: Container[int] | None = None,
    progress: bool = False,
) -> Tensor:
    """Euler-Maruyama on paper 2's backward SDE (Sec. 2, Backward), from T down to t0:

        dX = [X / 2 + grad log p_t(X)] dt + dW,   grad log p_t(x) = -eps(x, t) / sigma_t,
        x <- x + h (x / 2 + score(x, t_k)) + sqrt(h) z,   h = t_k - t_{k+1},  z ~ N(0, I).

    Returns a sample of (approximately) P_{t0} (the early-stopped law P~_0 of Theorem 2), or with
    ``denoise_final`` the Tweedie estimate E[X_0 | X_{t0}] = (x + sigma^2 score) / alpha.
    """
    times = schedule.time_grid(n_steps, spacing).tolist()
    x = _initial_state(shape, x_T, generator, device)
    for k in tqdm(range(n_steps), disable=not progress, desc="reverse SDE"):
        t, t_next = times[k], times[k + 1]
        _notify(callback, callback_steps, k, _batch_time(t, x, torch.float64), x)
        score, _ = _score(eps_fn, schedule, x, t)
        h = t - t_next
        x = x + h * (0.5 * x + score) + h**0.5 * _noise_like(x, generator)
    if denoise_final:
        x = _tweedie_x0(x, _score(eps_fn, schedule, x, times[-1])[0], schedule, times[-1])
    _notify(callback, callback_steps, n_steps, _batch_time(times[-1], x, torch.float64), x)
    return x


@torch.no_grad()
def probability_flow_ode(
    eps_fn: EpsFn,
    schedule: ContinuousVPSchedule,
    shape: Sequence[int],
    n_steps: int = 100,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: Tensor | None = None,
    spacing: TimeSpacing = "uniform",
    method: Literal["euler", "heun"] = "heun",
    denoise_final: bool = False,
    callback: StepCallback | None = None,
    callback_steps: Container[int] | None = None,
    progress: bool = False,
) -> Tensor:
    """The probability-flow ODE of the forward process dX = -X/2 dt + dW (Song et al., 2021b),
    integrated backward from T to t0:

        dx/dt = -x / 2 - score(x, t) / 2,   score = -eps(x, t) / sigma_t,

    i.e. with f(x, t) = x / 2 + score / 2 and h = t_k - t_{k+1}:
        euler: x <- x + h f(x, t_k)
        heun:  x' = x + h f(x, t_k);  x <- x + h/2 (f(x, t_k) + f(x', t_{k+1}))   (2 evaluations/step)

    Deterministic given x_T. Returns x at t0 (or the Tweedie x0 estimate with ``denoise_final``).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"sampler.method must be 'euler' or 'heun'; got {method!r}")
    times = schedule.time_grid(n_steps, spacing).tolist()
    x = _initial_state(shape, x_T, generator, device)

    def drift(state: Tensor, t: float) -> Tensor:
        score, _ = _score(eps_fn, schedule, state, t)
        return 0.5 * state + 0.5 * score

    for k in tqdm(range(n_steps), disable=not progress, desc="PF-ODE"):
        t, t_next = times[k], times[k + 1]
        _notify(callback, callback_steps, k, _batch_time(t, x, torch.float64), x)
        h = t - t_next
        f = drift(x, t)
        if method == "euler":
            x = x + h * f
        else:
            x_pred = x + h * f
            x = x + 0.5 * h * (f + drift(x_pred, t_next))
    if denoise_final:
        x = _tweedie_x0(x, _score(eps_fn, schedule, x, times[-1])[0], schedule, times[-1])
    _notify(callback, callback_steps, n_steps, _batch_time(times[-1], x, torch.float64), x)
    return x


# ----------------------------------------------------------------------------------------
# Registry: samplers by name, defaults, and the times at which they call back
# ----------------------------------------------------------------------------------------

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": ddpm_ancestral,
    "ddim": ddim,
    "sde": reverse_sde_euler_maruyama,
    "ode": probability_flow_ode,
}
DISCRETE_ONLY = ("ddpm", "ddim")


def resolve_sampler(name: str, discrete: bool) -> str:
    """``auto`` -> ddpm (discrete) / sde (continuous); checks that the sampler fits the schedule."""
    if name == "auto":
        return "ddpm" if discrete else "sde"
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of auto, {', '.join(SAMPLERS)}; got {name!r}")
    if (name in DISCRETE_ONLY) != discrete:
        kind = "a discrete" if discrete else "a continuous"
        fits = "ddpm, ddim" if discrete else "sde, ode"
        raise ValueError(f"sampler {name!r} does not fit {kind} schedule; use one of {fits} (or auto)")
    return name


def default_steps(schedule: DiscreteSchedule | ContinuousVPSchedule, sampler: str) -> int | None:
    """The paper's 1000 backward steps: all T steps of a discrete chain for ddpm (None), 50 for ddim,
    1000 for a continuous process."""
    if sampler in DISCRETE_ONLY:
        return None if sampler == "ddpm" else 50
    return 1000


def callback_times(
    schedule: DiscreteSchedule | ContinuousVPSchedule, n_steps: int | None, spacing: TimeSpacing = "uniform"
) -> Tensor:
    """The schedule's native time of the state a sampler hands to ``callback`` at step k = 0 .. K: (K + 1,).

    Discrete: the respaced steps T = t_0 > ... > t_{K-1} >= 1, then 0 (the returned sample; abar_0 = 1).
    Continuous: the backward grid ``time_grid(n_steps, spacing)``, T down to t0.
    """
    if schedule.discrete:
        return torch.tensor(respaced_steps(schedule.T, n_steps) + [0], dtype=torch.long)
    if n_steps is None:
        raise ValueError("sampler.n_steps must be set for a continuous schedule")
    return schedule.time_grid(n_steps, spacing)


def alpha_bar_at(schedule: DiscreteSchedule | ContinuousVPSchedule, times: Tensor) -> Tensor:
    """abar of native times, float64, with abar = 1 at the discrete time 0 (the clean end)."""
    if schedule.discrete:
        abar = schedule.alpha_bars.to(torch.float64).cpu()
        t = times.long().cpu()
        return torch.where(t > 0, abar[(t - 1).clamp_min(0)], torch.ones((), dtype=torch.float64))
    return schedule.alpha_bar(times).to(torch.float64).cpu()


# ----------------------------------------------------------------------------------------
# Backward steps of another chain, matched by noise level
# ----------------------------------------------------------------------------------------


def reference_alpha_bar(
    steps: Sequence[int], reference_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """abar of the state after k backward steps of a reference DDPM, for each k of ``steps``: (len(steps),) float64.

    The reference is the linear-beta chain of Ho et al. and the DiT code base (beta_t linear in
    [beta_start, beta_end], T = reference_steps), the chain paper 2's Fig. 5 and Fig. 12 count steps in:
    after k of T backward steps the state is at forward step T - k, abar_{T-k} = prod_{i <= T-k} (1 - beta_i),
    with abar_0 = 1 (k = T: the generated sample).
    """
    if reference_steps < 1:
        raise ValueError(f"reference_steps must be >= 1; got {reference_steps}")
    if any(not 0 <= int(k) <= reference_steps for k in steps):
        raise ValueError(f"steps must lie in [0, reference_steps = {reference_steps}]; got {list(steps)}")
    betas = torch.linspace(beta_start, beta_end, reference_steps, dtype=torch.float64)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])  # (T + 1,), abar[t]
    return abar[[reference_steps - int(k) for k in steps]]


def steps_at_noise_levels(target_abar: Tensor, grid_abar: Tensor) -> list[int]:
    """For each target abar, the index k of the grid point with the nearest noise level (|log abar| distance,
    i.e. nearest time for the VP process abar_t = e^{-t}); targets beyond the grid map to its ends."""
    target = target_abar.to(torch.float64).clamp_min(1e-300).log()  # (S,)
    grid = grid_abar.to(torch.float64).clamp_min(1e-300).log()  # (K + 1,)
    return (target[:, None] - grid[None]).abs().argmin(1).tolist()
