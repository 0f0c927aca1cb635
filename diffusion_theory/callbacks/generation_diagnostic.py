"""Generation diagnostics: generate samples with the (EMA) model every ``every_n_epochs`` validations and
measure them (kind ``generation`` of ``callbacks.diagnostic``).

Two ways to write one:

    GenerationDiagnostic           override ``evaluate``; ``generate`` returns all n samples on every rank
                                   (e.g. CovarianceError, which needs them together).
    StreamingGenerationDiagnostic  declare torchmetrics states (``sample_metrics``) and update them chunk by
                                   chunk (``update_samples``); each rank draws its chunks and torchmetrics
                                   syncs the states in ``compute`` (an FID needs only feature sums).

Under DDP the n samples are cut into fixed chunks, chunk k drawn with its own generator seeded by (seed, k);
rank r of w draws chunks r, r + w, ... (``diffusion.generation.for_each_chunk``), so the samples, and the
metrics, do not depend on the number of processes.
"""

from __future__ import annotations

import abc
from typing import Any

import lightning.pytorch as pl
from torch import Tensor
from torchmetrics import Metric

from diffusion_theory.callbacks.diagnostic import EpochEndDiagnostic
from diffusion_theory.diffusion.generation import for_each_chunk, generate_across_ranks


class GenerationDiagnostic(EpochEndDiagnostic):
    """Base of the diagnostics of generated samples.

    Args:
        every_n_epochs: generate at every n-th validation (generation is the expensive part).
        n_samples: samples to generate (null: ``default_n_samples``, defined by the subclass).
        sampler: ``auto`` (ddpm for discrete schedules, sde for continuous ones), ddpm, ddim, sde, ode.
        n_steps: backward steps (null: the sampler's default, ``default_steps``).
        sampler_options: further ``DiffusionModule.sample`` arguments (e.g. {spacing: log, method: heun}).
        chunk_size: samples generated per batch, the unit split across DDP ranks.
        seed: generation seed (chunk k uses (seed, k), on every rank and in every run).
    """

    kind = "generation"

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int | None = None,
        sampler: str = "auto",
        n_steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        chunk_size: int = 256,
        seed: int = 0,
    ):
        super().__init__(every_n_epochs)
        name = type(self).__name__
        if n_samples is not None and (int(n_samples) != n_samples or n_samples < 1):
            raise ValueError(f"{name}.n_samples must be an integer >= 1 or null; got {n_samples}")
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"{name}.chunk_size must be an integer >= 1; got {chunk_size}")
        if n_steps is not None and (int(n_steps) != n_steps or n_steps < 1):
            raise ValueError(f"{name}.n_steps must be an integer >= 1 or null; got {n_steps}")
        self.n_samples, self.sampler, self.n_steps = n_samples, sampler, n_steps
        self.sampler_options = dict(sampler_options or {})
        self.chunk_size, self.seed = int(chunk_size), int(seed)

    def default_n_samples(self, trainer: pl.Trainer) -> int:
        """n when ``n_samples`` is null."""
        raise ValueError(f"{type(self).__name__}.n_samples: set the number of samples to generate")

    def resolve_n(self, trainer: pl.Trainer) -> int:
        return int(self.n_samples) if self.n_samples is not None else int(self.default_n_samples(trainer))

    def sample_kwargs(self) -> dict[str, Any]:
        """Arguments of ``DiffusionModule.sample`` besides n and the generator."""
        return {"sampler": self.sampler, "n_steps": self.n_steps, "progress": False, **self.sampler_options}

    def generate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, n: int) -> Tensor:
        """n samples (n, *shape), drawn across ranks and identical on every rank (one all-reduce: call on all)."""
        return generate_across_ranks(trainer, pl_module, n, self.chunk_size, self.seed, **self.sample_kwargs())


class StreamingGenerationDiagnostic(GenerationDiagnostic):
    """Accumulates torchmetrics states over generated chunks; ``compute`` syncs them across ranks."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.states: dict[str, Metric] = dict(self.sample_metrics(trainer, pl_module))

    @abc.abstractmethod
    def sample_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Metric]:
        """{logged name: torchmetrics Metric}; fixed at set-up, the same on every rank."""

    @abc.abstractmethod
    def update_samples(self, samples: Tensor, start: int, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Update ``self.states`` with one chunk of generated samples (rows, *shape), rows start.. of the n."""

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        for metric in self.states.values():
            metric.to(pl_module.device)
        kwargs = self.sample_kwargs()

        def draw(k: int, start: int, rows: int, generator) -> None:
            self.update_samples(pl_module.sample(rows, generator=generator, **kwargs), start, trainer, pl_module)

        for_each_chunk(trainer, pl_module, self.resolve_n(trainer), self.chunk_size, self.seed, draw)
        values = {}
        for name, metric in self.states.items():  # same names, same order on every rank: the syncs match
            values[name] = float(metric.compute())
            metric.reset()
        return values
