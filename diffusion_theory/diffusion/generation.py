"""Generation with a trained model, in one process or many: the one path of callbacks and scripts.

    eps_fn(x_t, t) = module.denoise(x_t, t, cond, guidance_scale)       (noise prediction)

``generate`` drives one of the samplers (``diffusion.samplers.SAMPLERS``: ddpm, ddim for discrete
schedules; sde, ode for ``ContinuousVPSchedule``; ``auto`` picks ddpm or sde) with any module that
has ``schedule``, ``device``, ``inference_network`` and ``denoise`` (``DiffusionModule``).

Many processes (``chunk_plan``, ``chunk_generator``, ``for_each_chunk``, ``generate_across_ranks``):
n samples are cut into fixed chunks of ``chunk_size`` rows; chunk k is drawn with its own generator
seeded by (seed, k); rank r of w draws chunks r, r + w, ...; the rows are reassembled by an all-reduce
sum of zero-padded tensors (exact: x + 0 = x), so every rank holds all n samples, identical to what
one process draws. The ranks come from a Lightning ``Trainer`` when one is given (DDP inside a fit
or validate), else from ``torch.distributed`` when it is initialised (a script under torchrun),
else one process.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from diffusion_theory.diffusion.samplers import SAMPLERS, StepCallback, default_steps, resolve_sampler

# ----------------------------------------------------------------------------------------
# One process
# ----------------------------------------------------------------------------------------


def sample_shape(module: Any, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of one sample: ``shape`` if given, else the network's ``input_shape`` (DiT)."""
    if shape is not None:
        return tuple(int(s) for s in shape)
    net_shape = getattr(module.inference_network, "input_shape", None)
    if net_shape is None:
        raise ValueError(
            f"sample: pass shape=(...) (the network {type(module.inference_network).__name__} has no input_shape)"
        )
    return tuple(int(s) for s in net_shape)


@torch.no_grad()
def generate(
    module: Any,
    n: int,
    sampler: str = "auto",
    n_steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    callback_steps: Container[int] | None = None,
    shape: tuple[int, ...] | None = None,
    progress: bool = True,
    cond: dict[str, Tensor] | None = None,
    guidance_scale: float | None = None,
    drop_labels: bool = False,
    **sampler_kwargs: Any,
) -> Tensor:
    """n samples (n, *shape) from ``module.inference_network`` on the module's device.

    ``cond``: the network's conditioning, {name: (n,) tensor} (e.g. class labels y); ``guidance_scale``:
    classifier-free guidance (``module.denoise``); ``drop_labels=True``: the null class for every row.
    ``generator`` must live on the module's device (a CPU generator for CPU sampling); ``callback(k, t, x_t)``
    and ``callback_steps`` are passed to the sampler (k = backward step index, 0 .. n_steps);
    ``progress`` shows a tqdm bar over the steps.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"sample: n must be an integer >= 1; got {n}")
    schedule = module.schedule
    name = resolve_sampler(sampler, bool(schedule.discrete))
    cond = {k: v.to(module.device) for k, v in (cond or {}).items()}
    for key, value in cond.items():
        if value.shape[:1] != (int(n),):
            raise ValueError(
                f"sample: conditioning {key!r} must have one entry per sample, shape ({int(n)},); "
                f"got {tuple(value.shape)}"
            )
    network = module.inference_network
    was_training = network.training
    network.eval()

    def eps_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return module.denoise(x_t, t, cond, guidance_scale=guidance_scale, network=network, drop_labels=drop_labels)

    steps = n_steps if n_steps is not None else default_steps(schedule, name)
    try:
        return SAMPLERS[name](
            eps_fn,
            schedule,
            (int(n), *sample_shape(module, shape)),
            n_steps=steps,
            generator=generator,
            device=module.device,
            callback=callback,
            callback_steps=callback_steps,
            progress=progress,
            **sampler_kwargs,
        )
    finally:
        network.train(was_training)


# ----------------------------------------------------------------------------------------
# Many processes
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes that generate together, and their all-reduce."""

    rank: int
    world: int
    trainer: Any = None  # a Lightning Trainer (its strategy reduces), or None (torch.distributed or one process)

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum of x over all ranks, on every rank (x itself in one process). A collective: call it on every rank."""
        if self.world == 1:
            return x
        if self.trainer is not None:
            return self.trainer.strategy.reduce(x, reduce_op="sum")
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def current_ranks(trainer: Any = None) -> Ranks:
    """The trainer's ranks; else torch.distributed's when initialised (torchrun); else one process."""
    if trainer is not None:
        return Ranks(int(trainer.global_rank), int(trainer.world_size), trainer)
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks(0, 1)


def all_reduce_sum(trainer: Any, x: Tensor) -> Tensor:
    """Sum of x over all ranks (of ``trainer``, or of torch.distributed when trainer is None), on every rank."""
    return current_ranks(trainer).all_reduce_sum(x)


def chunk_plan(n: int, chunk_size: int, rank: int, world: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index k, first row, rows) of the chunks rank ``rank`` of ``world`` draws: k = rank, rank + w, ..."""
    n_chunks = -(-n // chunk_size)
    for k in range(rank, n_chunks, world):
        start = k * chunk_size
        yield k, start, min(chunk_size, n - start)


def chunk_generator(seed: int, k: int, device: torch.device) -> torch.Generator:
    """The generator of chunk k: a pure function of (seed, k), on ``device``."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(k))


def for_each_chunk(
    trainer: Any,
    pl_module: Any,
    n: int,
    chunk_size: int,
    seed: int,
    fn: Callable[[int, int, int, torch.Generator], None],
) -> None:
    """Call fn(k, start, rows, generator) for the chunks of n samples this rank draws (no collectives)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    ranks = current_ranks(trainer)
    for k, start, rows in chunk_plan(n, chunk_size, ranks.rank, ranks.world):
        fn(k, start, rows, chunk_generator(seed, k, pl_module.device))


def generate_across_ranks(
    trainer: Any,
    pl_module: Any,
    n: int,
    chunk_size: int,
    seed: int,
    cond: dict[str, Tensor] | None = None,
    progress: bool = False,
    **sample_kwargs: Any,
) -> Tensor:
    """n samples (n, *shape) from ``pl_module.sample``, drawn across ranks, identical on every rank and
    to one process. ``cond``: {name: (n,) tensor}, row i conditions sample i. ``progress``: a bar over the
    samples rank zero draws. ``trainer`` may be None (torch.distributed or one process).

    Collective: one all-reduce; call it on every rank.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"sample: n must be an integer >= 1; got {n}")
    ranks = current_ranks(trainer)
    cond = dict(cond or {})
    out = torch.zeros(n, *sample_shape(pl_module, sample_kwargs.pop("shape", None)), device=pl_module.device)
    own = sum(rows for _, _, rows in chunk_plan(n, max(1, chunk_size), ranks.rank, ranks.world))
    bar = tqdm(
        total=own,
        unit="sample",
        desc=f"sampling (rank 0 of {ranks.world})" if ranks.world > 1 else "sampling",
        disable=not progress or ranks.rank != 0,
    )

    def draw(k: int, start: int, rows: int, generator: torch.Generator) -> None:
        chunk_cond = {key: value[start : start + rows] for key, value in cond.items()}
        out[start : start + rows] = pl_module.sample(
            rows, generator=generator, cond=chunk_cond, progress=False, **sample_kwargs
        ).to(out.dtype)
        bar.update(rows)

    for_each_chunk(trainer, pl_module, n, chunk_size, seed, draw)
    bar.close()
    return ranks.all_reduce_sum(out)
