"""The GP experiment under two-process DDP on the CPU (scripts/fit.py, configs/trainer/ddp_cpu.yaml): the
generation-based diagnostics split their chunks over the ranks (unevenly here), finish without deadlock, log
once per validation, and equal a single-process validation of the same checkpoint."""

from __future__ import annotations

import pytest
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess

from diffusion_theory.cli import DiffusionCLI

TINY = ROOT / "tests" / "configs" / "gp_tiny.yaml"
COMPARED = [
    "val/ddpm_loss",
    "val/score_error",
    "val/bayes_gap",
    "val/score_error/t_bin_1",
    "val/cov_rel_error",
    "val/cov_error_generated",
    "val/qk_ee_share",
    "val/qk_norm/layer_1/ee",
    "val/v_frame_share",
    "val/attn_gamma_corr",
    "val/attn_gamma_corr/layer_0",
    "val/attn_gamma_corr/step_0",
    "val/attn_ref_corr",
]


def gp_args(root, name: str, extra: list[str]) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs/gp.yaml"),
        "--config",
        str(TINY),
        f"--run.root={root}",
        f"--run.name={name}",
        *extra,
    ]


def test_gp_ddp_two_processes_match_single_process_validation(tmp_path):
    # 40 generated sequences in chunks of 16 (3 chunks: rank 0 draws two, rank 1 one); 12 in chunks of 5 for
    # the attention maps; 10 evaluation sequences in batches of 4 (uneven shards)
    res = run_fit_subprocess(
        gp_args(tmp_path, "ddp", ["--config", str(ROOT / "configs/trainer/ddp_cpu.yaml")]),
        env={"OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "gp" / "ddp"
    rows = read_metrics(run_dir)
    assert sum(1 for r in rows if r.get("val/cov_rel_error")) == 2  # logged once per validation, not per rank
    assert sum(1 for r in rows if r.get("val/attn_gamma_corr")) == 2
    ddp = {name: last_value(rows, name) for name in COMPARED}
    for fig in ("fig1_covariance", "fig12_attention_scores", "fig10_qk_matrices"):
        assert (run_dir / "figures" / f"{fig}.png").exists()
    single = DiffusionCLI(
        args=gp_args(tmp_path, "single", ["--trainer.devices=1", "--run.wandb_mode=disabled"]), run=False
    )
    single.trainer.validate(
        single.model, datamodule=single.datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"), verbose=False
    )
    values = {k: float(v) for k, v in single.trainer.callback_metrics.items()}
    for name in COMPARED:
        assert values[name] == pytest.approx(ddp[name], rel=1e-4, abs=1e-6), name
