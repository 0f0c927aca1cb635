"""Paper 2 at the paper's scale (configs/gp_paper.yaml: N = 128, 12 blocks, DDPM 1000 steps, 32k steps): hours on a
GPU, far longer on a CPU. `make test-slow`."""

from __future__ import annotations

import pytest
from conftest import ROOT, read_metrics

from diffusion_theory.cli import DiffusionCLI


@pytest.mark.slow
def test_gp_paper_scale_learns_the_covariance_and_gamma_like_attention(tmp_path):
    """Thresholds are the CPU-scale run's (configs/gp.yaml, docs/reproduction.md: eps 4.1, best-layer attention-Gamma
    correlation 0.95, e-e share 0.75, V share on z 0.67), loosened; not yet calibrated at paper scale."""
    DiffusionCLI(
        args=[
            "--config",
            str(ROOT / "configs/gp_paper.yaml"),
            "--trainer.accelerator=auto",
            "--trainer.devices=1",
            f"--run.root={tmp_path}",
            "--run.name=paper",
            "--trainer.enable_progress_bar=false",
            "--run.wandb_mode=disabled",
        ]
    )
    rows = read_metrics(tmp_path / "gp_paper" / "paper")
    eps = [float(r["val/cov_rel_error"]) for r in rows if r.get("val/cov_rel_error")]
    last = {k: float(v) for r in rows for k, v in r.items() if v not in (None, "")}
    assert eps[-1] < 10 and eps[-1] < eps[0] / 10
    assert last["val/attn_gamma_corr"] > 0.8
    assert last["val/qk_ee_share"] > 0.35
    assert last["val/v_frame_share"] > 0.55
