"""Paper 2 (GP) measures of a finished run, from its checkpoint alone (issue 12): no training.

For one run folder (``config.yaml`` + ``checkpoints/last.ckpt``):

    kernel fits      the pre-softmax score matrices (QY)^T KY averaged over heads and ``attention_samples``
                     generated sequences at the clean end of the backward process (paper 2 Fig. 5 / 12; recorded by
                     ``callbacks.AttentionAlongSampling.mean_scores``), one fit of exp(-|i-j|^nu / l) per layer
                     (``metrics.kernel_fit``)
    variance ratio   per frame, ``n_generated`` generated sequences against Gamma_ii tr Sigma
                     (``metrics.gp_sequences.per_frame_variance_ratio``)
    eps              Appendix F's eps of the same sequences with the denominator averaged over ``denominator_draws``
                     draws of as many true sequences, and the raw Frobenius error
                     (``metrics.gp_sequences.expected_denominator_eps``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffusion_theory.metrics.gp_sequences import (
    ExpectedDenominatorEps,
    expected_denominator_eps,
    per_frame_variance_ratio,
)
from diffusion_theory.metrics.kernel_fit import KernelFit, fit_layers

TRUE_DRAW_SEED = 7_000_000  # seeds of the true-sequence draws of the denominator: never a training or evaluation seed


@dataclass
class RunMeasures:
    kernel: str  # the data's temporal kernel: ``gp`` (exp(-|i-j|^nu / l)) or ``white`` (Gamma = I)
    data_nu: float
    data_length_scale: float
    fits: list[KernelFit]  # per layer
    variance_ratio: list[float]  # per frame
    eps: ExpectedDenominatorEps


def load_gp_run(run_dir: Path) -> tuple[dict[str, Any], Any, Any]:
    """(data init args, ``GaussianProcessDataModule``, ``DiffusionModule`` in eval mode) of a finished run folder
    (``config.yaml`` + ``checkpoints/last.ckpt``, loaded weights-only on the CPU)."""
    import yaml

    from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
    from diffusion_theory.models.diffusion_module import DiffusionModule

    data_args = dict(yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["init_args"])
    module = DiffusionModule.load_from_checkpoint(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    ).eval()
    return data_args, GaussianProcessDataModule(**data_args), module


def measure_run(
    run_dir: Path,
    n_generated: int,
    denominator_draws: int,
    attention_samples: int,
    generation: dict[str, Any],
    seed: int = 0,
    chunk_size: int = 500,
) -> RunMeasures:
    """The three measures of the run in ``run_dir`` (see the module docstring); ``generation``: sampler, n_steps,
    sampler_options as in configs/sweeps/gp.yaml."""

    from diffusion_theory.callbacks.attention_sampling import AttentionAlongSampling
    from diffusion_theory.diffusion.generation import generate_across_ranks

    for name, value in (
        ("n_generated", n_generated),
        ("denominator_draws", denominator_draws),
        ("attention_samples", attention_samples),
    ):
        if value < 1:
            raise ValueError(f"gp measures: {name} must be >= 1; got {value}")
    data_args, dm, module = load_gp_run(run_dir)
    gamma, sigma = dm.dist.gamma, dm.dist.sigma  # (N, N), (d, d)
    with torch.no_grad():
        cb = AttentionAlongSampling(
            n_samples=attention_samples,
            steps=[1000],
            n_steps=generation.get("n_steps"),
            sampler=generation.get("sampler", "auto"),
            sampler_options=generation.get("sampler_options") or {},
            seed=seed + 1,
        )
        mean, _ = cb.mean_scores(None, module)  # (1, L, H, N, N)
        fits = fit_layers(mean[0].mean(1).cpu())  # heads averaged: (L, N, N)
        generated = (
            generate_across_ranks(
                None,
                module,
                n_generated,
                chunk_size,
                seed,
                sampler=generation.get("sampler", "auto"),
                n_steps=generation.get("n_steps"),
                **(generation.get("sampler_options") or {}),
            )
            .double()
            .cpu()
        )  # (n, N, d)
    draws = [
        dm.dist.sample(n_generated, generator=TRUE_DRAW_SEED + j, dtype=torch.float64) for j in range(denominator_draws)
    ]
    ratio = per_frame_variance_ratio(generated, gamma, sigma, mean=float(data_args.get("mean", 0.0)))
    eps = expected_denominator_eps(generated, draws, gamma, sigma)
    return RunMeasures(
        str(data_args.get("kernel", "gp")),
        float(data_args.get("nu", 2.0)),
        float(data_args.get("length_scale", 64.0)),
        fits,
        ratio.tolist(),
        eps,
    )
