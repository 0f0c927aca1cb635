"""The LightningModule that trains an image classifier (``networks.classifier.ImageClassifier``) with
cross-entropy, through the same ``scripts/fit.py`` as the diffusion models:

    python scripts/fit.py --config configs/fashion_classifier.yaml      # CPU scale, Fashion-MNIST classes 0-3
    python scripts/fit.py --config configs/mnist_classifier.yaml        # MNIST digits 0-3 (paper 1, Sec. 5.2)

Batches are {x0: (B, C, H, W), y: (B,) class index}. Logs train/loss, train/acc, val/loss, val/acc (torchmetrics,
synced across DDP ranks) and test/acc. At the end of the fit, rank zero exports the trained network as an
auxiliary checkpoint (``callbacks.auxiliary``: class path, constructor arguments, weights; loads with
weights_only) to ``<run>/classifier.pt``: the file the per-class FID diagnostic names (``aux_checkpoint``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from diffusion_theory.callbacks.auxiliary import save_auxiliary
from diffusion_theory.init_config import init_config

EXPORT_NAME = "classifier.pt"


def export_classifier(network: nn.Module, path: str | Path) -> Path:
    """Write ``network`` (an ``ImageClassifier``) as an auxiliary checkpoint at ``path``."""
    return save_auxiliary(network, path, init_args=dict(getattr(network, "_init_args", {})))


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of an image classifier.

    Args:
        network: the classifier, e.g. ``ImageClassifier``; its outputs are the logits of the class indices y.
        label_smoothing: cross-entropy label smoothing (0 = none).
    """

    def __init__(self, network: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"model.label_smoothing must lie in [0, 1); got {label_smoothing}")
        self.save_hyperparameters(ignore=["network"])
        self.hparams["network"] = init_config(network)
        self.network = network
        k = int(network.num_classes)
        self.label_smoothing = float(label_smoothing)
        self.train_acc, self.val_acc, self.test_acc = (MulticlassAccuracy(k, average="micro") for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        return self.network(x)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self.network(batch["x0"])
        return F.cross_entropy(logits, batch["y"], label_smoothing=self.label_smoothing), logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, logits = self._loss(batch)
        self.train_acc(logits, batch["y"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["y"].numel())
        self.log("train/acc", self.train_acc, on_step=True, on_epoch=False, batch_size=batch["y"].numel())
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        self.val_acc(logits, batch["y"])
        self.log("val/loss", loss, sync_dist=True, batch_size=batch["y"].numel())
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=batch["y"].numel())

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, logits = self._loss(batch)
        self.test_acc(logits, batch["y"])
        self.log("test/acc", self.test_acc, batch_size=batch["y"].numel())

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            export_classifier(self.network, Path(self.trainer.default_root_dir) / EXPORT_NAME)

    def configure_optimizers(self):
        # Used only when no optimizer is configured (LightningCLI's `optimizer:` section overrides this).
        return torch.optim.Adam(self.parameters(), lr=1e-3)


__all__ = ["ClassifierModule"]
