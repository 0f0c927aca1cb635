"""The command line: ``python scripts/fit.py --config configs/X.yaml [--config more.yaml] [--key=value ...]``.

A ``LightningCLI`` in ``omegaconf+`` mode (``${...}`` interpolations are resolved on the final merged
config, so `--data.init_args.d=8` also changes `${data.init_args.d}` elsewhere) with no
subcommand: it always fits. What it adds to Lightning:

- a run folder ``<run.root>/<run.experiment>/<run.name>/`` with the resolved ``config.yaml``,
  ``metrics.csv`` (same names as W&B), ``checkpoints/`` (``last.ckpt`` and the best by
  ``run.monitor``) and ``figures/*.png``; the same folder on every DDP rank;
- W&B logging that never crashes for lack of network: online when credentials and network are
  there, offline otherwise (``wandb sync`` uploads later), ``WANDB_MODE`` respected;
- ``--ckpt_path=last`` resumes the newest run of the experiment (or ``--run.name``), same W&B run;
- checkpoints written atomically, so a killed or failing run keeps its last good checkpoint;
- under SLURM a requeued job (same ``SLURM_JOB_ID``: same run folder and W&B id) resumes its newest HPC or
  last checkpoint (``diffusion_theory.slurm``); a run started by ``wandb agent`` (``configs/sweeps/mtgm_K.yaml``,
  ``gp_n.yaml``) gets its own folder ``sweep-<W&B run id>``; ``run.log_checkpoints`` logs the checkpoints as a
  W&B artifact (``diffusion_theory.artifacts``);
- ``--list`` prints the components available by short name, built-in and from plugins, and exits;
  a config error also names any plugin that failed to import (``diffusion_theory.registry``);
- the diagnostics' capability requirements are checked before the fit starts.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from diffusion_theory import registry
from diffusion_theory.artifacts import CheckpointArtifacts
from diffusion_theory.checkpointing import LastCheckpoint, with_atomic_checkpoint_io
from diffusion_theory.config_errors import ConfigError, explain
from diffusion_theory.datamodules.shapes import check_sample_shape
from diffusion_theory.loggers import RunCSVLogger, TrimMetricsOnResume
from diffusion_theory.protocols import check_requirements
from diffusion_theory.quiet import silence_known_notices
from diffusion_theory.slurm import requeue_checkpoint

RUN_DIR_ENV = "DIFFUSION_THEORY_RUN_DIR"


@dataclass
class RunConfig:
    """Where a run lives and how it is tracked.

    Args:
        experiment: experiment name: the folder under ``root`` and the W&B group.
        name: run name (a timestamp if unset; SLURM_JOB_ID / torchrun's run id when launched by them).
        root: folder holding all runs.
        wandb_mode: ``auto`` (online if credentials and network, else offline), online, offline, disabled.
        wandb_project: W&B project.
        wandb_entity: W&B entity (team or user); None uses the default of the credentials.
        monitor: metric that selects the best checkpoint (None: keep only ``last.ckpt``).
        monitor_mode: ``min`` or ``max``.
        checkpoint_every_n_steps: write ``last.ckpt`` also every n training steps (it is always written at
            each validation and at the end of training).
        log_checkpoints: at the end of a successful fit, log ``last.ckpt`` and ``best.ckpt`` to W&B as a model
            artifact (``diffusion_theory.artifacts``; an offline run uploads it with ``wandb sync``).
    """

    experiment: str = "default"
    name: str | None = None
    root: str = "runs"
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    wandb_project: str = "diffusion-theory"
    wandb_entity: str | None = None
    monitor: str | None = "val/ddpm_loss"
    monitor_mode: Literal["min", "max"] = "min"
    checkpoint_every_n_steps: int | None = None
    log_checkpoints: bool = False


# ----------------------------------------------------------------------------------------
# Run folder and W&B mode
# ----------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A run or experiment name as a folder name (also the run folders of ``experiments``)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", name).strip("-") or "run"


def resolve_run_dir(run: RunConfig, resuming: bool) -> Path:
    """The run folder, identical on every process of a DDP job."""
    if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[RUN_DIR_ENV])  # a child process spawned by Lightning's DDP launcher
    base = Path(run.root) / safe_name(run.experiment)
    if run.name:
        return base / safe_name(run.name)
    if resuming:
        runs = sorted(
            (p for p in base.glob("*") if (p / "checkpoints" / "last.ckpt").exists()),
            key=lambda p: (p / "checkpoints" / "last.ckpt").stat().st_mtime,
        )
        if not runs:
            raise ConfigError(
                f"ckpt_path=last: no run of experiment {run.experiment!r} under {base} "
                f"has checkpoints/last.ckpt; pass --run.name=<run> or a checkpoint path"
            )
        return runs[-1]
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # a run started by `wandb agent`
        return base / safe_name(f"sweep-{os.environ['WANDB_RUN_ID']}")
    for env in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        if os.environ.get(env) and os.environ[env] != "none":
            return base / safe_name(f"{env.split('_')[0].lower()}-{os.environ[env]}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        path, k = base / f"{stamp}-{k}", k + 1
    return path


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def network_reachable(host: str = "api.wandb.ai", port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_wandb_mode(requested: str) -> str:
    """WANDB_MODE wins; ``auto`` is online only with credentials and a reachable server."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    if requested != "auto":
        return requested
    return "online" if wandb_credentials_present() and network_reachable() else "offline"


# ----------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config to the run folder (rank zero) and sends it to W&B."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        flat = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import json

                logger.experiment.config.update(json.loads(flat), allow_val_change=True)


class DiffusionArgumentParser(LightningArgumentParser):
    """Appends the plugins that failed to import to every config error: a short ``class_path`` naming one of
    their classes otherwise fails with jsonargparse's bare "Expected a dot import path string"."""

    def error(self, message: str, ex: Exception | None = None):
        report = registry.failure_report()
        if report and report not in message:
            message = f"{message}\n{report}"
        return super().error(message, ex)


LIST_FLAG = "--list"


class DiffusionCLI(LightningCLI):
    """``LightningCLI`` that always fits, with run folders, W&B and resume (see module docstring)."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any):
        registry.load_components()  # built-in and plugin classes become available by short name
        silence_known_notices()  # known library notices only (diffusion_theory/quiet.py)
        argv = sys.argv[1:] if args is None else args
        if isinstance(argv, (list, tuple)) and LIST_FLAG in argv:
            print(registry.format_components())
            raise SystemExit(0)
        self._do_fit = run
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_class=DiffusionArgumentParser,
            parser_kwargs={
                "parser_mode": "omegaconf+",
                "description": (
                    "Fit a diffusion model from --config files. `--list` prints the data modules, models, networks, "
                    "schedules and callbacks available by short name (built-in and plugins) and exits."
                ),
            },
            args=args,
            run=False,
            **kwargs,
        )
        if self._do_fit:
            self.fit()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from: a path, or 'last' for the newest run's last.ckpt",
        )

    def instantiate_classes(self) -> None:
        """Builds the components; a constructor's ValueError / TypeError becomes one ``ConfigError`` naming the
        config key (``data.init_args.K: must satisfy ...``), with the original exception chained."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:
            config = self.config.as_dict() if hasattr(self.config, "as_dict") else {}
            raise ConfigError(explain(err, config)) from err

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        run = RunConfig(**cfg.run.as_dict()) if hasattr(cfg.run, "as_dict") else RunConfig(**dict(cfg.run))
        if run.checkpoint_every_n_steps is not None and run.checkpoint_every_n_steps < 1:
            raise ConfigError(f"run.checkpoint_every_n_steps: must be >= 1 or null; got {run.checkpoint_every_n_steps}")
        self.run_config = run
        self.run_dir = resolve_run_dir(run, resuming=cfg.ckpt_path == "last")
        os.environ[RUN_DIR_ENV] = str(self.run_dir)
        if cfg.ckpt_path == "last":
            last = self.run_dir / "checkpoints" / "last.ckpt"
            if not last.exists():
                raise ConfigError(f"ckpt_path=last: {last} does not exist")
            self.resume_from = str(last)
        elif cfg.ckpt_path:
            if not Path(cfg.ckpt_path).exists():
                raise ConfigError(f"ckpt_path: {cfg.ckpt_path} does not exist")
            self.resume_from = cfg.ckpt_path
        else:
            self.resume_from = requeue_checkpoint(self.run_dir)  # a requeued SLURM job continues (slurm.py)
        cfg.trainer.default_root_dir = str(self.run_dir)

    def build_loggers(self) -> list:
        run, run_dir = self.run_config, self.run_dir
        loggers: list = [RunCSVLogger(str(run_dir))]
        mode = resolve_wandb_mode(run.wandb_mode)
        if mode != "disabled":
            run_id = safe_name(f"{run.experiment}-{run_dir.name}")[:120]
            loggers.append(
                WandbLogger(
                    save_dir=str(run_dir),
                    project=run.wandb_project,
                    entity=run.wandb_entity,
                    name=run_dir.name,
                    group=run.experiment,
                    id=run_id,
                    resume="allow",
                    mode=mode,
                )
            )
        return loggers

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_cfg.get("callbacks") or [])
        run = self.run_config
        ckpt_dir = str(self.run_dir / "checkpoints")
        callbacks.append(LastCheckpoint(ckpt_dir, every_n_train_steps=run.checkpoint_every_n_steps))
        callbacks.append(TrimMetricsOnResume())
        if run.monitor:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    filename="best",
                    monitor=run.monitor,
                    mode=run.monitor_mode,
                    save_top_k=1,
                    enable_version_counter=False,
                )
            )
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = self.build_loggers()
        kwargs["plugins"] = with_atomic_checkpoint_io(trainer_cfg.get("plugins"))
        if run.log_checkpoints:
            callbacks.append(CheckpointArtifacts(ckpt_dir, monitor=run.monitor))
        kwargs["callbacks"] = callbacks
        if trainer_cfg.get("enable_checkpointing") is None and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            kwargs["enable_checkpointing"] = False  # else Lightning adds its own epoch=..-step=...ckpt writer
        return super().instantiate_trainer(**kwargs)

    def fit(self) -> None:
        """Fit, then close the W&B run (flushes an offline run; a failed fit is marked failed)."""
        self.check_capabilities()
        exit_code = 1
        try:
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.resume_from)
            exit_code = 0
        finally:
            finish_wandb(self.trainer, exit_code)
            if self.trainer.is_global_zero:
                print(f"run folder: {self.run_dir}", flush=True)

    def check_capabilities(self) -> None:
        """Before any run folder, W&B run or training step: every diagnostic's ``requires`` is met by the
        data module, network and auxiliary model (``MissingCapabilityError`` names the callback and the missing
        methods)."""
        check_sample_shape(self.datamodule, getattr(self.model, "network", None))  # data vs network input_shape
        for callback in self.trainer.callbacks:
            check_requirements(callback, self.datamodule, getattr(self.model, "network", self.model))


def finish_wandb(trainer: Trainer, exit_code: int) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger._experiment is not None:
            logger.experiment.finish(exit_code=exit_code)
