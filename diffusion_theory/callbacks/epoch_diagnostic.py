"""DDP plumbing for generating samples in diagnostics (``GenerationDiagnostic``, ``AttentionAlongSampling``).

Generation under DDP (``generate_across_ranks``, ``for_each_chunk``): the n samples are cut into
fixed chunks, chunk k drawn with its own generator seeded by (seed, k); rank r of w draws chunks
r, r + w, ...; the rows are reassembled by an all-reduce sum of zero-padded tensors (exact: x + 0 = x),
so every rank holds all n samples, identical to what one process would draw.
``EpochEndDiagnostic`` (the base of weight and generation diagnostics) lives in ``callbacks.diagnostic``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from diffusion_theory.callbacks.diagnostic import EpochEndDiagnostic  # noqa: F401  (re-exported)
from diffusion_theory.models.sampling import chunk_generator, chunk_plan, sample_shape


def all_reduce_sum(trainer: pl.Trainer, x: Tensor) -> Tensor:
    """Sum of x over all ranks, on every rank (x itself in one process)."""
    if trainer.world_size > 1:
        return trainer.strategy.reduce(x, reduce_op="sum")
    return x


def for_each_chunk(trainer: pl.Trainer, pl_module: Any, n: int, chunk_size: int, seed: int,
                   fn: Callable[[int, int, int, torch.Generator], None]) -> None:
    """Call fn(k, start, rows, generator) for the chunks of n samples this rank draws (no collectives)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    for k, start, rows in chunk_plan(n, chunk_size, trainer.global_rank, trainer.world_size):
        fn(k, start, rows, chunk_generator(seed, k, pl_module.device))


def generate_across_ranks(trainer: pl.Trainer, pl_module: Any, n: int, chunk_size: int, seed: int,
                          **sample_kwargs: Any) -> Tensor:
    """n samples (n, *shape) from ``pl_module.sample``, drawn across ranks, identical on every rank.

    Collective: one all-reduce; call it on every rank.
    """
    out = torch.zeros(n, *sample_shape(pl_module, sample_kwargs.pop("shape", None)), device=pl_module.device)

    def draw(k: int, start: int, rows: int, generator: torch.Generator) -> None:
        out[start:start + rows] = pl_module.sample(rows, generator=generator, **sample_kwargs).to(out.dtype)

    for_each_chunk(trainer, pl_module, n, chunk_size, seed, draw)
    return all_reduce_sum(trainer, out)
