"""Two-process DDP on the CPU through scripts/fit.py: metrics equal the single-process values."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess, tiny_mtgm_args

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.datamodules import streams

SYNCED = [
    "val/ddpm_loss",
    "val/bayes_risk",
    "val/oracle_risk",
    "val/score_error",
    "val/bayes_gap",
    "val/excess_risk",
    "val/same_pattern_attention",
    "val/qk_same/min_pi",
    "val/score_error/t_bin_4",
]


def test_ddp_two_processes_match_single_process_validation(tmp_path):
    # n_eval = 30 is not a multiple of (world size x batch): shards are uneven, nothing may be padded
    args = tiny_mtgm_args(
        tmp_path,
        name="ddp",
        max_steps=20,
        extra=["--config", str(ROOT / "configs/trainer/ddp_cpu.yaml"), "--data.init_args.n_eval=30"],
    )
    res = run_fit_subprocess(args)
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "mtgm" / "ddp"
    rows = read_metrics(run_dir)
    ddp_values = {name: last_value(rows, name) for name in SYNCED}
    assert sorted(p.name for p in (run_dir / "figures").glob("*.png")) == sorted(
        [
            "attention_matrix.png",
            "excess_risk.png",
            "fig2a_risks.png",
            "fig2e_attention.png",
            "fig4_qk_products.png",
            "output_scale.png",
        ]
    )
    # The same checkpoint validated in one process, on the same evaluation set
    single = tiny_mtgm_args(
        tmp_path,
        name="single",
        extra=["--data.init_args.n_eval=30", "--trainer.devices=1", "--run.wandb_mode=disabled"],
    )
    cli = DiffusionCLI(args=single, run=False)
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"))
    single_values = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for name in SYNCED:
        assert single_values[name] == pytest.approx(ddp_values[name], rel=1e-5, abs=1e-7), name


def test_ranks_draw_different_data_and_noise(monkeypatch):
    from diffusion_theory.datamodules.mtgm import MTGMDataModule

    dm = MTGMDataModule(d=8, M=4, K=2, P=8, batch_size=4, steps_per_epoch=2)
    dm.setup()
    draws = []
    for rank in (0, 1):
        monkeypatch.setattr(streams, "current_rank_and_world", lambda r=rank: (r, 2))
        draws.append(next(iter(dm.train_dataloader()))["x0"])
    assert not torch.allclose(draws[0], draws[1])
    # the evaluation shards are disjoint and cover the set
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(streams, "current_rank_and_world", lambda r=rank: (r, 2))
        shards.append(torch.cat([b["index"] for b in dm.val_dataloader()]))
    assert sorted(torch.cat(shards).tolist()) == list(range(dm.hparams.n_eval))


def test_training_noise_is_offset_by_rank(monkeypatch):
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.theory_transformer import OneLayerTransformer

    draws = []
    for rank in (0, 1):
        monkeypatch.setattr(DiffusionModule, "global_rank", property(lambda self, r=rank: r))
        module = DiffusionModule(OneLayerTransformer(d=4, T=5), LinearAlphaSchedule(T=5))
        draws.append(torch.randn(8, generator=module.noise_generator))
    assert not torch.allclose(draws[0], draws[1])
