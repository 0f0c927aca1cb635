"""Diagnostics computed once per validation epoch from the model itself (its weights or samples it
generates), not from the validation batches; and the DDP plumbing for generating samples.

Contract of ``EpochEndDiagnostic.evaluate``: it runs on EVERY rank, calls the same collectives in the
same order on every rank (never inside rank-zero-only code), and returns the same values on every
rank; they are then logged without a further sync (Lightning's loggers write on rank zero only).
Figures are drawn in ``after_epoch`` with ``save_figure`` (which writes on rank zero only).

Generation under DDP (``generate_across_ranks``, ``for_each_chunk``): the n samples are cut into
fixed chunks, chunk k drawn with its own generator seeded by (seed, k); rank r of w draws chunks
r, r + w, ...; the rows are reassembled by an all-reduce sum of zero-padded tensors (exact: x + 0 = x),
so every rank holds all n samples, identical to what one process would draw.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.models.sampling import chunk_generator, chunk_plan, sample_shape


class EpochEndDiagnostic(Diagnostic):
    """Base: subclasses implement ``evaluate`` (-> {metric name: value}) and optionally ``after_epoch``."""

    def metric_names(self, trainer, pl_module) -> list[str]:
        return []

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing per batch: everything happens at the end of the epoch."""

    def measure(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Not used: ``on_validation_batch_end`` does nothing for an epoch-end diagnostic."""

    @abc.abstractmethod
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """The metrics of this validation epoch, computed identically on every rank."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer):
            return
        with torch.no_grad():
            values = {name: float(v) for name, v in self.evaluate(trainer, pl_module).items()}
        for name, value in values.items():  # identical on every rank by the contract above
            pl_module.log(name, value, sync_dist=False)
        self.after_epoch(trainer, pl_module, values)


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
