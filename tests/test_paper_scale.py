"""Paper-scale runs (minutes to hours on a CPU, minutes on a GPU): `make test-slow`."""

from __future__ import annotations

import pytest
from conftest import ROOT, last_value, logged_values, read_metrics

from diffusion_theory.cli import DiffusionCLI


@pytest.mark.slow
def test_mtgm_paper_scale_learns_mean_denoising(tmp_path):
    """Sec. 5.1 settings (d=64, M=8, K=4, P=256, rho=0.3): the loss approaches the Bayes risk and attention
    concentrates on same-pattern keys. Thresholds are what the one-layer model reaches here (docs/reproduction.md),
    not the paper's 0.005: see the Bayes-gap study there."""
    DiffusionCLI(
        args=[
            "--config",
            str(ROOT / "configs/mtgm_paper.yaml"),
            f"--run.root={tmp_path}",
            "--run.name=paper",
            "--trainer.max_steps=2000",
            "--trainer.enable_progress_bar=false",
            "--run.wandb_mode=disabled",
        ]
    )
    rows = read_metrics(tmp_path / "mtgm_paper" / "paper")
    bayes, oracle = last_value(rows, "val/bayes_risk"), last_value(rows, "val/oracle_risk")
    assert 0 < bayes - oracle < 0.1 * bayes  # Prop. 2: R_Bayes close to R_oracle at P = 256 (measured: 4 %)
    assert last_value(rows, "val/bayes_gap") < 0.02
    assert last_value(rows, "val/same_pattern_attention") > 0.6
    assert last_value(rows, "val/output_scale_error") < 0.05


def gp_run(tmp_path, config: str) -> list[dict[str, str]]:
    DiffusionCLI(
        args=[
            "--config",
            str(ROOT / config),
            f"--run.root={tmp_path}",
            "--run.experiment=gp",
            "--run.name=run",
            "--trainer.enable_progress_bar=false",
            "--run.wandb_mode=disabled",
        ]
    )
    return read_metrics(tmp_path / "gp" / "run")


def assert_gp_model_learned_the_kernel(rows: list[dict[str, str]]) -> None:
    """Sec. 6.1 / Appendix F: the generated sequences reproduce Gamma (x) Sigma (eps falls by orders of magnitude
    to within a small factor of true samples), Q_e^T K_e dominates Q^T K, and the attention score matrices
    correlate with Gamma."""
    eps = logged_values(rows, "val/cov_rel_error")
    eps_first, eps_last = eps[0], eps[-1]
    assert eps_last < 10 and eps_last < eps_first / 100
    assert last_value(rows, "val/qk_ee_share") > 0.5  # four equal blocks: 0.25
    assert last_value(rows, "val/attn_gamma_corr") > 0.8  # best layer's Pearson r with Gamma


@pytest.mark.slow
def test_gp_cpu_scale_learns_the_kernel(tmp_path):
    """configs/gp.yaml as shipped (N = 32, 4 blocks, 3000 steps: ~5 min on 2 cores). Measured here (see
    docs/reproduction.md): eps 5.3e3 -> 4.9, Q_e^T K_e share 0.73, attention-Gamma correlation 0.948."""
    assert_gp_model_learned_the_kernel(gp_run(tmp_path, "configs/gp.yaml"))


@pytest.mark.slow
def test_gp_paper_scale_learns_the_kernel(tmp_path):
    """configs/gp_paper.yaml as shipped (N = 128, 12 blocks, 32k steps, DDPM sampling: for a GPU; hours on a CPU).
    The thresholds are those the CPU scale meets; they have not yet been checked at this scale (no GPU was lent
    while this was written), so a failure here is a finding to report in docs/reproduction.md, not noise."""
    assert_gp_model_learned_the_kernel(gp_run(tmp_path, "configs/gp_paper.yaml"))
