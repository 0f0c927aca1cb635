"""Shared fixtures: a tiny MTGM run through the real CLI, W&B offline in a temporary folder."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb_cache"))
    monkeypatch.delenv("DIFFUSION_THEORY_RUN_DIR", raising=False)
    monkeypatch.chdir(ROOT)


def tiny_mtgm_args(root: Path, name: str = "tiny", max_steps: int = 20, extra: list[str] | None = None) -> list[str]:
    """configs/mtgm.yaml shrunk to seconds: d=8, M=4, K=2, P=16, 32 evaluation samples."""
    return [
        "--config",
        str(ROOT / "configs/mtgm.yaml"),
        f"--run.root={root}",
        f"--run.name={name}",
        "--data.init_args.d=8",
        "--data.init_args.M=4",
        "--data.init_args.K=2",
        "--data.init_args.P=16",
        "--data.init_args.n_eval=32",
        "--data.init_args.eval_batch_size=8",
        "--data.init_args.batch_size=16",
        "--data.init_args.steps_per_epoch=10",
        f"--trainer.max_steps={max_steps}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=5",
    ] + (extra or [])


def subprocess_env(extra: dict | None = None) -> dict:
    """This process's environment for a child run, without the handle of our W&B service: a child that
    inherited WANDB_SERVICE would open its run in this process's service, which then outlives a killed child."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, **(extra or {})}


def run_fit_subprocess(args: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = subprocess_env(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/fit.py"), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def logged_values(rows: list[dict[str, str]], name: str) -> list[float]:
    """Every logged value of ``name`` in metrics.csv order (rows without it skipped)."""
    values = [float(r[name]) for r in rows if r.get(name) not in (None, "")]
    assert values, f"{name} was never logged"
    return values


def last_value(rows: list[dict[str, str]], name: str) -> float:
    return logged_values(rows, name)[-1]


def smoke_reproduce_cmd(paper: str, tmp_path: Path, seeds: int, *only: str) -> tuple[list[str], Path]:
    """`scripts/reproduce.py <paper> --scale smoke` with its runs and report under tmp_path: (command, report path)."""
    report = tmp_path / "docs" / "reproduction.md"
    cmd = [sys.executable, str(ROOT / "scripts/reproduce.py"), paper, "--scale", "smoke"]
    cmd += [a for study in only for a in ("--only", study)]
    cmd += ["--seeds", str(seeds), "--root", str(tmp_path / "runs"), "--report", str(report)]
    return cmd, report
