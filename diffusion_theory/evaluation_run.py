"""Validation and diagnostics of a trained checkpoint (``scripts/evaluate.py``).

    python scripts/evaluate.py --ckpt runs/gp/<run>/checkpoints/last.ckpt
    python scripts/evaluate.py --ckpt ... --config more_diagnostics.yaml          # other callbacks or settings
    python scripts/evaluate.py --ckpt ... --trainer.strategy=ddp --trainer.devices=2 --trainer.accelerator=cpu

The run's own config (``<run>/config.yaml``, next to ``<run>/checkpoints/<x>.ckpt``, written by
``scripts/fit.py``) rebuilds its data module, model and diagnostics; further ``--config`` files and
``--key=value`` overrides compose on top, as in ``scripts/fit.py`` (a later ``trainer.callbacks`` list
replaces the run's). ``Trainer.validate`` restores the checkpoint's weights (loaded with weights_only)
and runs one validation epoch: every diagnostic (each runs, whatever its ``every_n_epochs``), under DDP
as in training. Rank zero writes into the
output folder (default ``<run>/evaluation/<ckpt stem>/``)

    metrics.json   {metric: value}
    metrics.csv    metric,value rows
    config.yaml    the resolved configuration of the evaluation
    figures/*.png  the diagnostics' figures

and prints the metrics as a table. Nothing is written into the run's own metrics.csv, checkpoints or W&B run.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.cli import DiffusionCLI, RunConfig


def run_config_path(ckpt: Path) -> Path:
    """<run>/config.yaml for a checkpoint at <run>/checkpoints/<x>.ckpt."""
    return ckpt.resolve().parent.parent / "config.yaml"


def default_out_dir(ckpt: Path) -> Path:
    ckpt = ckpt.resolve()
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "evaluation" / ckpt.stem


class EvaluationCLI(DiffusionCLI):
    """``DiffusionCLI`` that builds a run's components without fitting: the output folder is the evaluation's,
    no run folder, checkpoint callbacks or loggers (the metrics are returned and written by ``evaluate``)."""

    def __init__(self, out_dir: Path, args: list[str]):
        self.out_dir = Path(out_dir)
        super().__init__(args=args, run=False)

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        self.run_config = RunConfig(**cfg.run.as_dict()) if hasattr(cfg.run, "as_dict") else RunConfig(**dict(cfg.run))
        self.run_dir = self.out_dir
        self.resume_from = None
        cfg.trainer.default_root_dir = str(self.out_dir)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        kwargs["logger"] = False
        return LightningCLI.instantiate_trainer(self, **kwargs)


def evaluate_checkpoint(
    ckpt: str | Path,
    configs: list[str] | None = None,
    overrides: list[str] | None = None,
    out_dir: str | Path | None = None,
    print_table: bool = True,
) -> dict[str, float]:
    """Run the validation epoch of ``ckpt`` with its run's diagnostics; returns {metric: value} on every rank and
    writes metrics.json / metrics.csv (and prints the table) on rank zero."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ValueError(f"--ckpt: no checkpoint file at {ckpt}")
    run_config = run_config_path(ckpt)
    extra = list(configs or [])
    for path in extra:
        if not Path(path).is_file():
            raise ValueError(f"--config: no file at {path}")
    if not run_config.is_file() and not extra:
        raise ValueError(
            f"--ckpt: no run config at {run_config} (a checkpoint of scripts/fit.py lives in "
            f"<run>/checkpoints/ next to <run>/config.yaml); pass the run's config with --config"
        )
    out = Path(out_dir) if out_dir is not None else default_out_dir(ckpt)
    args = ["--config", str(run_config)] if run_config.is_file() else []
    for path in extra:
        args += ["--config", str(path)]
    args += list(overrides or []) + ["--ckpt_path=null"]
    with warnings.catch_warnings():  # the script's own argv is not the CLI's: that is intended here
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = EvaluationCLI(out, args)
    cli.check_capabilities()
    for callback in cli.trainer.callbacks:  # one evaluation: every diagnostic runs, whatever its training period
        if isinstance(callback, Diagnostic):
            callback.every_n_epochs = 1
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), verbose=False, weights_only=True)
    metrics = {name: float(value) for name, value in sorted(cli.trainer.callback_metrics.items())}
    if cli.trainer.is_global_zero:
        write_metrics(metrics, out, ckpt)
        if print_table:
            print(format_table(metrics, f"{ckpt}: {len(metrics)} metrics, written to {out}"), flush=True)
    return metrics


def write_metrics(metrics: dict[str, float], out: Path, ckpt: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"checkpoint": str(ckpt), "metrics": metrics}, indent=2))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "value"])
        writer.writerows([name, repr(value)] for name, value in metrics.items())


def format_table(metrics: dict[str, float], title: str) -> str:
    width = max([len("metric")] + [len(name) for name in metrics])
    lines = [title, f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{name:<{width}}  {value:.6g}" for name, value in metrics.items()]
    return "\n".join(lines)
