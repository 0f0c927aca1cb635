"""scripts/sample.py and scripts/evaluate.py on checkpoints: one process and two (torchrun / DDP) give the same
samples and metrics, evaluation reproduces the run's own last validation, bad input fails with one message."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from conftest import ROOT, last_value, read_metrics, subprocess_env

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.diffusion.generation import chunk_generator
from diffusion_theory.evaluation_run import evaluate_checkpoint
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT
from diffusion_theory.sampling_run import SampleRequest, sample_checkpoint

TINY = ROOT / "tests" / "configs" / "gp_tiny.yaml"
COMPARED = [
    "val/ddpm_loss",
    "val/score_error",
    "val/bayes_gap",
    "val/cov_rel_error",
    "val/qk_ee_share",
    "val/attn_gamma_corr",
    "val/attn_gamma_corr/step_800",
    "val/attn_ref_corr",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 10-step run of configs/gp.yaml shrunk by tests/configs/gp_tiny.yaml: its folder."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.chdir(ROOT)
        DiffusionCLI(
            args=[
                "--config",
                str(ROOT / "configs/gp.yaml"),
                "--config",
                str(TINY),
                f"--run.root={root}",
                "--run.name=tiny",
            ]
        )
    return root / "gp" / "tiny"


def run_script(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def script_main(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_sample_script_one_and_two_processes_draw_the_same_samples(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    common = ["--ckpt", str(ckpt), "-n", "10", "--steps", "5", "--chunk_size", "4", "--seed", "3", "--no_progress"]
    run_script(["scripts/sample.py", *common, "--out", str(tmp_path / "one")])
    # 3 chunks (4 + 4 + 2 rows): rank 0 draws chunks 0 and 2, rank 1 chunk 1
    run_script(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "scripts/sample.py",
            *common,
            "--out",
            str(tmp_path / "two"),
        ]
    )
    one, two = torch.load(tmp_path / "one.pt", weights_only=True), torch.load(tmp_path / "two.pt", weights_only=True)
    assert one.shape == (10, 8, 2) and torch.equal(one, two)
    settings = json.loads((tmp_path / "one.json").read_text())
    assert settings["shape"] == [10, 8, 2] and settings["resolved_sampler"] == "sde" and settings["labels"] is None
    assert (tmp_path / "one.png").stat().st_size > 0 and (tmp_path / "two.png").exists()
    # the run's checkpoint holds plain config only (no pickled objects) and rebuilds its model alone
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["network"]["class_path"] == "diffusion_theory.networks.dit.DiT"
    assert hparams["network"]["init_args"]["input_shape"] == [8, 2] and hparams["ema_decay"] == 0.995
    # the script's samples are the module's own: chunk 1 is sample(4) with the generator of (seed 3, chunk 1)
    module = DiffusionModule.load_from_checkpoint(ckpt, weights_only=True)
    chunk = module.sample(4, n_steps=5, generator=chunk_generator(3, 1, module.device), progress=False)
    assert torch.equal(one[4:8], chunk)


def conditional_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = DiT(input_shape=(4, 2), hidden_size=16, depth=1, num_heads=2, pos_dim=8, num_classes=3)
    with torch.no_grad():  # away from the zero init, so that labels change the samples
        for p in net.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    module = DiffusionModule(net, ContinuousVPSchedule(T=5.0), condition_keys=["y"], label_dropout=0.1)
    trainer = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_checkpointing=False,
    )
    trainer.strategy.connect(module)
    module.trainer = trainer
    path = tmp_path / "checkpoints" / "cond.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def test_sample_a_class_conditional_checkpoint_with_guidance(tmp_path, capsys):
    module, ckpt = conditional_checkpoint(tmp_path)
    paths = sample_checkpoint(
        SampleRequest(
            ckpt=str(ckpt),
            n=3,
            classes=[0, 2],
            guidance_scale=2.0,
            steps=6,
            sampler="ode",
            chunk_size=16,
            seed=5,
            progress=False,
        )
    )
    samples = torch.load(paths["samples"], weights_only=True)
    labels = json.loads(paths["settings"].read_text())["labels"]
    assert samples.shape == (6, 4, 2) and labels == [0, 0, 0, 2, 2, 2]
    assert paths["samples"].parent == tmp_path / "samples" and paths["figure"].exists()
    expected = module.sample(
        6,
        y=torch.tensor(labels),
        guidance_scale=2.0,
        sampler="ode",
        n_steps=6,
        generator=chunk_generator(5, 0, module.device),
        progress=False,
    )
    assert torch.allclose(samples, expected, atol=1e-5)
    unguided = module.sample(
        6,
        y=torch.tensor(labels),
        sampler="ode",
        n_steps=6,
        generator=chunk_generator(5, 0, module.device),
        progress=False,
    )
    assert not torch.allclose(samples, unguided, atol=1e-3)  # the guidance scale was used
    main = script_main("sample")
    for argv, message in [
        (["-n", "2"], "pass --classes, or --unconditional"),
        (["-n", "2", "--classes", "0,3"], "the model has 3 classes"),
        (["-n", "0", "--classes", "0"], "-n: must be an integer >= 1"),
        (["-n", "2", "--guidance_scale", "2"], "--guidance_scale: classifier-free guidance needs"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["--ckpt", str(ckpt), "--no_progress", *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_reproduces_the_run_and_two_processes_give_the_same_metrics(tiny_run, tmp_path, capsys):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    single = evaluate_checkpoint(ckpt, out_dir=tmp_path / "single")
    assert "val/ddpm_loss" in capsys.readouterr().out  # the table
    logged = read_metrics(tiny_run)  # the run's own last validation, of the weights of last.ckpt
    for name in COMPARED:
        assert single[name] == pytest.approx(last_value(logged, name), rel=1e-5, abs=1e-7), name
    written = json.loads((tmp_path / "single" / "metrics.json").read_text())["metrics"]
    with open(tmp_path / "single" / "metrics.csv") as f:
        rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(f)}
    assert written == rows == single
    assert (tmp_path / "single" / "figures" / "fig12_attention_scores.png").exists()
    run_script(
        [
            "scripts/evaluate.py",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "ddp"),
            "--trainer.strategy=ddp",
            "--trainer.devices=2",
            "--trainer.accelerator=cpu",
        ]
    )
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]
    assert set(ddp) == set(single)
    for name, value in single.items():
        assert ddp[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_evaluate_with_another_config_and_bad_input(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    only_score = tmp_path / "score.yaml"
    only_score.write_text("trainer:\n  callbacks:\n    - class_path: ScoreError\n      init_args: {n_time_bins: 2}\n")
    metrics = evaluate_checkpoint(ckpt, configs=[str(only_score)], out_dir=tmp_path / "score", print_table=False)
    assert "val/score_error/t_bin_1" in metrics and not any(k.startswith("val/cov") for k in metrics)
    with pytest.raises(ValueError, match="--ckpt: no checkpoint file"):
        evaluate_checkpoint(tmp_path / "missing.ckpt")
    lone = tmp_path / "lone.ckpt"
    lone.write_bytes(ckpt.read_bytes())
    with pytest.raises(ValueError, match="no run config"):
        evaluate_checkpoint(lone)


def test_sample_pictures_fit_the_shape_of_the_data():
    from diffusion_theory.plotting.samples import samples_figure

    g = torch.Generator().manual_seed(0)
    images = samples_figure(
        torch.rand(6, 3, 8, 8, generator=g).numpy(), "images", labels=torch.tensor([0, 0, 0, 1, 1, 1]).numpy()
    )
    shown = [ax for ax in images.axes if ax.images]
    assert len(shown) == 6 and shown[0].images[0].get_array().shape == (8, 8, 3)  # a 2 x 3 grid of RGB images
    assert [ax.get_ylabel() for ax in images.axes if ax.get_ylabel()] == ["class 0", "class 1"]
    sequences = samples_figure(torch.randn(10, 16, 3, generator=g).numpy(), "sequences")
    drawn = [ax for ax in sequences.axes if ax.lines]
    assert len(drawn) == 8 and len(drawn[0].lines) == 3 and len(drawn[0].lines[0].get_xdata()) == 16
    points = samples_figure(torch.randn(30, 1, 2, generator=g).numpy(), "points", labels=(torch.arange(30) % 3).numpy())
    assert len(points.axes[0].collections) == 3  # one scatter per class
    with pytest.raises(ValueError, match="expected"):
        samples_figure(torch.randn(5).numpy(), "bad")
