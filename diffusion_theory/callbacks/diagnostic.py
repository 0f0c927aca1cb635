"""Base class of the validation diagnostics.

A diagnostic declares the capabilities it needs (``requires``), accumulates torchmetrics
``MeanMetric``s over the validation batches, and at the end of the validation epoch computes
them on every rank (torchmetrics syncs inside ``compute``) and logs the synced values.
The set of metric names is fixed at set-up, identical on all ranks, so the collective calls
always match. Figures are drawn on rank zero only, after the collectives.
"""
from __future__ import annotations

import abc
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from diffusion_theory.protocols import require


class Diagnostic(pl.Callback, abc.ABC):
    """Base: ``requires`` = [(role, protocol)], role in {"data", "network"}.

    Args:
        every_n_epochs: run at every n-th validation epoch (1 = every validation).
        n_time_bins: number of equal bins of the evaluation times for per-time metrics (0 = none).
    """

    requires: tuple[tuple[str, type], ...] = ()

    def __init__(self, every_n_epochs: int = 1, n_time_bins: int = 5):
        if every_n_epochs < 1:
            raise ValueError(f"{type(self).__name__}.every_n_epochs must be >= 1; got {every_n_epochs}")
        if n_time_bins < 0:
            raise ValueError(f"{type(self).__name__}.n_time_bins must be >= 0; got {n_time_bins}")
        self.every_n_epochs = every_n_epochs
        self.n_time_bins = n_time_bins
        self.metrics: dict[str, MeanMetric] = {}

    # -- set-up --------------------------------------------------------------------------------
    @abc.abstractmethod
    def metric_names(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str]:
        """Every metric this diagnostic logs: fixed at set-up and the same on all ranks."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for role, protocol in self.requires:
            obj = trainer.datamodule if role == "data" else pl_module.network
            require(obj, protocol, type(self).__name__, role)
        self.metrics = {name: MeanMetric() for name in self.metric_names(trainer, pl_module)}

    def active(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def update(self, name: str, values: Tensor, weight: Tensor | float = 1.0) -> None:
        metric = self.metrics[name]
        if metric.device != values.device:
            metric.to(values.device)
        metric.update(values.detach().float(), weight)

    def time_bins(self, outputs: dict[str, Tensor]) -> Tensor:
        """Bin of each (sample, time) item of a validation batch: (B n_t,) in [0, n_time_bins)."""
        n_t = int(outputs["n_times"])
        pos = torch.arange(outputs["t"].numel(), device=outputs["t"].device) % n_t
        return pos * self.n_time_bins // n_t

    # -- hooks ---------------------------------------------------------------------------------
    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.active(trainer):
            with torch.no_grad():
                self.measure(trainer, pl_module, outputs, batch, batch_idx)

    @abc.abstractmethod
    def measure(self, trainer, pl_module, outputs: dict[str, Tensor], batch: dict[str, Tensor], batch_idx: int) -> None:
        """Update the metrics from one validation batch (``outputs``: the validation step's dict)."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active(trainer):
            return
        values = {}
        for name, metric in self.metrics.items():  # same names, same order on every rank
            metric.to(pl_module.device)
            values[name] = metric.compute()
            metric.reset()
        for name, value in values.items():
            pl_module.log(name, value, sync_dist=False)
        self.after_epoch(trainer, pl_module, {k: float(v) for k, v in values.items()})

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        """Figures and files: runs on every rank; use ``save_figure`` which writes on rank zero only."""
