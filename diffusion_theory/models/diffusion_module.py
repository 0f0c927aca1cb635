"""The LightningModule that trains any noise-predicting network on the DDPM objective.

Training (paper 1 (MTGM) eq. (3), paper 2 (GP) eq. (6) in noise-prediction form):
    t ~ schedule (uniform / first / last),  E ~ N(0, I),  X^t = sqrt(abar_t) X^0 + sqrt(1 - abar_t) E
    loss = loss_scale * mean ||f(X^t, t) - E||^2          (loss_scale = 1/2 gives paper 1 (MTGM) eq. (3)'s 1/(2dPT))

Validation runs every evaluation sample at every ``schedule.eval_times()`` with fixed noise
(``diffusion.evaluation``) and hands the noisy batch to the diagnostics (callbacks) through
the step output, so the network runs once per batch whatever the number of diagnostics.

With ``ema_decay`` set, an exponential moving average of the network's weights (``networks.ema.EMA``,
updated after every optimiser step, saved in the checkpoint's state_dict) is the network of
validation, of the diagnostics (``inference_network``) and of ``sample``, as in DiT.

Conditioning: ``condition_keys`` names the batch entries the network takes as keyword inputs (class
labels ``y`` for a class-conditional DiT). Training, validation, ``sample`` and every diagnostic call the
network through one method, ``denoise(x_t, t, cond, guidance_scale)``; a conditional network without its
inputs is an error unless the null class is asked for (``drop_labels``). ``label_dropout`` replaces labels
by the null class in training (classifier-free guidance, Ho & Salimans 2022), drawn from the module's
checkpointed noise generator.

Checkpoints carry the hyper-parameters as plain config (class paths and values, ``init_config``), so
``DiffusionModule.load_from_checkpoint(path)`` rebuilds the model alone and the file loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from diffusion_theory.diffusion.evaluation import (
    NOISE_METHODS,
    NoiseMethod,
    evaluation_noise,
    expand_over_times,
    needs_noisy_grid,
)
from diffusion_theory.diffusion.schedules import NoiseSchedule
from diffusion_theory.init_config import init_config
from diffusion_theory.models.compile import compile_in_place, compile_options
from diffusion_theory.models.nonfinite import NonFiniteGuard, NonFiniteLossError  # noqa: F401  (re-exported)
from diffusion_theory.networks.ema import EMA


class DiffusionModule(pl.LightningModule):
    """Trains ``network(x_t, model_time, **cond) -> predicted noise`` under ``schedule``.

    Args:
        network: the denoiser, e.g. ``OneLayerTransformer`` (paper 1 (MTGM) eq. (1)) or ``DiT``.
        schedule: the forward process (``LinearAlphaSchedule``, ``LinearBetaSchedule``, ...).
        loss_scale: multiplies the per-dimension mean squared error; 0.5 is paper 1 (MTGM) eq. (3).
        eval_noise_seed: seed of the evaluation noise grid (shared by all runs and ranks).
        eval_noise: how the evaluation noise is drawn (``diffusion.evaluation``): ``generator`` (one seeded
            generator per sample, the values of earlier runs; fastest on CPUs) or ``hash`` (counter-based,
            vectorised on the batch's device).
        noise_seed: seed of the training noise and times; rank r uses noise_seed + r.
        ema_decay: if set (e.g. DiT's 0.9999), keep an EMA of the network's weights with this decay and
            validate and sample with it; None (default) uses the trained weights themselves.
        condition_keys: batch entries passed to the network as keyword inputs, e.g. [y] for a class-conditional
            DiT; must equal the network's ``condition_names`` when it declares them. [] (default): unconditional.
        label_dropout: probability that a training sample's labels are replaced by the null class (classifier-free
            guidance training; DiT: 0.1); needs a network with a null class (``has_null_class``).
        compile: compile ``network`` in place with ``torch.compile`` (``nn.Module.compile``; ``models.compile``):
            false (default), true (torch.compile's defaults) or a dict of its options (``{mode: max-autotune}``).
            Parameter names and checkpoint keys stay those of the eager network, so the EMA and checkpoints are
            unchanged; the EMA copy itself runs eagerly.
    """

    def __init__(
        self,
        network: nn.Module,
        schedule: NoiseSchedule,
        loss_scale: float = 0.5,
        eval_noise_seed: int = 1234,
        noise_seed: int = 0,
        ema_decay: float | None = None,
        condition_keys: list[str] = [],  # noqa: B006 (jsonargparse shows it)
        label_dropout: float = 0.0,
        eval_noise: NoiseMethod = "generator",
        compile: bool | dict[str, Any] = False,
    ):
        super().__init__()
        compile_kwargs = compile_options(compile)  # validated before any work
        if network is None:
            raise ValueError(
                "model.network is missing: this checkpoint does not record the network's config (it was "
                "built in Python from a network without recorded arguments); pass network=... to "
                "load_from_checkpoint"
            )
        condition_keys = list(condition_keys)
        declared = getattr(network, "condition_names", None)
        if declared is not None and sorted(condition_keys) != sorted(declared):
            raise ValueError(
                f"model.condition_keys must name the conditioning inputs of the network "
                f"{type(network).__name__}, {list(declared)} (the batch entries passed to it); "
                f"got {condition_keys}"
            )
        if not 0 <= label_dropout < 1:
            raise ValueError(f"model.label_dropout must lie in [0, 1); got {label_dropout}")
        if label_dropout > 0 and not (condition_keys and getattr(network, "has_null_class", False)):
            raise ValueError(
                f"model.label_dropout > 0 needs a conditional network with a null class (condition_keys "
                f"and, for DiT, num_classes > 0 and null_class: true); got label_dropout={label_dropout}, "
                f"condition_keys={condition_keys}"
            )
        self._save_plain_hyperparameters(network, schedule)
        self.condition_keys = condition_keys
        self.label_dropout = float(label_dropout)
        if not loss_scale > 0:
            raise ValueError(f"model.loss_scale must be > 0; got {loss_scale}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"model.ema_decay must lie in [0, 1) or be null (no EMA); got {ema_decay}")
        self.network = network
        self.ema = EMA(network, ema_decay) if ema_decay is not None else None
        if self.ema is not None:  # follow the module's train / eval mode like every submodule (it has no gradients)
            self.ema.module.train(self.training)
        compile_in_place(self.network, compile_kwargs)  # after the EMA's deep copy, which stays eager
        self.schedule = schedule
        self.loss_scale = loss_scale
        self.eval_noise_seed = eval_noise_seed
        if eval_noise not in NOISE_METHODS:
            raise ValueError(f"eval_noise: must be one of {', '.join(NOISE_METHODS)}; got {eval_noise!r}")
        self.eval_noise = eval_noise
        self.noise_seed = noise_seed
        self.val_loss = MeanMetric()
        self._noise_gen: torch.Generator | None = None
        self._noise_gen_states: list[Tensor] | None = None  # restored from a checkpoint, one per rank
        self.nonfinite = NonFiniteGuard()  # NaN / inf training loss: stop, never checkpoint it (models/nonfinite.py)

    # -- noise -------------------------------------------------------------------------------
    @property
    def noise_generator(self) -> torch.Generator:
        """Per-rank generator of the training times, noise and label dropout; every rank's state is checkpointed.

        A resumed run restores rank r's state; a rank the checkpoint has no state for (more processes than
        when it was written) is seeded by (noise_seed + r, global step)."""
        if self._noise_gen is None:
            rank, states = self.global_rank, self._noise_gen_states
            self._noise_gen = torch.Generator(device=self.device)
            if states is not None and rank < len(states):
                self._noise_gen.set_state(states[rank].clone())  # set_state needs a tensor with its own storage
            else:
                self._noise_gen.manual_seed(self.noise_seed + rank + 1_000_003 * self.global_step)
        return self._noise_gen

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stores every rank's generator state (a collective under DDP: ``Trainer.save_checkpoint`` runs this
        hook on every rank and rank zero writes the file)."""
        self.nonfinite.check(self)  # no checkpoint of weights updated by a non-finite loss
        state = self.noise_generator.get_state()  # (S,) uint8, on the CPU
        if self.trainer.world_size > 1:
            gathered = self.all_gather(state.to(self.device))  # (world, S)
            checkpoint["noise_generator_states"] = [g.cpu().clone() for g in gathered]  # own storage each
        else:
            checkpoint["noise_generator_states"] = [state]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("noise_generator_states")
        if states is None and checkpoint.get("noise_generator_state") is not None:  # checkpoints of before 2026-11-28
            states = [checkpoint["noise_generator_state"]]
        self._noise_gen_states = states
        self._noise_gen = None

    # -- hyper-parameters --------------------------------------------------------------------
    def on_train_end(self) -> None:
        self.nonfinite.check(self)  # a non-finite loss in the last steps of a run fails it too

    def _save_plain_hyperparameters(self, network: nn.Module, schedule: NoiseSchedule) -> None:
        """``hparams`` as plain config. From LightningCLI (scripts/fit.py) they are the run's config with class
        paths, loaded back by its jsonargparse instantiator; a module built in Python records the configs of its
        network and schedule (``init_config``), in the same form. Never objects: checkpoints stay loadable with
        ``torch.load(weights_only=True)``."""
        try:  # the config LightningCLI hands to save_hyperparameters (class paths and values)
            from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

            given = _given_hyperparameters.get() or {}
        except ImportError:  # another Lightning version: the recorded arguments below give the same configs
            given = {}
        self.save_hyperparameters(ignore=["network", "schedule"])
        nets = {"network": network, "schedule": schedule}
        configs = {
            k: init_config(given[k]) if isinstance(given.get(k), dict) else init_config(obj) for k, obj in nets.items()
        }
        for key, config in configs.items():
            self.hparams[key] = config
        if all(configs.values()) and "_instantiator" not in self.hparams:
            cls = type(self)
            self.hparams["_class_path"] = f"{cls.__module__}.{cls.__qualname__}"
            self.hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
        self._hparams_initial = dict(self.hparams)

    # -- the networks --------------------------------------------------------------------------
    @property
    def inference_network(self) -> nn.Module:
        """The network of validation, diagnostics and sampling: the EMA copy when enabled, else ``network``."""
        return self.ema.module if self.ema is not None else self.network

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.network)

    # -- the denoiser ------------------------------------------------------------------------
    def denoise(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: dict[str, Tensor] | None = None,
        guidance_scale: float | None = None,
        network: nn.Module | None = None,
        drop_labels: bool | Tensor = False,
    ) -> Tensor:
        """The predicted noise eps(x_t, t | cond): the one way training, validation, sampling and diagnostics
        call the network.

        Args:
            x_t: noisy inputs (B, ...); t: the schedule's native times (B,) (``model_time`` is applied here).
            cond: {key: (B,) tensor} for every ``condition_keys`` entry (None or {} for an unconditional model).
            guidance_scale: None: the plain (conditional) prediction. A number w: classifier-free guidance through
                the network's ``forward_with_cfg``, eps_null + w (eps_cond - eps_null) (w = 1 equals None up to
                rounding).
            network: the network to run; default: the trained one in training mode, else ``inference_network``.
            drop_labels: True, or a (B,) bool mask: the null class for (those) rows; with True, cond may be None.
        """
        if network is None:
            network = self.network if self.training else self.inference_network
        cond = dict(cond or {})
        extra = sorted(set(cond) - set(self.condition_keys))
        if extra:
            raise ValueError(f"denoise: conditioning {extra} is not among model.condition_keys = {self.condition_keys}")
        dropping_all = isinstance(drop_labels, bool) and drop_labels
        missing = [k for k in self.condition_keys if cond.get(k) is None]
        if missing and not dropping_all:
            raise ValueError(
                f"denoise: the network is conditional on {self.condition_keys} (model.condition_keys) but "
                f"got no {missing}; pass them (sample(n, y=...)), or ask for the null class with "
                f"drop_labels=True"
            )
        model_time = self.schedule.model_time(t).to(x_t.device)
        if guidance_scale is not None:
            if not self.condition_keys or dropping_all:
                raise ValueError(
                    "denoise: guidance_scale needs a conditional model and its labels "
                    "(classifier-free guidance mixes the conditional and null-class predictions)"
                )
            if not hasattr(network, "forward_with_cfg"):
                raise ValueError(
                    f"denoise: guidance_scale needs a network with forward_with_cfg; {type(network).__name__} has none"
                )
            return network.forward_with_cfg(x_t, model_time, cfg_scale=float(guidance_scale), **cond)
        if dropping_all or isinstance(drop_labels, Tensor):
            return network(x_t, model_time, drop_labels=drop_labels, **cond)
        return network(x_t, model_time, **cond)

    def conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The network's conditioning inputs taken from the batch: {key: batch[key]} for ``condition_keys``."""
        missing = [k for k in self.condition_keys if k not in batch]
        if missing:
            raise ValueError(f"model.condition_keys: the batch has no entry {missing} (its entries: {sorted(batch)})")
        return {k: batch[k] for k in self.condition_keys}

    # -- the objective -----------------------------------------------------------------------
    def diffusion_loss(
        self,
        x0: Tensor,
        t: Tensor,
        noise: Tensor,
        cond: dict[str, Tensor] | None = None,
        drop_labels: bool | Tensor = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss (B,), the noisy input and the prediction."""
        x_t = self.schedule.add_noise(x0, t.to(x0.device), noise)
        eps_hat = self.denoise(x_t, t, cond, drop_labels=drop_labels)
        per_sample = self.loss_scale * (eps_hat.float() - noise.float()).pow(2).flatten(1).mean(1)
        return per_sample, x_t, eps_hat

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x0 = batch["x0"]
        g = self.noise_generator
        t = self.schedule.sample_times(x0.shape[0], generator=g, device=x0.device)
        noise = torch.randn(x0.shape, generator=g, dtype=x0.dtype, device=x0.device)
        drop: bool | Tensor = False
        if self.label_dropout > 0:  # drawn after t and noise: runs without label dropout keep their streams
            drop = torch.rand(x0.shape[0], generator=g, device=x0.device) < self.label_dropout  # (B,)
        per_sample, _, _ = self.diffusion_loss(x0, t, noise, self.conditioning(batch), drop_labels=drop)
        loss = per_sample.mean()
        self.nonfinite.observe(self, loss)  # on an accelerator without a host sync every step
        self.log("train/ddpm_loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    # -- evaluation --------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor] | None:
        """Every sample at every time of ``schedule.eval_times()``, with the fixed evaluation noise (drawn on the
        batch's device, ``diffusion.evaluation``). Returns what the batch diagnostics need (sample-major).

        Skipped (returns None, no val/ddpm_loss) when nothing reads the noisy grid: the run's diagnostics are all
        weight or generation diagnostics and no checkpoint monitors val/ddpm_loss (``needs_noisy_grid``)."""
        trainer = self._trainer
        if trainer is not None and not needs_noisy_grid(trainer.callbacks):
            return None
        x0 = batch["x0"]  # (B, ...)
        times = self.schedule.eval_times()  # (n_t,)
        n_t = times.numel()
        noise = evaluation_noise(
            batch["index"],
            n_t,
            tuple(x0.shape[1:]),
            self.eval_noise_seed,
            dtype=x0.dtype,
            method=self.eval_noise,
            device=x0.device,
        ).flatten(0, 1)  # (B n_t, ...)
        t = times.repeat(x0.shape[0]).to(x0.device)  # (B n_t,)
        cond = {k: expand_over_times(v, n_t) for k, v in self.conditioning(batch).items()}
        x0_rep = expand_over_times(x0, n_t)
        per_sample, x_t, eps_hat = self.diffusion_loss(x0_rep, t, noise, cond)
        self.val_loss.update(per_sample)
        self.log("val/ddpm_loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        extras = {k: expand_over_times(v, n_t) for k, v in batch.items() if k not in ("x0", "index")}
        return {
            **extras,
            "x0": x0_rep,
            "x_t": x_t,
            "t": t,
            "abar": self.schedule.alpha_bar(t).to(x0.device),
            "noise": noise,
            "eps_hat": eps_hat,
            "loss": per_sample,
            "sample_index": expand_over_times(batch["index"], n_t),
            "n_times": torch.tensor(n_t),
        }

    # -- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: str = "auto",
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        callback=None,
        callback_steps=None,
        shape: tuple[int, ...] | None = None,
        progress: bool = True,
        cond: dict[str, Any] | None = None,
        guidance_scale: float | None = None,
        drop_labels: bool = False,
        **kwargs: Any,
    ) -> Tensor:
        """n samples (n, *shape) from ``inference_network`` (``diffusion.generation.generate``: samplers
        ddpm | ddim | sde | ode, ``auto`` = ddpm for discrete schedules, sde for continuous ones).

        A conditional model takes its inputs by name (``sample(n, y=3)`` or ``y=tensor of (n,)``) or in ``cond``;
        an int label is used for every sample. ``guidance_scale``: classifier-free guidance (``denoise``);
        ``drop_labels=True``: unconditional samples from the null class. Other keyword arguments go to the sampler.
        """
        from diffusion_theory.diffusion.generation import generate

        cond = dict(cond or {})
        for key in self.condition_keys:
            if key in kwargs:
                cond[key] = kwargs.pop(key)
        cond = {k: self._per_sample(k, v, n) for k, v in cond.items() if v is not None}
        return generate(
            self,
            n,
            sampler=sampler,
            n_steps=n_steps,
            generator=generator,
            callback=callback,
            callback_steps=callback_steps,
            shape=shape,
            progress=progress,
            cond=cond,
            guidance_scale=guidance_scale,
            drop_labels=drop_labels,
            **kwargs,
        )

    def _per_sample(self, key: str, value: Any, n: int) -> Tensor:
        """A conditioning value as an (n,) tensor on the module's device: an int or 0-d tensor is repeated."""
        value = torch.as_tensor(value, device=self.device)
        if value.dim() == 0:
            value = value.expand(int(n))
        if value.shape[:1] != (int(n),):
            raise ValueError(
                f"sample: {key} must be one value or one per sample, shape ({int(n)},); got {tuple(value.shape)}"
            )
        return value

    def configure_optimizers(self):
        # Used only when no optimizer is configured (LightningCLI's `optimizer:` section overrides this).
        return torch.optim.Adam(self.parameters(), lr=1e-3)
