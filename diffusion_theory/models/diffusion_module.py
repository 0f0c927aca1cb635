"""The LightningModule that trains any noise-predicting network on the DDPM objective.

Training (paper 1 eq. 3, paper 2 eq. 6 in noise-prediction form):
    t ~ schedule (uniform / first / last),  E ~ N(0, I),  X^t = sqrt(abar_t) X^0 + sqrt(1 - abar_t) E
    loss = loss_scale * mean ||f(X^t, t) - E||^2          (loss_scale = 1/2 gives eq. 3's 1/(2dPT))

Validation runs every evaluation sample at every ``schedule.eval_times()`` with fixed noise
(``diffusion.evaluation``) and hands the noisy batch to the diagnostics (callbacks) through
the step output, so the network runs once per batch whatever the number of diagnostics.

With ``ema_decay`` set, an exponential moving average of the network's weights (``networks.ema.EMA``,
updated after every optimiser step, saved in the checkpoint's state_dict) is the network of
validation, of the diagnostics (``inference_network``) and of ``sample``, as in DiT.
"""
from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from diffusion_theory.diffusion.evaluation import evaluation_noise, expand_over_times
from diffusion_theory.diffusion.schedules import NoiseSchedule
from diffusion_theory.networks.ema import EMA


class NonFiniteLossError(RuntimeError):
    """Raised before the optimiser step when the training loss is NaN or infinite."""


class DiffusionModule(pl.LightningModule):
    """Trains ``network(x_t, model_time) -> predicted noise`` under ``schedule``.

    Args:
        network: the denoiser, e.g. ``OneLayerTransformer`` (paper 1 eq. 1) or ``DiT``.
        schedule: the forward process (``LinearAlphaSchedule``, ``LinearBetaSchedule``, ...).
        loss_scale: multiplies the per-dimension mean squared error; 0.5 is eq. (3).
        eval_noise_seed: seed of the evaluation noise grid (shared by all runs and ranks).
        noise_seed: seed of the training noise and times; rank r uses noise_seed + r.
        ema_decay: if set (e.g. DiT's 0.9999), keep an EMA of the network's weights with this decay and
            validate and sample with it; None (default) uses the trained weights themselves.
    """

    def __init__(self, network: nn.Module, schedule: NoiseSchedule, loss_scale: float = 0.5,
                 eval_noise_seed: int = 1234, noise_seed: int = 0, ema_decay: float | None = None):
        super().__init__()
        if not loss_scale > 0:
            raise ValueError(f"model.loss_scale must be > 0; got {loss_scale}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"model.ema_decay must lie in [0, 1) or be null (no EMA); got {ema_decay}")
        self.network = network
        self.ema = EMA(network, ema_decay) if ema_decay is not None else None
        if self.ema is not None:  # follow the module's train / eval mode like every submodule (it has no gradients)
            self.ema.module.train(self.training)
        self.schedule = schedule
        self.loss_scale = loss_scale
        self.eval_noise_seed = eval_noise_seed
        self.noise_seed = noise_seed
        self.val_loss = MeanMetric()
        self._noise_gen: torch.Generator | None = None
        self._noise_gen_state: Tensor | None = None

    # -- noise -------------------------------------------------------------------------------
    @property
    def noise_generator(self) -> torch.Generator:
        """Per-rank generator of the training times and noise; its state is checkpointed."""
        if self._noise_gen is None:
            self._noise_gen = torch.Generator(device=self.device).manual_seed(self.noise_seed + self.global_rank)
            if self._noise_gen_state is not None:
                self._noise_gen.set_state(self._noise_gen_state)
        return self._noise_gen

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["noise_generator_state"] = self.noise_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._noise_gen_state = checkpoint.get("noise_generator_state")
        self._noise_gen = None

    # -- the networks --------------------------------------------------------------------------
    @property
    def inference_network(self) -> nn.Module:
        """The network of validation, diagnostics and sampling: the EMA copy when enabled, else ``network``."""
        return self.ema.module if self.ema is not None else self.network

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.network)

    # -- the objective -----------------------------------------------------------------------
    def predict_noise(self, x_t: Tensor, t: Tensor, **conditioning: Tensor) -> Tensor:
        """Training mode: the trained network; otherwise (validation) ``inference_network``."""
        network = self.network if self.training else self.inference_network
        return network(x_t, self.schedule.model_time(t).to(x_t.device), **conditioning)

    def conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Extra network inputs taken from the batch (class labels for a conditional DiT)."""
        return {}

    def diffusion_loss(self, x0: Tensor, t: Tensor, noise: Tensor, **conditioning: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss (B,), the noisy input and the prediction."""
        x_t = self.schedule.add_noise(x0, t.to(x0.device), noise)
        eps_hat = self.predict_noise(x_t, t, **conditioning)
        per_sample = self.loss_scale * (eps_hat.float() - noise.float()).pow(2).flatten(1).mean(1)
        return per_sample, x_t, eps_hat

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x0 = batch["x0"]
        g = self.noise_generator
        t = self.schedule.sample_times(x0.shape[0], generator=g, device=x0.device)
        noise = torch.randn(x0.shape, generator=g, dtype=x0.dtype, device=x0.device)
        per_sample, _, _ = self.diffusion_loss(x0, t, noise, **self.conditioning(batch))
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {self.global_step}: stopping before the optimiser step. "
                f"The last good checkpoint is kept in the run's checkpoints/ folder; lower the learning rate "
                f"(optimizer.init_args.lr) or resume from it with --ckpt_path=last.")
        self.log("train/ddpm_loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    # -- evaluation --------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Every sample at every evaluation time. Returns what the diagnostics need (sample-major)."""
        x0 = batch["x0"]  # (B, ...)
        times = self.schedule.eval_times()  # (n_t,)
        n_t = times.numel()
        noise = evaluation_noise(batch["index"].cpu(), n_t, tuple(x0.shape[1:]), self.eval_noise_seed,
                                 dtype=x0.dtype).to(x0.device).flatten(0, 1)  # (B n_t, ...)
        t = times.repeat(x0.shape[0]).to(x0.device)  # (B n_t,)
        cond = {k: expand_over_times(v, n_t) for k, v in self.conditioning(batch).items()}
        x0_rep = expand_over_times(x0, n_t)
        per_sample, x_t, eps_hat = self.diffusion_loss(x0_rep, t, noise, **cond)
        self.val_loss.update(per_sample)
        self.log("val/ddpm_loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        extras = {k: expand_over_times(v, n_t) for k, v in batch.items() if k not in ("x0", "index")}
        return {**extras, "x0": x0_rep, "x_t": x_t, "t": t, "abar": self.schedule.alpha_bar(t).to(x0.device),
                "noise": noise, "eps_hat": eps_hat, "loss": per_sample,
                "sample_index": expand_over_times(batch["index"], n_t), "n_times": torch.tensor(n_t)}

    # -- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, sampler: str = "auto", n_steps: int | None = None,
               generator: torch.Generator | None = None, callback=None, callback_steps=None,
               shape: tuple[int, ...] | None = None, progress: bool = True, **sampler_kwargs: Any) -> Tensor:
        """n samples (n, *shape) from ``inference_network`` (``models.sampling.generate``: samplers
        ddpm | ddim | sde | ode, ``auto`` = ddpm for discrete schedules, sde for continuous ones)."""
        from diffusion_theory.models.sampling import generate

        return generate(self, n, sampler=sampler, n_steps=n_steps, generator=generator, callback=callback,
                        callback_steps=callback_steps, shape=shape, progress=progress, **sampler_kwargs)

    def configure_optimizers(self):
        # Used only when no optimizer is configured (LightningCLI's `optimizer:` section overrides this).
        return torch.optim.Adam(self.parameters(), lr=1e-3)
