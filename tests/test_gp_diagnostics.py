"""The GP diagnostics: against an exact denoiser (score error 0, covariance error ~1), hand-set attention
weights, and a tiny configs/gp.yaml run through the CLI (metrics, identities, figures)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from conftest import ROOT, last_value, read_metrics
from torch import nn

from diffusion_theory.callbacks import AttentionAlongSampling, CovarianceError, QKBlockNorms, ScoreError
from diffusion_theory.callbacks.attention_sampling import map_steps
from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT

TINY = ROOT / "tests" / "configs" / "gp_tiny.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ExactDenoiser(nn.Module):
    """The Bayes-optimal noise prediction E[E | X^t] of the data module (eq. 2), as a network of model time."""

    def __init__(self, dm: GaussianProcessDataModule, schedule: ContinuousVPSchedule, scale: float = 1.0):
        super().__init__()
        self.dm, self.schedule, self.scale = dm, schedule, scale
        self.input_shape = (dm.hparams.N, dm.hparams.d)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, model_time: torch.Tensor) -> torch.Tensor:
        t = model_time.double() * self.schedule.T / self.schedule.model_time_scale
        return self.scale * self.dm.exact_eps(x, self.schedule.alpha_bar(t), {})


def validate(module: DiffusionModule, dm: GaussianProcessDataModule, callbacks: list, tmp_path) -> dict[str, float]:
    trainer = pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def bayes_risk_closed_form(dm: GaussianProcessDataModule, abar: torch.Tensor) -> float:
    """Mean over times of E||E - E[E | X^t]||^2 / (N d) = 1 - (1 - abar) mean_k 1 / (abar lam_k + 1 - abar)."""
    gamma, sigma = dm.true_covariance()
    lam = torch.kron(torch.linalg.eigvalsh(gamma), torch.linalg.eigvalsh(sigma))  # eigenvalues of Gamma (x) Sigma
    a = abar.double()[:, None]
    return float((1 - (1 - a) / (a * lam + 1 - a)).mean())


def test_exact_denoiser_has_zero_score_error_and_covariance_error_near_one(tmp_path):
    dm = GaussianProcessDataModule(N=16, d=4, length_scale=16.0, nu=2.0, n_train=400, n_eval=40, eval_batch_size=20)
    schedule = ContinuousVPSchedule(T=10.0, t0=1e-3, n_eval_times=6)
    exact = DiffusionModule(ExactDenoiser(dm, schedule), schedule, loss_scale=1.0)
    ode = dict(n_samples=400, sampler="ode", n_steps=50, sampler_options={"spacing": "log"}, chunk_size=200)
    values = validate(exact, dm, [ScoreError(n_time_bins=2), CovarianceError(**ode)], tmp_path)
    assert values["val/score_error"] == pytest.approx(0.0, abs=1e-10)
    assert values["val/bayes_gap"] == pytest.approx(0.0, abs=1e-7)
    expected = bayes_risk_closed_form(dm, schedule.alpha_bar(schedule.eval_times()))
    assert values["val/bayes_risk"] == pytest.approx(expected, rel=0.1)  # 40 x 64 entries per time: MC error ~3 %
    # samples from the exact score are as close to Gamma (x) Sigma as 400 true sequences: eps ~ 1 (20 draws of
    # 400 true sequences against the same 400 give 0.54 .. 1.81; the exact ODE sampler 0.32 .. 1.43 over 8 seeds)
    assert 0.2 < values["val/cov_rel_error"] < 2.5
    assert (tmp_path / "figures" / "fig1_covariance.png").stat().st_size > 5000
    # a denoiser that removes only half the noise leaves samples far from the truth (0.9 x exact samples: 3.5 .. 5)
    wrong = DiffusionModule(ExactDenoiser(dm, schedule, scale=0.5), schedule, loss_scale=1.0)
    bad = validate(wrong, dm, [CovarianceError(**ode)], tmp_path)
    assert bad["val/cov_rel_error"] > 20
    assert bad["val/cov_error_training"] == pytest.approx(values["val/cov_error_training"])  # same denominator


def test_qk_block_norms_of_hand_set_weights(tmp_path):
    torch.manual_seed(0)
    net = DiT(input_shape=(8, 2), hidden_size=16, depth=2, num_heads=2, pos_embed_mode="concat", pos_dim=8)
    with torch.no_grad():
        for block in net.blocks:
            w = block.attn.qkv.weight  # rows: q (16), k (16), v (16); columns: z = 0..7, e = 8..15
            w[:16, :8] = 0  # Q acts on e only
            w[16:32, :8] = 0  # K acts on e only
            w[32:, 8:] = 0  # V acts on z only
    module = DiffusionModule(net, ContinuousVPSchedule(n_eval_times=2))
    dm = GaussianProcessDataModule(N=8, d=2, length_scale=8.0, n_train=8, n_eval=2)
    values = validate(module, dm, [QKBlockNorms(figure_layer=1)], tmp_path)
    assert values["val/qk_ee_share"] == pytest.approx(1.0)
    assert values["val/v_frame_share"] == pytest.approx(1.0)
    for layer in (0, 1):
        assert values[f"val/qk_norm/layer_{layer}/xx"] == 0 and values[f"val/qk_norm/layer_{layer}/ee"] > 0
    for name in ("fig4b_qk_matrix", "fig10_qk_matrices", "fig11_v_matrices"):
        assert (tmp_path / "figures" / f"{name}.png").exists()
    add_mode = DiT(input_shape=(8, 2), hidden_size=16, depth=1, num_heads=2, pos_embed_mode="add")
    with pytest.raises(ValueError, match="pos_embed_mode=concat"):
        validate(DiffusionModule(add_mode, ContinuousVPSchedule(n_eval_times=2)), dm, [QKBlockNorms()], tmp_path)


def test_attention_steps_map_by_noise_level():
    """On the paper's own chain (1000-step linear-beta DDPM) paper steps map to themselves; on the VP process
    step 800 (abar 0.66) is near t = 0.42, step 96 of 100, not 80 (tests/test_step_mapping.py checks the rest)."""
    from diffusion_theory.diffusion.schedules import LinearBetaSchedule

    paper = [0, 50, 100, 200, 400, 800, 1000]
    assert map_steps(paper, 1000, LinearBetaSchedule(T=1000), None) == paper
    assert map_steps([0, 800, 1000], 1000, ContinuousVPSchedule(T=10.0, t0=1e-3), 100) == [0, 96, 100]
    with pytest.raises(ValueError, match="AttentionAlongSampling.steps"):
        AttentionAlongSampling(steps=[0, 1200])


def test_tiny_gp_run_through_the_cli(tmp_path):
    DiffusionCLI(
        args=[
            "--config",
            str(ROOT / "configs/gp.yaml"),
            "--config",
            str(TINY),
            f"--run.root={tmp_path}",
            "--run.name=tiny",
            "--run.wandb_mode=disabled",
        ]
    )
    run_dir = tmp_path / "gp" / "tiny"
    rows = read_metrics(run_dir)
    names = [
        "val/ddpm_loss",
        "val/bayes_risk",
        "val/bayes_gap",
        "val/score_error",
        "val/score_error/t_bin_1",
        "val/cov_rel_error",
        "val/cov_error_generated",
        "val/cov_error_training",
        "val/qk_ee_share",
        "val/qk_norm/layer_1/ee",
        "val/v_frame_share",
        "val/v_frame_share/layer_0",
        "val/attn_gamma_corr",
        "val/attn_gamma_corr/layer_0",
        "val/attn_gamma_corr/layer_1",
        "val/attn_gamma_corr/step_0",
        "val/attn_gamma_corr/step_1000",
        "val/attn_ref_corr",
        "train/ddpm_loss",
    ]
    v = {n: last_value(rows, n) for n in names}
    assert all(math.isfinite(x) for x in v.values()), v
    assert v["val/bayes_gap"] == pytest.approx(v["val/ddpm_loss"] - v["val/bayes_risk"], abs=1e-5)
    assert 0 <= v["val/qk_ee_share"] <= 1 and 0 <= v["val/v_frame_share"] <= 1
    assert -1 <= v["val/attn_gamma_corr"] <= 1
    assert v["val/attn_gamma_corr"] == pytest.approx(
        max(v["val/attn_gamma_corr/layer_0"], v["val/attn_gamma_corr/layer_1"])
    )
    assert v["val/attn_ref_corr"] == pytest.approx(v["val/attn_gamma_corr"])  # the reference kernel is the data's
    assert sum(1 for r in rows if r.get("val/cov_rel_error")) == 2  # once per validation
    for name in (
        "fig1_covariance",
        "fig4b_qk_matrix",
        "fig10_qk_matrices",
        "fig11_v_matrices",
        "fig12_attention_scores",
        "fig4a_cov_rel_error",
        "gp_attention",
    ):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 3000, name
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert int(state["ema.num_updates"]) == 10  # configs/gp.yaml validates and samples with an EMA
