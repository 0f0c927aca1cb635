"""The LightningModule that trains the frame VAE of paper 2, Sec. 6.2 (``networks.vae.ConvVAE``).

Objective (the negative ELBO per frame, Kingma & Welling 2014, Bernoulli pixels):

    loss = sum_pixels BCE(logits(z), x) + beta KL(N(mu, sigma^2) || N(0, I)),     z = mu + sigma eps

Validation logs ``val/vae/loss``, ``val/vae/recon`` (the BCE sum), ``val/vae/kl`` and ``val/vae/position_error``:
the distance in pixels between the ball tracked in the reconstruction from the posterior mean
(``metrics.ball_physics.track_centroids``) and the true centre (batches carry ``pos``): how well a 2-D latent
keeps what a video needs.

The trained VAE is exported for the latent data and the video diagnostics as an auxiliary checkpoint
(``callbacks.auxiliary``: class path, arguments, weights; loads with ``weights_only=True``) at
``<run folder>/<export_name>`` after every validation and at the end of training (rank zero writes).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from diffusion_theory.callbacks.auxiliary import save_auxiliary
from diffusion_theory.metrics.ball_physics import track_centroids
from diffusion_theory.networks.vae import ConvVAE


class VAEModule(pl.LightningModule):
    """Trains ``ConvVAE`` on frames (batches {x0: (B, 1, L, L), pos: (B, 2)}).

    Args:
        network: the VAE.
        beta: weight of the KL term (1 = the ELBO).
        noise_seed: seed of the reparameterisation noise; rank r uses noise_seed + r.
        export_name: file name of the exported auxiliary checkpoint in the run folder.
    """

    def __init__(self, network: ConvVAE, beta: float = 1.0, noise_seed: int = 0, export_name: str = "vae.pt"):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"model.beta must be > 0; got {beta}")
        if not str(export_name).strip():
            raise ValueError("model.export_name must be a file name; got an empty string")
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.beta, self.noise_seed, self.export_name = float(beta), int(noise_seed), str(export_name)
        self.val_metrics = torch.nn.ModuleDict({k: MeanMetric() for k in ("loss", "recon", "kl", "position_error")})
        self._gen: torch.Generator | None = None

    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-frame recon (BCE summed over pixels), kl and loss, each (B,)."""
        logits, mu, logvar = self.network(x, generator)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return {"recon": recon, "kl": kl, "loss": recon + self.beta * kl}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self._gen is None:
            self._gen = torch.Generator(device=self.device).manual_seed(self.noise_seed + self.global_rank)
        losses = self.losses(batch["x0"], self._gen)
        loss = losses["loss"].mean()
        self.log("train/vae_loss", loss, prog_bar=True, batch_size=batch["x0"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        x = batch["x0"]
        mu, logvar = self.network.encode(x)
        logits = self.network.decode_logits(mu)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        centre, valid = track_centroids(torch.sigmoid(logits)[:, 0])
        err = torch.where(
            valid, (centre - batch["pos"].double()).norm(dim=-1), torch.full_like(centre[:, 0], x.shape[-1])
        )
        for name, value in (("loss", recon + self.beta * kl), ("recon", recon), ("kl", kl), ("position_error", err)):
            self.val_metrics[name].update(value.float())
            self.log(f"val/vae/{name}", self.val_metrics[name], on_step=False, on_epoch=True, prog_bar=name == "loss")

    # -- export ------------------------------------------------------------------------------------
    def export_path(self) -> Path:
        return Path(self.trainer.default_root_dir) / self.export_name

    def export(self) -> Path | None:
        """Write the auxiliary checkpoint (rank zero only; no collective)."""
        if not self.trainer.is_global_zero:
            return None
        return save_auxiliary(self.network, self.export_path(), self.network.aux_init_args())

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.export()

    def on_train_end(self) -> None:
        self.export()

    def configure_optimizers(self):
        # Used only when no optimizer is configured (LightningCLI's `optimizer:` section overrides this).
        return torch.optim.Adam(self.parameters(), lr=1e-3)
