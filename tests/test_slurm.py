"""SLURM: Lightning's auto-requeue on SIGUSR1 writes an HPC checkpoint and calls `scontrol requeue`; the requeued
job (same SLURM_JOB_ID) resumes it in the same run folder with the same W&B id (diffusion_theory/slurm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import ROOT, run_fit_subprocess, subprocess_env, tiny_mtgm_args
from test_fit_cli import descendants

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.slurm import requeue_checkpoint

JOB_ID = "4242"


def slurm_env(tmp_path: Path) -> dict:
    """What `srun` sets for one task, and a fake `scontrol` on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    return {
        "SLURM_JOB_ID": JOB_ID,
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "dt-fit",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }


def step_of(path: Path) -> int:
    return torch.load(path, weights_only=False, map_location="cpu")["global_step"]


def test_sigusr1_writes_hpc_checkpoint_requeues_and_the_next_start_resumes_it(tmp_path):
    env = slurm_env(tmp_path)
    extra = ["--run.checkpoint_every_n_steps=5", "--data.init_args.steps_per_epoch=100000"]
    args = [a for a in tiny_mtgm_args(tmp_path, max_steps=1000000, extra=extra) if not a.startswith("--run.name")]
    run_dir = tmp_path / "mtgm" / f"slurm-{JOB_ID}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/fit.py"), *args],
        cwd=ROOT,
        env=subprocess_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last, hpc = run_dir / "checkpoints" / "last.ckpt", run_dir / "hpc_ckpt_1.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and not last.exists() and proc.poll() is None:  # training is under way
        time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=SIGUSR1@90` sends before the time limit
    while time.time() < deadline and not (hpc.exists() and (tmp_path / "scontrol.log").exists()):
        time.sleep(0.5)
    for pid in [proc.pid, *descendants(proc.pid)]:  # then SLURM ends the job (its whole cgroup)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert hpc.exists(), proc.stderr.read().decode()[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", JOB_ID]
    # the requeued job: same SLURM_JOB_ID, no --ckpt_path; it continues from the newest checkpoint
    newest = max((hpc, last), key=lambda p: p.stat().st_mtime)
    resumed_step = step_of(newest)
    assert resumed_step >= 1
    args = [
        a for a in tiny_mtgm_args(tmp_path, max_steps=resumed_step + 5, extra=extra) if not a.startswith("--run.name")
    ]
    res = run_fit_subprocess(args, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {newest}" in res.stdout + res.stderr
    assert step_of(last) == resumed_step + 5
    assert [p.name for p in (tmp_path / "mtgm").iterdir()] == [run_dir.name]  # the same run folder
    segments = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and len({s.name.split("-", 3)[-1] for s in segments}) == 1  # the same W&B id


def test_requeue_checkpoint_is_the_newest_and_only_under_slurm(tmp_path, monkeypatch):
    for k in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "checkpoints").mkdir()
    files = [tmp_path / "hpc_ckpt_1.ckpt", tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_2.ckpt"]
    for i, f in enumerate(files):
        f.write_bytes(b"x")
        os.utime(f, (1000 + i, 1000 + i))
    assert requeue_checkpoint(tmp_path) is None  # not under SLURM
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "dt-fit")
    assert requeue_checkpoint(tmp_path) == str(files[2])
    os.utime(files[1], (2000, 2000))  # last.ckpt written after the signal
    assert requeue_checkpoint(tmp_path) == str(files[1])
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation is not a batch job
    assert requeue_checkpoint(tmp_path) is None
    monkeypatch.setenv("SLURM_JOB_NAME", "dt-fit")
    assert requeue_checkpoint(tmp_path / "empty") is None  # a fresh job


def test_sbatch_example_requeues_on_sigusr1_and_launches_fit_with_srun(tmp_path, monkeypatch):
    script = ROOT / "scripts" / "slurm" / "fit.sbatch"
    directives = [
        line.split(None, 1)[1].strip() for line in script.read_text().splitlines() if line.startswith("#SBATCH")
    ]
    assert "--signal=SIGUSR1@90" in directives and "--requeue" in directives  # to the tasks, not only B(atch)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # run it with a fake srun that records its command line, as SLURM would start it on 2 nodes x 4 tasks
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "srun.args"}\n')
    (bin_dir / "srun").chmod(0o755)
    env = subprocess_env(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SLURM_SUBMIT_DIR": str(ROOT),
            "SLURM_JOB_ID": JOB_ID,
            "SLURM_NTASKS_PER_NODE": "4",
            "SLURM_NNODES": "2",
        }
    )
    res = subprocess.run(
        ["bash", str(script), "configs/mtgm.yaml", "--trainer.max_steps=7"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    argv = (tmp_path / "srun.args").read_text().splitlines()
    assert argv[:2] == ["python", "scripts/fit.py"]
    # the arguments parse with our CLI (on this CPU machine: accelerator overridden, one device)
    monkeypatch.setenv("SLURM_JOB_ID", JOB_ID)
    cli = DiffusionCLI(
        args=argv[2:]
        + [
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.num_nodes=1",
            f"--run.root={tmp_path}",
            "--run.wandb_mode=disabled",
        ],
        run=False,
    )
    assert cli.trainer.max_steps == 7 and cli.config["trainer.accelerator"] == "cpu"
    assert "--trainer.devices=4" in argv and "--trainer.num_nodes=2" in argv
    assert cli.run_dir.name == f"slurm-{JOB_ID}"
