"""Generated bouncing-ball videos: paper 2, Sec. 6.2 and Appendix F (Fig. 6, Fig. 13), and their physics (ours).

``BallVideos`` (a generation diagnostic) generates latent sequences with the (EMA) DiT, maps them back to the
VAE's latent space (``data.to_vae_latents``) and decodes every frame with the frozen VAE decoder, an auxiliary
model loaded from ``aux_checkpoint`` (``callbacks.auxiliary``: kept on this callback, never in the DiT's state
dict, optimiser or EMA). Each decoded video is tracked and checked (``metrics.ball_physics``); the same is
done once for the evaluation videos' latents decoded by the same VAE (the "real" reference: what a perfect
DiT would score through this VAE). Logged, for g in {gen, real}:

    val/ball/{g}/speed_error        mean relative deviation from constant speed between bounces (0 = constant)
    val/ball/{g}/mean_speed         pixels per frame (data.speed for the simulator)
    val/ball/{g}/reflection_ok      share of bounces obeying angle in = angle out at a wall
    val/ball/{g}/bounces_per_video
    val/ball/{g}/out_of_box         mean distance (pixels) the centre leaves its box [r, L - r]^2; _max: the largest
    val/ball/{g}/lost_frames        share of frames with no ball found

Files (rank zero): ``figures/fig13_frame_strip.png`` (36 frames spread over the first generated video, as
Fig. 13), ``figures/fig6_latent_trajectories.png`` (generated against real latent paths), ``videos/ball_<i>.gif``
(the first ``n_logged`` generated videos, logged to W&B as ``wandb.Video``).

DDP: rank r draws chunks r, r + w, ... (``diffusion.generation.for_each_chunk``); the physics sums are
torchmetrics states, synced in ``compute`` on every rank, so the values equal one process on the same
generated set. Chunk 0 (rank zero's) gives the files.

``VAEFigures`` draws the VAE's reconstructions and its latent map of positions at each validation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torchmetrics import MaxMetric, Metric, SumMetric

from diffusion_theory.callbacks.auxiliary import UsesAuxiliaryModel
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.callbacks.generation_diagnostic import GenerationDiagnostic
from diffusion_theory.diffusion.generation import for_each_chunk
from diffusion_theory.metrics.ball_physics import SUM_KEYS, physics_summary, physics_sums, track_centroids
from diffusion_theory.plotting.videos import (
    frame_strip_figure,
    latent_map_figure,
    latent_trajectories_figure,
    reconstruction_figure,
    save_gif,
)

__all__ = ["BallVideos", "VAEFigures"]


@runtime_checkable
class HasBallVideos(Protocol):
    """Latent-video data (``datamodules.ball.BallLatentDataModule``)."""

    def to_vae_latents(self, z: Tensor) -> Tensor: ...

    def ball_geometry(self) -> dict[str, float]: ...


@runtime_checkable
class DecodesLatents(Protocol):
    """A frozen decoder of latents (B, k) to frames (B, 1, L, L) (``networks.vae.ConvVAE``)."""

    latent_dim: int

    def decode(self, z: Tensor) -> Tensor: ...


class BallVideos(UsesAuxiliaryModel, GenerationDiagnostic):
    """Decodes generated latent videos with a frozen VAE; videos, Fig. 6 and Fig. 13, physics metrics.

    Args:
        every_n_epochs: generate at every n-th validation.
        n_samples: videos to generate.
        sampler, n_steps, sampler_options, chunk_size, seed: generation (``GenerationDiagnostic``).
        aux_checkpoint: the VAE's auxiliary checkpoint (the data's ``vae_checkpoint``).
        threshold: intensity below which a pixel is background for the tracker.
        angle_tol_deg: a bounce is correct when angle out = angle in within this many degrees.
        wall_tol: slack (pixels) of the "at the wall" test of a bounce.
        n_logged: generated videos written as GIFs and logged to W&B.
        strip_frames: frames of the Fig. 13 strip (paper: 36 of 240).
        fps: frames per second of the GIFs.
        decode_batch_size: frames per decoder pass.
    """

    requires = (("data", HasBallVideos), ("auxiliary", DecodesLatents))

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int = 64,
        sampler: str = "auto",
        n_steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        chunk_size: int = 64,
        seed: int = 0,
        aux_checkpoint: str | None = None,
        threshold: float = 0.25,
        angle_tol_deg: float = 15.0,
        wall_tol: float = 1.0,
        n_logged: int = 4,
        strip_frames: int = 36,
        fps: int = 12,
        decode_batch_size: int = 4096,
    ):
        super().__init__(every_n_epochs, n_samples, sampler, n_steps, sampler_options, chunk_size, seed)
        self.init_auxiliary(aux_checkpoint)
        if not 0 <= threshold < 1:
            raise ValueError(f"BallVideos.threshold must lie in [0, 1); got {threshold}")
        if not 0 < angle_tol_deg <= 180:
            raise ValueError(f"BallVideos.angle_tol_deg must lie in (0, 180]; got {angle_tol_deg}")
        for name, value in (
            ("n_logged", n_logged),
            ("strip_frames", strip_frames),
            ("fps", fps),
            ("decode_batch_size", decode_batch_size),
        ):
            if int(value) != value or value < (0 if name == "n_logged" else 1):
                raise ValueError(f"BallVideos.{name} must be a positive integer; got {value}")
        self.threshold, self.angle_tol_deg, self.wall_tol = float(threshold), float(angle_tol_deg), float(wall_tol)
        self.n_logged, self.strip_frames, self.fps = int(n_logged), int(strip_frames), int(fps)
        self.decode_batch_size = int(decode_batch_size)
        self.states: dict[str, Metric] = {}
        self._real: dict[str, float] | None = None
        self._shown: dict[str, np.ndarray] | None = None
        self.decode_seconds = 0.0  # time spent decoding and tracking at the last validation (this rank)

    # -- set-up ------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        vae = self.auxiliary_model()
        shape = getattr(getattr(pl_module, "network", None), "input_shape", None)
        if shape is not None and int(shape[-1]) != vae.latent_dim:
            raise ValueError(
                f"BallVideos.aux_checkpoint: the VAE at {self.aux_checkpoint!r} has latent size "
                f"{vae.latent_dim}, but the DiT's input_shape is {list(shape)} (last entry: the latent "
                f"size); use the VAE the latents were encoded with (data.init_args.vae_checkpoint)"
            )
        self.states = {
            k: (MaxMetric() if k == "excursion_max" else SumMetric()).set_dtype(torch.float64) for k in SUM_KEYS
        }

    # -- decoding and physics ------------------------------------------------------------------------
    def decode_videos(self, z: Tensor, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Tensor:
        """Standardised latent videos (n, F, k) -> frames (n, F, L, L) through the frozen VAE decoder."""
        vae = self.auxiliary_model(pl_module.device)
        n, F, k = z.shape
        flat = trainer.datamodule.to_vae_latents(z.reshape(n * F, k).to(pl_module.device).float())
        frames = torch.cat(
            [
                vae.decode(flat[s : s + self.decode_batch_size])[:, 0]
                for s in range(0, flat.shape[0], self.decode_batch_size)
            ]
        )
        return frames.reshape(n, F, *frames.shape[-2:])

    def physics(self, frames: Tensor, geometry: dict[str, float]) -> dict[str, Tensor]:
        positions, _ = track_centroids(frames, self.threshold)
        return physics_sums(positions, geometry["size"], geometry["radius"], self.angle_tol_deg, self.wall_tol)

    def real_reference(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Physics of the evaluation videos' latents decoded by the same VAE; computed once, identically on every
        rank (no collective: the VAE and the evaluation set are fixed)."""
        if self._real is None:
            dm = trainer.datamodule
            z = dm.evaluation_set["x0"]
            frames = self.decode_videos(z, trainer, pl_module).cpu()
            self._real = physics_summary(self.physics(frames, dm.ball_geometry()))
            self._real_latents = z[:8].numpy()
        return self._real

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        dm = trainer.datamodule
        geometry = dm.ball_geometry()
        for metric in self.states.values():
            metric.to(pl_module.device)
        kwargs = self.sample_kwargs()
        self.decode_seconds = 0.0
        self._shown = None

        def draw(k: int, start: int, rows: int, generator: torch.Generator) -> None:
            z = pl_module.sample(rows, generator=generator, **kwargs)  # (rows, F, k), standardised
            t0 = time.perf_counter()
            frames = self.decode_videos(z, trainer, pl_module)
            for key, value in self.physics(frames, geometry).items():
                self.states[key].update(value.to(pl_module.device))
            self.decode_seconds += time.perf_counter() - t0
            if k == 0:  # rank zero's first chunk: the files
                keep = max(self.n_logged, 1)
                self._shown = {"latents": z[:8].cpu().numpy(), "videos": frames[:keep].cpu().numpy()}

        for_each_chunk(trainer, pl_module, self.resolve_n(trainer), self.chunk_size, self.seed, draw)
        sums = {}
        for key, metric in self.states.items():  # same names, same order on every rank: the syncs match
            sums[key] = metric.compute()
            metric.reset()
        values = {f"val/ball/gen/{k}": v for k, v in physics_summary(sums).items()}
        values |= {f"val/ball/real/{k}": v for k, v in self.real_reference(trainer, pl_module).items()}
        return values

    # -- files ------------------------------------------------------------------------------------------
    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        shown, self._shown = self._shown, None
        if not trainer.is_global_zero or shown is None:
            return
        step = trainer.global_step
        video = shown["videos"][0]
        save_figure(
            trainer,
            frame_strip_figure(
                video,
                f"Fig. 13: {min(self.strip_frames, video.shape[0])} of {video.shape[0]} frames of a generated "
                f"video, step {step}",
                self.strip_frames,
            ),
            "fig13_frame_strip",
        )
        save_figure(
            trainer,
            latent_trajectories_figure(
                shown["latents"],
                self._real_latents,
                f"Fig. 6: latent sequences (standardised), generated vs real, step {step}; speed error "
                f"{values['val/ball/gen/speed_error']:.3g} (real {values['val/ball/real/speed_error']:.3g}), reflections "
                f"correct {values['val/ball/gen/reflection_ok']:.2f} (real {values['val/ball/real/reflection_ok']:.2f})",
            ),
            "fig6_latent_trajectories",
        )
        folder = Path(trainer.default_root_dir) / "videos"
        paths = [
            save_gif(shown["videos"][i], folder / f"ball_{i}.gif", self.fps)
            for i in range(min(self.n_logged, len(shown["videos"])))
        ]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and paths:
                import wandb

                logger.log_metrics(
                    {f"videos/ball_{i}": wandb.Video(str(p), format="gif") for i, p in enumerate(paths)}, step=step
                )


class VAEFigures(pl.Callback):
    """Reconstructions of evaluation frames and the encoder's latent map of ball positions, at each validation
    (rank zero; figures ``vae_reconstructions.png`` and ``vae_latent_map.png``). Needs ``BallFramesDataModule``.

    Args:
        every_n_epochs: draw at every n-th validation.
        n_frames: frames shown in the reconstruction figure.
    """

    def __init__(self, every_n_epochs: int = 1, n_frames: int = 10):
        if int(every_n_epochs) != every_n_epochs or every_n_epochs < 1:
            raise ValueError(f"VAEFigures.every_n_epochs must be an integer >= 1; got {every_n_epochs}")
        self.every_n_epochs, self.n_frames = int(every_n_epochs), int(n_frames)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        ev = trainer.datamodule.evaluation_set
        net = pl_module.network
        was_training = net.training
        net.eval()
        try:
            x = ev["x0"].to(pl_module.device)
            mu, _ = net.encode(x)
            recon = net.decode(mu[: self.n_frames])
        finally:
            net.train(was_training)
        step = trainer.global_step
        save_figure(
            trainer,
            reconstruction_figure(
                x[: self.n_frames, 0].cpu().numpy(),
                recon[:, 0].cpu().numpy(),
                f"VAE reconstructions from the posterior mean, step {step}",
            ),
            "vae_reconstructions",
        )
        save_figure(
            trainer,
            latent_map_figure(
                mu.cpu().numpy(),
                ev["pos"].numpy(),
                float(x.shape[-1]),
                f"VAE latent map of ball positions, step {step}",
            ),
            "vae_latent_map",
        )
