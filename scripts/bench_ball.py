"""Benchmarks of the bouncing-ball experiment (paper 2, Sec. 6.2), registered in scripts/bench.py:

    ball_simulator      frames rendered per second (videos of 240 frames, the paper's length)   target >= 10,000 / s
    ball_decode_share   decoding + tracking for the physics metrics (BallVideos) as a share of the CPU-scale run
                        of configs/ball_dit.yaml                                                    target <= 20 %

The share is conservative: its denominator counts the DiT's training steps and BallVideos' own generation only
(not the validation loss nor the other diagnostics, which make the real run longer). Settings are read from
configs/ball_dit.yaml; the VAE is the CPU-scale architecture of configs/ball_vae.yaml (its cost does not depend
on its weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def bench_simulator(report, n_videos: int = 200, frames: int = 240) -> None:
    from diffusion_theory.distributions.bouncing_ball import BouncingBall

    ball = BouncingBall(64, 6.0, 3.0)
    ball.sample_videos(4, frames, seed=0)  # warm-up
    best = float("inf")
    for rep in range(3):
        start = time.perf_counter()
        ball.sample_videos(n_videos, frames, seed=rep)
        best = min(best, time.perf_counter() - start)
    rate = n_videos * frames / best
    report(
        "ball_simulator",
        rate,
        "fr/s",
        ">= 10,000 frames/s",
        rate >= 10_000,
        f"{n_videos} videos x {frames} frames of 64 x 64 in {best:.2f} s (best of 3)",
    )


def bench_decode_share(report, train_steps: int = 20) -> None:
    from diffusion_theory.callbacks.ball_videos import BallVideos
    from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
    from diffusion_theory.metrics.ball_physics import physics_sums, track_centroids
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.dit import DiT
    from diffusion_theory.networks.vae import ConvVAE

    dit_cfg = yaml.safe_load((ROOT / "configs/ball_dit.yaml").read_text())
    vae_cfg = yaml.safe_load((ROOT / "configs/ball_vae.yaml").read_text())
    data = dit_cfg["data"]["init_args"]
    net_args = {k: v for k, v in dit_cfg["model"]["init_args"]["network"]["init_args"].items() if k != "input_shape"}
    sched = {k: v for k, v in dit_cfg["model"]["init_args"]["schedule"]["init_args"].items()}
    videos_cb = next(c["init_args"] for c in dit_cfg["trainer"]["callbacks"] if c["class_path"] == "BallVideos")
    F, k, n = int(data["frames"]), int(data["latent_dim"]), int(videos_cb["n_samples"])
    max_steps, per_epoch = int(dit_cfg["trainer"]["max_steps"]), int(data["steps_per_epoch"])
    n_evals = (max_steps // per_epoch) // int(videos_cb["every_n_epochs"])

    torch.manual_seed(0)
    module = DiffusionModule(DiT(input_shape=(F, k), **net_args), ContinuousVPSchedule(**sched), loss_scale=1.0)
    opt = torch.optim.AdamW(module.parameters(), lr=2e-3)
    x0 = torch.randn(int(data["batch_size"]), F, k)
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        t = module.schedule.sample_times(x0.shape[0], generator=g)
        loss = module.diffusion_loss(x0, t, torch.randn(x0.shape, generator=g))[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(train_steps):
        step()
    step_s = (time.perf_counter() - start) / train_steps

    start = time.perf_counter()
    z = module.sample(
        n,
        sampler=videos_cb["sampler"],
        n_steps=videos_cb["n_steps"],
        generator=g,
        progress=False,
        **videos_cb.get("sampler_options", {}),
    )
    gen_s = time.perf_counter() - start

    vae = ConvVAE(**vae_cfg["model"]["init_args"]["network"]["init_args"]).eval()
    cb = BallVideos(n_samples=n, aux_checkpoint=None)
    start = time.perf_counter()
    with torch.no_grad():
        flat = z.reshape(n * F, k)
        frames = torch.cat(
            [
                vae.decode(flat[s : s + cb.decode_batch_size])[:, 0]
                for s in range(0, flat.shape[0], cb.decode_batch_size)
            ]
        ).reshape(n, F, 64, 64)
        physics_sums(track_centroids(frames, cb.threshold)[0], 64.0, float(data["radius"]))
    decode_s = time.perf_counter() - start
    run_s = max_steps * step_s + n_evals * (gen_s + decode_s)
    share = n_evals * decode_s / run_s
    report(
        "ball_decode_share",
        100 * share,
        "%",
        "<= 20 %",
        share <= 0.2,
        f"{n_evals} x {decode_s:.2f} s decoding + tracking {n} videos x {F} frames, against >= {run_s / 60:.1f} min "
        f"of run ({max_steps} steps x {1000 * step_s:.0f} ms + {n_evals} x {gen_s:.1f} s generation)",
    )


def benchmarks(report) -> dict[str, Callable[[], None]]:
    """name -> benchmark for scripts/bench.py's BENCHMARKS, each reporting through ``report``."""
    return {"ball_simulator": lambda: bench_simulator(report), "ball_decode_share": lambda: bench_decode_share(report)}
