"""Tracking and checkpoint plumbing: AtomicCheckpointIO next to other plugins, checkpoints as W&B artifacts,
offline segments of a resumed run uploaded oldest first (diffusion_theory/wandb_sync.py, scripts/wandb_sync.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import wandb_log
from conftest import ROOT, run_fit_subprocess, tiny_mtgm_args
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.plugins.precision import DoublePrecision

from diffusion_theory.checkpointing import AtomicCheckpointIO, with_atomic_checkpoint_io
from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.wandb_sync import offline_segments, sync_commands, wandb_sync_has_append

# -- AtomicCheckpointIO --------------------------------------------------------------------------


def test_atomic_checkpoint_io_is_appended_to_other_plugins():
    env = LightningEnvironment()
    plugins = with_atomic_checkpoint_io([env])
    assert plugins[0] is env and isinstance(plugins[1], AtomicCheckpointIO) and len(plugins) == 2
    assert isinstance(with_atomic_checkpoint_io(None)[0], AtomicCheckpointIO)
    assert with_atomic_checkpoint_io(env)[0] is env  # a single plugin, not a list
    user_io = TorchCheckpointIO()
    assert with_atomic_checkpoint_io([env, user_io]) == [env, user_io]  # the user's CheckpointIO wins


@pytest.mark.parametrize(
    "plugins,expected_io",
    [
        ([], AtomicCheckpointIO),
        (["lightning.pytorch.plugins.precision.DoublePrecision"], AtomicCheckpointIO),  # any other plugin
        (
            ["lightning.pytorch.plugins.precision.DoublePrecision", "lightning.fabric.plugins.TorchCheckpointIO"],
            TorchCheckpointIO,
        ),
    ],
)
def test_trainer_keeps_config_plugins_and_atomic_io(tmp_path, plugins, expected_io):
    config = tmp_path / "plugins.yaml"
    config.write_text(
        "trainer:\n  plugins:\n" + "".join(f"    - class_path: {p}\n" for p in plugins)
        if plugins
        else "trainer:\n  plugins: null\n"
    )
    cli = DiffusionCLI(
        args=tiny_mtgm_args(tmp_path) + ["--config", str(config), "--run.wandb_mode=disabled"], run=False
    )
    io = cli.trainer.strategy.checkpoint_io
    assert type(io) is expected_io
    if plugins:
        assert isinstance(cli.trainer.precision_plugin, DoublePrecision)  # the config's plugin is there too


# -- checkpoints as W&B artifacts ----------------------------------------------------------------


def artifact_records(run_dir):
    from wandb.proto import wandb_internal_pb2

    out = []
    for wandb_file in run_dir.glob("wandb/offline-run-*/run-*.wandb"):
        for raw in wandb_log.read_records(wandb_file):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(raw)
            if rec.WhichOneof("record_type") == "artifact":
                out.append(rec.artifact)
    return out


def test_log_checkpoints_records_a_model_artifact_offline(tmp_path):
    # in a child process, as a user runs it: a W&B service of its own (in this process the service is shared
    # with every earlier test, and its artifact record was seen to go missing in a full-suite run)
    res = run_fit_subprocess(tiny_mtgm_args(tmp_path, name="art", max_steps=10, extra=["--run.log_checkpoints=true"]))
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = tmp_path / "mtgm" / "art"
    wandb_log.wait_until_complete(run_dir)
    deadline = time.time() + 60  # the artifact record is written by W&B's service asynchronously
    while not artifact_records(run_dir) and time.time() < deadline:
        time.sleep(0.5)
    (artifact,) = artifact_records(run_dir)
    assert artifact.type == "model" and artifact.name.startswith("model-mtgm-art")
    assert {e.path for e in artifact.manifest.contents} == {"last.ckpt", "best.ckpt"}
    assert {"latest", "step-10"} <= set(artifact.aliases)
    assert "uploads with `wandb sync`" in res.stdout + res.stderr


def test_checkpoints_are_not_artifacts_by_default(tmp_path):
    DiffusionCLI(args=tiny_mtgm_args(tmp_path, name="noart", max_steps=5))
    wandb_log.wait_until_complete(tmp_path / "mtgm" / "noart")
    assert artifact_records(tmp_path / "mtgm" / "noart") == []


# -- offline segments of a resumed run -----------------------------------------------------------


def logged_steps(segment) -> list[float]:
    from wandb.proto import wandb_internal_pb2

    steps = []
    for raw in wandb_log.read_records(next(segment.glob("run-*.wandb"))):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            steps += [
                float(i.value_json)
                for i in rec.history.item
                if (i.key or "/".join(i.nested_key)) == "trainer/global_step"
            ]
    return steps


def test_resumed_run_segments_sync_oldest_first(tmp_path):
    DiffusionCLI(args=tiny_mtgm_args(tmp_path, name="seg", max_steps=10))
    DiffusionCLI(args=tiny_mtgm_args(tmp_path, name="seg", max_steps=20) + ["--ckpt_path=last"])
    run_dir = tmp_path / "mtgm" / "seg"
    wandb_log.wait_until_complete(run_dir)
    segments = offline_segments(run_dir)
    assert len(segments) == 2 and segments[0].name.split("-")[-1] == segments[1].name.split("-")[-1]
    first, second = (logged_steps(s) for s in segments)
    assert max(first) <= 10 < max(second) and min(second) >= 10  # oldest first: the first fit, then the resumed one
    assert sync_commands(segments, append=True) == [f"wandb sync {segments[0]}", f"wandb sync --append {segments[1]}"]
    assert sync_commands(segments, append=False) == [f"wandb sync {segments[0]} {segments[1]}"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/wandb_sync.py"), str(run_dir)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == sync_commands(segments)


def test_sync_flavour_follows_the_installed_wandb():
    from click.testing import CliRunner
    from wandb.cli.cli import sync

    help_text = CliRunner().invoke(sync, ["--help"]).output
    assert wandb_sync_has_append() == ("--append" in help_text)


def test_segments_of_two_runs_are_refused(tmp_path):
    for name in ("offline-run-20260101_000000-aaa", "offline-run-20260101_000001-bbb"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    with pytest.raises(ValueError, match="several W&B runs"):
        offline_segments(tmp_path)


def test_a_segment_started_in_the_same_second_keeps_its_run_id(tmp_path):
    # W&B names a second segment of one run that starts within the same second `offline-run-<ts>-<id>-1`
    # (wandb_init.set_sync_dir_suffix); the id comes from the run file, and the suffixed folder sorts after
    for name, suffix in (("offline-run-20260101_000000-mtgm-seg-1", 1), ("offline-run-20260101_000000-mtgm-seg", 0)):
        folder = tmp_path / "wandb" / name
        folder.mkdir(parents=True)
        (folder / "run-mtgm-seg.wandb").write_bytes(b"x" * (suffix + 1))
    segments = offline_segments(tmp_path)
    assert [s.name for s in segments] == [
        "offline-run-20260101_000000-mtgm-seg",
        "offline-run-20260101_000000-mtgm-seg-1",
    ]
