"""scripts/fit.py end to end: run folder, metrics, figures, W&B offline record, resume, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import wandb_log
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess, subprocess_env, tiny_mtgm_args
from diffusion_theory.cli import DiffusionCLI


def fit(args):
    return DiffusionCLI(args=args)


def test_fit_end_to_end_writes_run_folder(tmp_path):
    cli = fit(tiny_mtgm_args(tmp_path, max_steps=20))
    run_dir = tmp_path / "mtgm" / "tiny"
    assert Path(cli.trainer.default_root_dir) == run_dir
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["data"]["init_args"]["P"] == 16 and cfg["model"]["init_args"]["network"]["init_args"]["d"] == 8
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "checkpoints" / "best.ckpt").exists()
    rows = read_metrics(run_dir)
    for name in ("val/ddpm_loss", "val/bayes_risk", "val/oracle_risk", "val/excess_risk", "val/bayes_gap",
                 "val/score_error", "val/same_pattern_attention", "val/output_scale_error", "theory/nu_min",
                 "theory/delta", "theory/snr", "val/score_error/t_bin_0", "val/qk_same/min_pi", "train/ddpm_loss"):
        assert torch.isfinite(torch.tensor(last_value(rows, name))), name
    # identities between logged metrics
    loss, bayes, oracle = (last_value(rows, f"val/{n}") for n in ("ddpm_loss", "bayes_risk", "oracle_risk"))
    assert last_value(rows, "val/bayes_gap") == pytest.approx(loss - bayes, abs=1e-5)
    assert last_value(rows, "val/excess_risk") == pytest.approx(loss - oracle, abs=1e-5)
    assert oracle <= bayes
    assert last_value(rows, "theory/nu_min") == pytest.approx(0.25)  # uniform pi~: 1/M
    for fig in ("fig2a_risks", "fig2e_attention", "fig4_qk_products", "output_scale", "attention_matrix"):
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 1000, fig


def test_wandb_offline_records_config_metrics_and_figures(tmp_path):
    fit(tiny_mtgm_args(tmp_path, name="wb", max_steps=10))
    keys, config, images = wandb_log.summarize(tmp_path / "mtgm" / "wb")
    assert {"val/ddpm_loss", "val/bayes_risk", "val/score_error", "train/ddpm_loss"} <= keys
    assert any(k.startswith("figures/") for k in keys) and images >= 5
    assert config["data"]["init_args"]["K"] == 2 and config["run"]["experiment"] == "mtgm"


def test_wandb_disabled_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    fit(tiny_mtgm_args(tmp_path, name="nowb", max_steps=10))
    assert not (tmp_path / "mtgm" / "nowb" / "wandb").exists()
    assert (tmp_path / "mtgm" / "nowb" / "metrics.csv").exists()


def descendants(pid: int) -> list[int]:
    """All descendant process ids of ``pid`` (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def test_resume_after_sigkill_restores_step_and_optimiser(tmp_path):
    extra = ["--run.checkpoint_every_n_steps=5", "--data.init_args.steps_per_epoch=1000"]
    args = tiny_mtgm_args(tmp_path, name="killed", max_steps=100000, extra=extra)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/fit.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env())
    last = tmp_path / "mtgm" / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step_at_kill = 0
    while time.time() < deadline:
        if last.exists():
            try:
                step_at_kill = torch.load(last, weights_only=False, map_location="cpu")["global_step"]
            except Exception:  # being replaced this instant
                step_at_kill = 0
            if step_at_kill >= 15:
                break
        time.sleep(0.5)
    # the whole job, as a scheduler kills its cgroup: W&B's service runs in a session of its own
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert step_at_kill >= 15, proc.stderr.read().decode()[-2000:]
    before = torch.load(last, weights_only=False, map_location="cpu")
    s0 = before["global_step"]
    adam_steps = before["optimizer_states"][0]["state"][0]["step"]
    assert float(adam_steps) == s0
    # resume with ckpt_path=last: no run name, the newest run of the experiment is found
    resume = tiny_mtgm_args(tmp_path, name="killed", max_steps=s0 + 10, extra=extra) + ["--ckpt_path=last"]
    resume = [a for a in resume if a != "--run.name=killed"]
    fit(resume)
    after = torch.load(last, weights_only=False, map_location="cpu")
    assert after["global_step"] == s0 + 10
    assert float(after["optimizer_states"][0]["state"][0]["step"]) == s0 + 10  # optimiser state was restored
    # the same W&B run id continues
    run_dirs = sorted((tmp_path / "mtgm" / "killed" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and len({d.name.split("-", 3)[-1] for d in run_dirs}) == 1


def test_non_finite_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    args = tiny_mtgm_args(tmp_path, name="nan", max_steps=200, extra=[
        "--optimizer=torch.optim.SGD", "--optimizer.lr=1e12", "--run.checkpoint_every_n_steps=1",
        "--data.init_args.steps_per_epoch=200"])
    with pytest.raises(Exception, match="training loss is (nan|inf)"):
        fit(args)
    ckpt = torch.load(tmp_path / "mtgm" / "nan" / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


BAD_INPUTS = [
    (["--data.init_args.K=0"], "K"),
    (["--data.init_args.K=4"], "K"),
    (["--data.init_args.d=3"], "d: must be >= M"),
    (["--data.init_args.rho=0"], "rho"),
    (["--data.init_args.pi_tilde=[0.5,0.5,0.0,0.0]"], "pi_tilde"),
    (["--data.init_args.pi_tilde=[0.5,0.3,0.3,0.1]"], "sum to 1"),
    (["--data.init_args.pi_min=0.5"], "pi_min"),
    (["--model.init_args.schedule.init_args.T=0"], "T must be >= 1"),
    (["--model.init_args.schedule.init_args.alpha_1=1.2"], "alpha_1"),
    (["--model.init_args.schedule.init_args.alpha_T=0"], "alpha_T"),
    (["--data.init_args.eval_pi_tilde=[1.0]"], "eval_pi_tilde"),
]


@pytest.mark.parametrize("extra,needle", BAD_INPUTS)
def test_bad_config_value_fails_before_training(tmp_path, extra, needle):
    with pytest.raises((ValueError, SystemExit)) as info:
        fit(tiny_mtgm_args(tmp_path, name="bad", extra=extra))
    msg = str(info.value) if isinstance(info.value, ValueError) else ""
    if isinstance(info.value, SystemExit):
        pytest.fail(f"expected a ValueError naming {needle!r}, got SystemExit")
    assert needle in msg
    assert not (tmp_path / "mtgm" / "bad" / "checkpoints").exists()  # nothing trained


def test_unknown_key_and_missing_file_give_one_clear_error(tmp_path):
    res = run_fit_subprocess(tiny_mtgm_args(tmp_path, extra=["--data.init_args.nonsense=3"]))
    assert res.returncode != 0 and "nonsense" in res.stderr and "Traceback" not in res.stderr
    res = run_fit_subprocess(["--config", str(tmp_path / "missing.yaml")])
    assert res.returncode != 0 and "missing.yaml" in res.stderr and "Traceback" not in res.stderr


def test_bf16_mixed_precision_run(tmp_path):
    fit(tiny_mtgm_args(tmp_path, name="bf16", max_steps=10,
                       extra=["--config", str(ROOT / "configs/trainer/bf16.yaml"), "--run.wandb_mode=disabled"]))
    rows = read_metrics(tmp_path / "mtgm" / "bf16")
    assert torch.isfinite(torch.tensor(last_value(rows, "val/bayes_gap")))
    cfg = yaml.safe_load((tmp_path / "mtgm" / "bf16" / "config.yaml").read_text())
    assert cfg["trainer"]["precision"] == "bf16-mixed"
