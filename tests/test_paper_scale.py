"""Paper-scale runs (minutes to hours on a CPU, minutes on a GPU): `make test-slow`."""
from __future__ import annotations

import pytest

from conftest import ROOT, last_value, read_metrics
from diffusion_theory.cli import DiffusionCLI


@pytest.mark.slow
def test_mtgm_paper_scale_learns_mean_denoising(tmp_path):
    """Sec. 5.1 settings (d=64, M=8, K=4, P=256, rho=0.3): the loss approaches the Bayes risk and attention
    concentrates on same-pattern keys. Thresholds are what the one-layer model reaches here (docs/reproduction.md),
    not the paper's 0.005: see the Bayes-gap study there."""
    DiffusionCLI(args=["--config", str(ROOT / "configs/mtgm_paper.yaml"), f"--run.root={tmp_path}", "--run.name=paper",
                       "--trainer.max_steps=2000", "--trainer.enable_progress_bar=false",
                       "--run.wandb_mode=disabled"])
    rows = read_metrics(tmp_path / "mtgm_paper" / "paper")
    bayes, oracle = last_value(rows, "val/bayes_risk"), last_value(rows, "val/oracle_risk")
    assert 0 < bayes - oracle < 0.1 * bayes  # Prop. 2: R_Bayes close to R_oracle at P = 256 (measured: 4 %)
    assert last_value(rows, "val/bayes_gap") < 0.02
    assert last_value(rows, "val/same_pattern_attention") > 0.6
    assert last_value(rows, "val/output_scale_error") < 0.05
