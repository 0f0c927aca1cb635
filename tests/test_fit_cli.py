"""scripts/fit.py end to end: run folder, metrics, figures, W&B offline record, resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import wandb_log
import yaml
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess, subprocess_env, tiny_mtgm_args
from lightning.pytorch import Callback

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
    for name in (
        "val/ddpm_loss",
        "val/bayes_risk",
        "val/oracle_risk",
        "val/excess_risk",
        "val/bayes_gap",
        "val/score_error",
        "val/same_pattern_attention",
        "val/output_scale_error",
        "theory/nu_min",
        "theory/delta",
        "theory/snr",
        "val/score_error/t_bin_0",
        "val/qk_same/min_pi",
        "train/ddpm_loss",
    ):
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


def start_fit(args: list[str]) -> subprocess.Popen:
    """scripts/fit.py in a child process, as a user starts it (stderr kept for failure messages)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/fit.py"), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL the whole job, as a scheduler kills its cgroup: W&B's service runs in a session of its own."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def wait_for_checkpoint(path: Path, min_step: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    """Poll ``path`` until it holds a checkpoint of at least ``min_step``; returns its step (0 on time-out)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists():
            try:
                step = torch.load(path, weights_only=True, map_location="cpu")["global_step"]
            except Exception:  # being replaced this instant
                step = 0
            if step >= min_step:
                return step
        time.sleep(0.3)
    return 0


def metric_rows(run_dir: Path) -> list[tuple]:
    """(step, metric, value) of every logged value in metrics.csv, in file order."""
    return [
        (int(r["step"]), k, float(v))
        for r in read_metrics(run_dir)
        for k, v in r.items()
        if k not in ("step", "epoch") and v not in ("", None)
    ]


def assert_no_duplicate_steps(run_dir: Path) -> None:
    keys = [(step, name) for step, name, _ in metric_rows(run_dir)]
    assert len(keys) == len(set(keys)), "a metric is logged twice for one step"


def test_default_run_writes_last_ckpt_at_each_validation(tmp_path):
    """Pins the default checkpointing path against Lightning upgrades: no extra flag, and after the first
    validation (step 10 of this config) last.ckpt holds step 10, before training ends."""
    seen = {}

    class Probe(Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 12:
                path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
                seen["step"] = torch.load(path, weights_only=True)["global_step"] if path.exists() else None

    cli = DiffusionCLI(args=tiny_mtgm_args(tmp_path, name="pin", max_steps=15), run=False)
    cli.trainer.callbacks.append(Probe())
    cli.fit()
    assert seen["step"] == 10
    assert torch.load(tmp_path / "mtgm" / "pin" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 15


def test_resume_after_sigkill_restores_the_exact_training_state(tmp_path):
    """Default flags: killed after its second validation, resumed with --ckpt_path=last, the run ends with
    the weights, optimiser, EMA, noise generator and metrics of an uninterrupted run of the same length."""
    extra = ["--model.init_args.ema_decay=0.9", "--trainer.log_every_n_steps=1"]
    total = 40
    args = tiny_mtgm_args(tmp_path, name="killed", max_steps=100000, extra=extra)
    proc = start_fit(args)
    last = tmp_path / "mtgm" / "killed" / "checkpoints" / "last.ckpt"
    step_at_kill = wait_for_checkpoint(last, 20, proc)
    kill_job(proc)
    assert step_at_kill >= 20, proc.stderr.read().decode()[-2000:]
    s0 = torch.load(last, weights_only=True)["global_step"]
    assert s0 < total
    # resume with ckpt_path=last: no run name, the newest run of the experiment is found
    resume = tiny_mtgm_args(tmp_path, name="killed", max_steps=total, extra=extra) + ["--ckpt_path=last"]
    fit([a for a in resume if a != "--run.name=killed"])
    fit(tiny_mtgm_args(tmp_path, name="straight", max_steps=total, extra=extra))
    resumed = torch.load(last, weights_only=True)
    straight = torch.load(tmp_path / "mtgm" / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == total
    assert float(resumed["optimizer_states"][0]["state"][0]["step"]) == total  # Adam's state was restored
    assert any(k.startswith("ema.") for k in resumed["state_dict"])
    for name, value in straight["state_dict"].items():  # network and EMA weights
        torch.testing.assert_close(resumed["state_dict"][name], value, msg=name)
    assert torch.equal(resumed["noise_generator_states"][0], straight["noise_generator_states"][0])
    # metrics.csv: every step once, and the same values as the uninterrupted run
    assert_no_duplicate_steps(tmp_path / "mtgm" / "killed")
    got, want = metric_rows(tmp_path / "mtgm" / "killed"), metric_rows(tmp_path / "mtgm" / "straight")
    # (the theory/ constants are logged once per fit, so the resumed fit logs them again at its first step)
    assert sorted(k[:2] for k in got if not k[1].startswith("theory/")) == sorted(
        k[:2] for k in want if not k[1].startswith("theory/")
    )
    want_values = {k[:2]: k[2] for k in want}
    for step, name, value in got:
        if not name.startswith("theory/"):
            assert value == pytest.approx(want_values[step, name], rel=1e-4, abs=1e-6), (step, name)
    # the same W&B run id continues
    run_dirs = sorted((tmp_path / "mtgm" / "killed" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and len({d.name.split("-", 3)[-1] for d in run_dirs}) == 1


def test_ddp_rank_killed_then_resumed(tmp_path):
    """Two CPU processes, rank 1 killed mid-run: the job stops; --ckpt_path=last continues it to the end
    with both ranks' noise generators, the optimiser and the EMA restored, and no duplicate metric rows."""
    extra = [
        "--config",
        str(ROOT / "configs/trainer/ddp_cpu.yaml"),
        "--model.init_args.ema_decay=0.9",
        "--trainer.log_every_n_steps=1",
    ]
    total = 40
    args = tiny_mtgm_args(tmp_path, name="ddpkill", max_steps=100000, extra=extra)
    proc = start_fit(args)
    last = tmp_path / "mtgm" / "ddpkill" / "checkpoints" / "last.ckpt"
    step_at_kill = wait_for_checkpoint(last, 20, proc)
    # Lightning's launcher: this process is rank 0, its python children are the other ranks
    workers = [
        pid
        for pid in descendants(proc.pid)
        if "fit.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
    ]
    if not (step_at_kill >= 20 and workers):
        kill_job(proc)
        pytest.fail(f"checkpoint step {step_at_kill}, ranks {workers}: {proc.stderr.read().decode()[-3000:]}")
    os.kill(workers[0], signal.SIGKILL)
    try:
        proc.wait(timeout=120)  # the surviving rank notices and exits
    finally:
        kill_job(proc)
    before = torch.load(last, weights_only=True)
    s0 = before["global_step"]
    assert 20 <= s0 < total and len(before["noise_generator_states"]) == 2
    assert not torch.equal(*before["noise_generator_states"])  # each rank's own state is kept
    res = run_fit_subprocess(
        tiny_mtgm_args(tmp_path, name="ddpkill", max_steps=total, extra=extra) + ["--ckpt_path=last"]
    )
    assert res.returncode == 0, res.stderr[-4000:]
    after = torch.load(last, weights_only=True)
    assert after["global_step"] == total
    assert float(after["optimizer_states"][0]["state"][0]["step"]) == total
    ema = {k[len("ema.module.") :]: v for k, v in after["state_dict"].items() if k.startswith("ema.module.")}
    net = {k[len("network.") :]: v for k, v in after["state_dict"].items() if k.startswith("network.")}
    assert ema.keys() == net.keys() and any(not torch.equal(ema[k], net[k]) for k in ema)
    assert len(after["noise_generator_states"]) == 2 and not torch.equal(*after["noise_generator_states"])
    run_dir = tmp_path / "mtgm" / "ddpkill"
    assert_no_duplicate_steps(run_dir)
    assert sum(name == "val/ddpm_loss" for _, name, _ in metric_rows(run_dir)) == total // 10  # every validation once


def test_non_finite_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    args = tiny_mtgm_args(
        tmp_path,
        name="nan",
        max_steps=200,
        extra=[
            "--optimizer=torch.optim.SGD",
            "--optimizer.lr=1e12",
            "--run.checkpoint_every_n_steps=1",
            "--data.init_args.steps_per_epoch=200",
        ],
    )
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
    fit(
        tiny_mtgm_args(
            tmp_path,
            name="bf16",
            max_steps=10,
            extra=["--config", str(ROOT / "configs/trainer/bf16.yaml"), "--run.wandb_mode=disabled"],
        )
    )
    rows = read_metrics(tmp_path / "mtgm" / "bf16")
    assert torch.isfinite(torch.tensor(last_value(rows, "val/bayes_gap")))
    cfg = yaml.safe_load((tmp_path / "mtgm" / "bf16" / "config.yaml").read_text())
    assert cfg["trainer"]["precision"] == "bf16-mixed"


def test_bad_value_prints_one_line_naming_the_key_and_exits_2(tmp_path):
    res = run_fit_subprocess(tiny_mtgm_args(tmp_path, name="bad", extra=["--data.init_args.K=0"]))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1] == (
        "ConfigError: data.init_args.K: must satisfy 0 < K < M = 4 (Definition 1); got K = 0"
    )
    assert len([line for line in res.stderr.splitlines() if "rror" in line]) == 1
    assert not (tmp_path / "mtgm" / "bad").exists()
    # a nested component is named by its key and class; the debug switch shows the traceback
    res = run_fit_subprocess(
        tiny_mtgm_args(tmp_path, name="bad", extra=["--model.init_args.schedule.init_args.T=0"]),
        env={"DIFFUSION_THEORY_DEBUG": "1"},
    )
    assert res.returncode != 0 and "Traceback" in res.stderr
    # (the network's T interpolates the schedule's, and the network is built first)
    assert "ConfigError: model.init_args.network (OneLayerTransformer): model.T must be >= 1; got 0" in res.stderr


def test_explain_names_nested_components():
    from diffusion_theory.config_errors import explain
    from diffusion_theory.networks.dit import DiT

    config = {
        "model": {
            "class_path": "DiffusionModule",
            "init_args": {"network": {"class_path": "diffusion_theory.networks.dit.DiT", "init_args": {}}},
        }
    }
    try:
        DiT(input_shape=[4, 2], depth=0)
    except ValueError as err:
        message = explain(err, config)
    assert message.startswith("model.init_args.network (DiT): ") and "depth" in message
    assert explain(RuntimeError("plain"), config) == "plain"


def test_no_monitor_writes_last_ckpt_only(tmp_path):
    """run.monitor=null: last.ckpt alone (Lightning's default epoch=..-step=...ckpt writer is not added)."""
    fit(tiny_mtgm_args(tmp_path, name="nomon", max_steps=10, extra=["--run.monitor=null", "--run.wandb_mode=disabled"]))
    assert sorted(p.name for p in (tmp_path / "mtgm" / "nomon" / "checkpoints").iterdir()) == ["last.ckpt"]
