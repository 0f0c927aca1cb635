"""Generation with a trained ``DiffusionModule``: its (EMA) network drives one of the samplers.

    eps_fn(x_t, t) = inference_network(x_t, schedule.model_time(t))        (noise prediction)

Samplers (``diffusion.samplers``): ``ddpm`` (ancestral, Ho et al. Alg. 2) and ``ddim`` for discrete
schedules; ``sde`` (Euler-Maruyama on paper 2's backward SDE, Sec. 2) and ``ode`` (probability flow)
for ``ContinuousVPSchedule``. ``auto`` picks ddpm or sde. ``generate_chunks`` splits a large request
into fixed chunks with their own seeds, so that which process draws which chunk (DDP) does not change
the samples.
"""
from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from typing import Any

import torch
from torch import Tensor

from diffusion_theory.diffusion import samplers

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": samplers.ddpm_ancestral,
    "ddim": samplers.ddim,
    "sde": samplers.reverse_sde_euler_maruyama,
    "ode": samplers.probability_flow_ode,
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


def sample_shape(module: Any, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of one sample: ``shape`` if given, else the network's ``input_shape`` (DiT)."""
    if shape is not None:
        return tuple(int(s) for s in shape)
    net_shape = getattr(module.inference_network, "input_shape", None)
    if net_shape is None:
        raise ValueError(f"sample: pass shape=(...) (the network {type(module.inference_network).__name__} "
                         f"has no input_shape)")
    return tuple(int(s) for s in net_shape)


def default_steps(schedule: Any, sampler: str) -> int | None:
    """The paper's 1000 backward steps: all T steps of a discrete chain for ddpm (None), 50 for ddim,
    1000 for a continuous process."""
    if sampler in DISCRETE_ONLY:
        return None if sampler == "ddpm" else 50
    return 1000


@torch.no_grad()
def generate(module: Any, n: int, sampler: str = "auto", n_steps: int | None = None,
             generator: torch.Generator | None = None, callback: samplers.StepCallback | None = None,
             callback_steps: Container[int] | None = None, shape: tuple[int, ...] | None = None,
             progress: bool = True, **sampler_kwargs: Any) -> Tensor:
    """n samples (n, *shape) from ``module.inference_network`` on the module's device.

    ``generator`` must live on that device (a CPU generator for CPU sampling); ``callback(k, t, x_t)``
    and ``callback_steps`` are passed to the sampler (k = backward step index, 0 .. n_steps);
    ``progress`` shows a tqdm bar over the steps.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"sample: n must be an integer >= 1; got {n}")
    schedule = module.schedule
    name = resolve_sampler(sampler, bool(schedule.discrete))
    network = module.inference_network
    was_training = network.training
    network.eval()

    def eps_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return network(x_t, schedule.model_time(t).to(x_t.device))

    steps = n_steps if n_steps is not None else default_steps(schedule, name)
    try:
        return SAMPLERS[name](eps_fn, schedule, (int(n), *sample_shape(module, shape)), n_steps=steps,
                              generator=generator, device=module.device, callback=callback,
                              callback_steps=callback_steps, progress=progress, **sampler_kwargs)
    finally:
        network.train(was_training)


def chunk_plan(n: int, chunk_size: int, rank: int, world: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index k, first row, rows) of the chunks rank ``rank`` of ``world`` draws: k = rank, rank + w, ..."""
    n_chunks = -(-n // chunk_size)
    for k in range(rank, n_chunks, world):
        start = k * chunk_size
        yield k, start, min(chunk_size, n - start)


def chunk_generator(seed: int, k: int, device: torch.device) -> torch.Generator:
    """The generator of chunk k: a pure function of (seed, k), on ``device``."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(k))
