"""The diagnostics: one base, three kinds.

Every diagnostic is a Lightning callback that declares the capabilities it needs, ``requires`` =
((role, protocol), ...) with role ``data`` (the data module), ``network`` (the trained network) or
``auxiliary`` (a frozen model the diagnostic loads from a checkpoint, ``callbacks.auxiliary``), so
``scripts/fit.py --list`` and the start-up check (``protocols.check_requirements``) see them all. It runs at
every ``every_n_epochs``-th validation (never in the sanity check) and is one of three kinds:

    batch       ``BatchDiagnostic``: measures the noisy evaluation batch of ``DiffusionModule.validation_step``
                (every evaluation sample at every time of the evaluation grid), accumulating torchmetrics
                ``MeanMetric``s over the batches. E.g. ScoreError, OracleRisk, PatternAttention.
    weights     ``WeightDiagnostic``: computed from the model itself (its weights, its schedule) and the data's
                analytic truth, once per validation epoch; no batch, no generation. E.g. QKBlockNorms, OutputScale.
    generation  ``GenerationDiagnostic`` (``callbacks.generation_diagnostic``): generates samples with the model and measures
                them, e.g. CovarianceError, AttentionAlongSampling, or a streamed torchmetrics state (FID-like).

Only batch diagnostics read the noisy evaluation grid: a run whose diagnostics are all of the other two
kinds skips it (``diffusion.evaluation.needs_noisy_grid``), which keeps validation cheap for image models.

DDP: metric names are fixed at set-up and identical on all ranks, so the collective calls (torchmetrics'
sync inside ``compute``) always match; epoch-end values are computed identically on every rank and logged
without a further sync. Figures are drawn on rank zero only, after the collectives (``save_figure``).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from diffusion_theory.protocols import check_requirements

Kind = Literal["batch", "weights", "generation"]
KINDS: tuple[str, ...] = ("batch", "weights", "generation")


# Values that are already identical on every rank (torchmetrics synced them, or the contract of ``evaluate``):
# ``sync_dist=True`` tells Lightning they are synced (no "recommended to use sync_dist=True" warning per metric
# and validation under DDP) and ``rank_zero_only=True`` turns Lightning's own reduction of them into a no-op
# (no collective per metric). Every rank still logs them, so they can be monitored on every rank.
SYNCED = {"sync_dist": True, "rank_zero_only": True}


class Diagnostic(pl.Callback, abc.ABC):
    """Base of every diagnostic: ``kind``, ``requires`` = ((role, protocol), ...), ``every_n_epochs``.

    Args:
        every_n_epochs: run at every n-th validation epoch (1 = every validation).
    """

    kind: ClassVar[Kind]
    requires: ClassVar[tuple[tuple[str, type], ...]] = ()

    def __init__(self, every_n_epochs: int = 1):
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f"{type(self).__name__}.every_n_epochs must be an integer >= 1; got {every_n_epochs}")
        self.every_n_epochs = int(every_n_epochs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = getattr(cls, "kind", None)
        if kind is not None and kind not in KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {', '.join(KINDS)}; got {kind!r}")

    @property
    def reads_eval_batch(self) -> bool:
        """Whether this diagnostic needs the noisy evaluation grid of ``validation_step`` (batch kind only)."""
        return self.kind == "batch"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_requirements(self, trainer.datamodule, getattr(pl_module, "network", pl_module))

    def active(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        """Figures and files: runs on every rank after the collectives; use ``save_figure`` (rank zero writes)."""


# ----------------------------------------------------------------------------------------
# Batch diagnostics
# ----------------------------------------------------------------------------------------


class BatchDiagnostic(Diagnostic):
    """Measures each noisy evaluation batch; subclasses implement ``metric_names`` and ``measure``.

    Args:
        every_n_epochs: run at every n-th validation epoch.
        n_time_bins: number of equal bins of the evaluation grid (early to late) for per-time metrics
            ``<name>/t_bin_<k>`` (0 = none); see ``time_bin_names`` and ``update_with_time_bins``.
    """

    kind = "batch"

    def __init__(self, every_n_epochs: int = 1, n_time_bins: int = 5):
        super().__init__(every_n_epochs)
        if int(n_time_bins) != n_time_bins or n_time_bins < 0:
            raise ValueError(f"{type(self).__name__}.n_time_bins must be an integer >= 0; got {n_time_bins}")
        self.n_time_bins = int(n_time_bins)
        self.metrics: dict[str, MeanMetric] = {}

    @abc.abstractmethod
    def metric_names(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
        """Every metric this diagnostic logs: fixed at set-up and the same on all ranks."""

    @abc.abstractmethod
    def measure(self, trainer, pl_module, outputs: dict[str, Tensor], batch: dict[str, Tensor], batch_idx: int) -> None:
        """Update the metrics from one validation batch (``outputs``: the validation step's dict)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.metrics = {name: MeanMetric() for name in self.metric_names(trainer, pl_module)}

    # -- accumulation ----------------------------------------------------------------------------
    def update(self, name: str, values: Tensor, weight: Tensor | float = 1.0) -> None:
        metric = self.metrics[name]
        if metric.device != values.device:
            metric.to(values.device)
        metric.update(values.detach().float(), weight)

    def time_bins(self, outputs: dict[str, Tensor]) -> Tensor:
        """Bin of each (sample, time) item of a validation batch: (B n_t,) in [0, n_time_bins).

        Items are sample-major, so an item's position in the grid is its index modulo n_t; bin k holds the
        grid positions i with floor(i n_bins / n_t) = k (equal bins, early to late)."""
        n_t = int(outputs["n_times"])
        pos = torch.arange(outputs["t"].numel(), device=outputs["t"].device) % n_t
        return pos * self.n_time_bins // n_t

    def time_bin_names(self, name: str) -> list[str]:
        """``<name>/t_bin_<k>`` for k < n_time_bins."""
        return [f"{name}/t_bin_{k}" for k in range(self.n_time_bins)]

    def update_with_time_bins(self, name: str, values: Tensor, outputs: dict[str, Tensor]) -> None:
        """Update ``name`` with the per-item values (B n_t,) and each ``<name>/t_bin_<k>`` with its bin's items."""
        self.update(name, values)
        if not self.n_time_bins:
            return
        bins = self.time_bins(outputs)
        for k in range(self.n_time_bins):
            mask = bins == k
            if mask.any():
                self.update(f"{name}/t_bin_{k}", values[mask])

    # -- hooks -------------------------------------------------------------------------------------
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.active(trainer):
            if not outputs:
                raise RuntimeError(
                    f"{type(self).__name__} is a batch diagnostic but validation_step returned no "
                    f"noisy evaluation batch"
                )
            with torch.no_grad():
                self.measure(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer):
            return
        values = {}
        for name, metric in self.metrics.items():  # same names, same order on every rank
            metric.to(pl_module.device)
            values[name] = metric.compute()
            metric.reset()
        for name, value in values.items():
            pl_module.log(name, value, **SYNCED)
        self.after_epoch(trainer, pl_module, {k: float(v) for k, v in values.items()})


# ----------------------------------------------------------------------------------------
# Epoch-end diagnostics: weights and generation
# ----------------------------------------------------------------------------------------


class EpochEndDiagnostic(Diagnostic):
    """Computed once per validation epoch from the model itself, not from the validation batches.

    Contract of ``evaluate``: it runs on EVERY rank, calls the same collectives in the same order on every rank
    (never inside rank-zero-only code), and returns the same values on every rank; they are logged without a
    further sync (Lightning's loggers write on rank zero only). Figures go in ``after_epoch``.
    """

    @abc.abstractmethod
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """The metrics of this validation epoch, computed identically on every rank."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer):
            return
        with torch.no_grad():
            values = {name: float(v) for name, v in self.evaluate(trainer, pl_module).items()}
        for name, value in values.items():  # identical on every rank by the contract above
            pl_module.log(name, value, **SYNCED)
        self.after_epoch(trainer, pl_module, values)


class WeightDiagnostic(EpochEndDiagnostic):
    """From the weights of ``inference_network`` (the EMA copy when enabled), the schedule and the data's
    analytic truth. The weights are the same on every rank (DDP keeps them in sync): no collective is needed."""

    kind = "weights"
