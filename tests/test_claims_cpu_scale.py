"""The claims of docs/reproduction.md that hold at the CPU scale, one slow test each (`make test-slow`, minutes on
2 cores). Each docstring names the report section and the numbers measured there; a failure is a finding to report,
not noise. Orderings that the report marks "not resolved" are deliberately not encoded here. Prop. 2's finding
(R_Bayes - R_oracle flat in P, falling with d) is tests/test_mtgm_isotropic.py's slow test."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, last_value, read_metrics

from diffusion_theory.cli import DiffusionCLI

# the overrides of `scripts/reproduce.py mtgm --scale cpu` (configs/sweeps/mtgm.yaml)
MTGM_CPU = ["--trainer.max_steps=300", "--data.init_args.n_eval=32", "--data.init_args.steps_per_epoch=50"]


def fit(tmp_path: Path, configs: str | list[str], name: str, *overrides: str) -> list[dict[str, str]]:
    """One run of the shipped config(s) as `scripts/fit.py --config ...` would make it, in tmp_path/claims/name."""
    configs = [configs] if isinstance(configs, str) else configs
    DiffusionCLI(
        args=[
            *(a for c in configs for a in ("--config", str(ROOT / c))),
            f"--run.root={tmp_path}",
            "--run.experiment=claims",
            f"--run.name={name}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--run.wandb_mode=disabled",
            *overrides,
        ]
    )
    return read_metrics(tmp_path / "claims" / name)


@pytest.mark.slow
def test_mtgm_attention_is_mean_denoising_exactly_when_k_is_1(tmp_path):
    """Paper 1 Fig. 2A/2E and 2B (report: Fig. 2A and 2E, Fig. 2B). The trained model's loss sits within 0.02 of
    the Bayes risk (measured: Bayes gap 0.0121 [0.0120, 0.0122] over 3 seeds); with K = 1 every token of a data
    point has the same pattern and attention on same-pattern keys is 1.000, with K = 4 it is 0.63 (not close to 1:
    a difference from the paper the report states)."""
    k4 = fit(tmp_path, "configs/mtgm.yaml", "k4", *MTGM_CPU)
    k1 = fit(tmp_path, "configs/mtgm.yaml", "k1", *MTGM_CPU, "--data.init_args.K=1")
    assert last_value(k4, "val/bayes_gap") < 0.02
    assert last_value(k1, "val/same_pattern_attention") > 0.99
    assert 0.5 < last_value(k4, "val/same_pattern_attention") < 0.75
    # the learned v_t follows paper 1 (MTGM) eq. (16) (measured mean abs. error 0.028)
    assert last_value(k4, "val/output_scale_error") < 0.05


@pytest.fixture(scope="module")
def gp_base(tmp_path_factory) -> tuple[Path, list[dict[str, str]]]:
    """configs/gp.yaml as shipped, trained once for the paper-2 claims below: (run folder, metrics rows)."""
    root = tmp_path_factory.mktemp("gp_base")
    return root / "claims" / "gp", fit(root, "configs/gp.yaml", "gp")


@pytest.mark.slow
def test_gp_boundary_excess_is_the_denoiser_not_the_sampler(gp_base):
    """Paper 2 Fig. 1 (report: paper 2 measures). The base run's generated first and last frames vary ~25 % more
    than Gamma_ii tr Sigma; the same sampler with the exact score from the same x_T gives ratios within 0.08 of 1
    at every frame, and the model's denoising excess at t >= 0.06 is several times larger at the two end frames."""
    from diffusion_theory.experiments.gp_boundary import measure_boundary

    m = measure_boundary(gp_base[0], 2000, {"sampler": "ode", "n_steps": 50, "sampler_options": {"spacing": "log"}})
    N = len(m.model_ratio)
    assert all(abs(r - 1) < 0.08 for r in m.sampler_ratio)
    for end in (0, N - 1):
        assert m.model_ratio[end] > m.sampler_ratio[end] + 0.1
        assert m.model_ratio[end] > m.model_ratio[N // 2] + 0.1
    mid_bin = m.denoiser_excess[1]
    assert min(mid_bin[0], mid_bin[-1]) > 1.5 * mid_bin[N // 2]


@pytest.mark.slow
def test_gp_attention_follows_gamma_only_when_the_data_has_it(gp_base, tmp_path):
    """Paper 2 Fig. 5/12 and the white-noise control (report: the reviewer's control). The GP model's best layer
    correlates with Gamma far more than a model trained on Gamma = I data correlates with the same kernel (measured
    0.948 against 0.217), and Q_e^T K_e dominates only in the GP model (share 0.73 against 0.23)."""
    gp = gp_base[1]
    white = fit(tmp_path, ["configs/gp.yaml", "configs/gp_white.yaml"], "white")
    assert last_value(gp, "val/attn_gamma_corr") > last_value(white, "val/attn_ref_corr") + 0.4
    assert last_value(gp, "val/qk_ee_share") > 0.5 > last_value(white, "val/qk_ee_share")
