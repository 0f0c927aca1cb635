"""Both ball configs end to end at a tiny scale through the real CLI (VAE, then the DiT on its latents), the frozen
VAE kept out of the DiT's checkpoint, and the DiT run under two-process DDP equal to a single-process validation
of the same checkpoint (physics metrics of the same generated set)."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess

from diffusion_theory.callbacks.auxiliary import load_auxiliary
from diffusion_theory.cli import DiffusionCLI

TINY = ROOT / "tests" / "configs" / "ball_tiny.yaml"
PHYSICS = [
    "speed_error",
    "mean_speed",
    "reflection_ok",
    "bounces_per_video",
    "out_of_box",
    "out_of_box_max",
    "lost_frames",
]


def vae_args(root) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs/ball_vae.yaml"),
        f"--run.root={root}",
        "--run.name=vae",
        "--trainer.max_steps=10",
        "--data.init_args.n_frames=64",
        "--data.init_args.n_eval=16",
        "--data.init_args.steps_per_epoch=5",
        "--data.init_args.batch_size=8",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--run.wandb_mode=disabled",
    ]


def dit_args(root, vae, name: str, extra: list[str] | None = None) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs/ball_dit.yaml"),
        "--config",
        str(TINY),
        f"--run.root={root}",
        f"--run.name={name}",
        f"--data.init_args.vae_checkpoint={vae}",
        f"--data.init_args.cache_dir={root / 'cache'}",
        *(extra or []),
    ]


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    root = tmp_path_factory.mktemp("ball")
    DiffusionCLI(args=vae_args(root))
    return root, root / "ball_vae" / "vae"


def test_vae_config_trains_and_exports(vae):
    _, run_dir = vae
    rows = read_metrics(run_dir)
    for name in ("val/vae/loss", "val/vae/recon", "val/vae/kl", "val/vae/position_error"):
        assert len([r for r in rows if r.get(name)]) == 2, name
    for fig in ("vae_reconstructions", "vae_latent_map", "vae_losses"):
        assert (run_dir / "figures" / f"{fig}.png").exists(), fig
    net = load_auxiliary(run_dir / "vae.pt")  # weights_only, frozen
    assert net.latent_dim == 2 and not any(p.requires_grad for p in net.parameters())


def test_dit_config_end_to_end(vae, tmp_path):
    root, vae_dir = vae
    DiffusionCLI(args=dit_args(tmp_path, vae_dir / "vae.pt", "dit"))  # W&B offline (conftest): videos logged too
    run_dir = tmp_path / "ball" / "dit"
    rows = read_metrics(run_dir)
    for g in ("gen", "real"):
        for name in PHYSICS:
            assert len([r for r in rows if r.get(f"val/ball/{g}/{name}")]) == 2, (g, name)
    assert last_value(rows, "val/ball/real/lost_frames") >= 0
    for name in ("val/cov_rel_error", "val/qk_ee_share", "val/attn_gamma_corr"):  # GP diagnostics, unchanged
        last_value(rows, name)  # raises if never logged
    for fig in (
        "fig13_frame_strip",
        "fig6_latent_trajectories",
        "fig1_covariance",
        "fig4b_qk_matrix",
        "fig12_attention_scores",
    ):
        assert (run_dir / "figures" / f"{fig}.png").exists(), fig
    assert (run_dir / "videos" / "ball_0.gif").exists() and (run_dir / "videos" / "ball_1.gif").exists()
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    vae_keys = set(load_auxiliary(vae_dir / "vae.pt").state_dict())
    assert not any(k.split(".", 1)[-1] in vae_keys or "to_moments" in k for k in state)  # decoder not in the DiT


def test_dit_ddp_two_processes_match_single_process(vae, tmp_path):
    root, vae_dir = vae
    # 10 generated videos in chunks of 4 (rank 0 draws chunks 0 and 2, rank 1 chunk 1); 10 evaluation videos in 4s
    res = run_fit_subprocess(
        dit_args(tmp_path, vae_dir / "vae.pt", "ddp", ["--config", str(ROOT / "configs/trainer/ddp_cpu.yaml")]),
        env={"OMP_NUM_THREADS": "1"},
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "ball" / "ddp"
    rows = read_metrics(run_dir)
    assert sum(1 for r in rows if r.get("val/ball/gen/speed_error")) == 2  # once per validation, not per rank
    ddp = {f"val/ball/{g}/{n}": last_value(rows, f"val/ball/{g}/{n}") for g in ("gen", "real") for n in PHYSICS}
    assert ddp["val/ball/real/speed_error"] == ddp["val/ball/real/speed_error"]  # finite: not a NaN comparison
    assert 0 <= ddp["val/ball/gen/lost_frames"] <= 1
    single = DiffusionCLI(
        args=dit_args(tmp_path, vae_dir / "vae.pt", "single", ["--trainer.devices=1", "--run.wandb_mode=disabled"]),
        run=False,
    )
    single.trainer.validate(
        single.model, datamodule=single.datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"), verbose=False
    )
    values = {k: float(v) for k, v in single.trainer.callback_metrics.items()}
    for name, value in ddp.items():
        assert values[name] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), name


def test_reproduce_ball_smoke_writes_its_report_section(tmp_path):
    from diffusion_theory import experiments

    report = tmp_path / "report.md"
    experiments.reproduce("ball", "smoke", root=tmp_path / "sweeps", report=report)
    text = report.read_text()
    assert "<!-- ball-intro:start -->" in text and "<!-- ball-videos:start -->" in text
    assert "| generated videos satisfy the bouncing-back mechanism (Fig. 13) |" in text
    assert (tmp_path / "figures" / "ball_fig13_frame_strip.png").exists()
    assert (tmp_path / "sweeps" / "smoke" / "ball_vae" / "base" / "vae.pt").exists()
    metrics = tmp_path / "sweeps" / "smoke" / "ball" / "base" / "metrics.csv"
    mtime = metrics.stat().st_mtime_ns
    experiments.reproduce("ball", "smoke", root=tmp_path / "sweeps", report=report)  # runs reused, not retrained
    assert metrics.stat().st_mtime_ns == mtime and "<!-- ball-videos:start -->" in report.read_text()


def test_vae_ddp_two_processes_match_single_process(tmp_path):
    # 16 evaluation frames in batches of 256 (one per rank), val metrics synced by torchmetrics
    args = [a.replace("--run.name=vae", "--run.name=ddp") for a in vae_args(tmp_path)]
    args += ["--data.init_args.eval_batch_size=5", "--config", str(ROOT / "configs/trainer/ddp_cpu.yaml")]
    res = run_fit_subprocess(args, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "ball_vae" / "ddp"
    rows = read_metrics(run_dir)
    names = ["val/vae/loss", "val/vae/recon", "val/vae/kl", "val/vae/position_error"]
    ddp = {name: last_value(rows, name) for name in names}
    assert (run_dir / "vae.pt").exists()
    single_args = [a.replace("--run.name=vae", "--run.name=single") for a in vae_args(tmp_path)]
    single = DiffusionCLI(args=[*single_args, "--data.init_args.eval_batch_size=5", "--trainer.devices=1"], run=False)
    single.trainer.validate(
        single.model, datamodule=single.datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"), verbose=False
    )
    values = {k: float(v) for k, v in single.trainer.callback_metrics.items()}
    for name in names:
        assert values[name] == pytest.approx(ddp[name], rel=1e-5), name
