"""Paper 2 (GP): where the excess variance of the generated first and last frames comes from (issue 12). No training.

Fig. 1 of a trained run shows generated sequences whose first and last frames vary more than Gamma_ii tr Sigma.
Three candidate causes: the sampler (its discretisation), the trained denoiser at the boundary frames (one-sided
temporal context, told apart only through the index embedding e_i), or both. From one run's checkpoint:

    sampler ratio    per-frame variance ratio r_i (``metrics.gp_sequences.per_frame_variance_ratio``) of sequences
                     drawn by the run's sampler with the EXACT noise prediction E[E | X^t] (paper 2 (GP) eq. (2));
                     r_i = 1 up to sampling noise means the sampler adds no boundary excess
    model ratio      the same for the trained model, from the same x_T (paired with the above)
    denoiser excess  per frame i and time t of the evaluation grid: E ||eps_hat_i - E[E_i | X^t]||^2 / d over the
                     evaluation set (the model's excess over the Bayes denoiser, paper 2 (GP) eq. (5)), averaged in
                     ``n_time_bins`` equal bins of the grid (early = small t = clean end)

A boundary excess in the model ratio but not in the sampler ratio, with a denoiser excess that peaks at the first and
last frames, puts the cause in the trained denoiser at the boundary frames, not in the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffusion_theory.metrics.gp_sequences import per_frame_variance_ratio


@dataclass
class BoundaryMeasures:
    sampler_ratio: list[float]  # (N,) r_i of the exact-score samples
    model_ratio: list[float]  # (N,) r_i of the model's samples from the same x_T
    denoiser_excess: list[list[float]]  # (n_time_bins, N) mean ||eps_hat_i - E[E_i | X^t]||^2 / d per bin
    bin_times: list[tuple[float, float]]  # (first, last) time of each bin


def denoiser_excess_per_frame(eps_hat: torch.Tensor, eps_exact: torch.Tensor) -> torch.Tensor:
    """(B, N, d), (B, N, d) -> (N,): the mean over rows and channels of (eps_hat - eps_exact)^2, per frame."""
    if eps_hat.shape != eps_exact.shape or eps_hat.dim() != 3:
        raise ValueError(
            f"denoiser_excess_per_frame: both must be (B, N, d) of one shape; got {tuple(eps_hat.shape)} "
            f"and {tuple(eps_exact.shape)}"
        )
    return (eps_hat.double() - eps_exact.double()).pow(2).mean((0, 2))


def measure_boundary(
    run_dir: Path, n_generated: int, generation: dict[str, Any], n_time_bins: int = 3, seed: int = 0
) -> BoundaryMeasures:
    """``boundary_measures`` of the run in ``run_dir`` (``config.yaml`` + ``checkpoints/last.ckpt``)."""
    from diffusion_theory.experiments.gp_measures import load_gp_run

    _, dm, module = load_gp_run(run_dir)
    return boundary_measures(module, dm, n_generated, generation, n_time_bins, seed)


def boundary_measures(
    module: Any, dm: Any, n_generated: int, generation: dict[str, Any], n_time_bins: int = 3, seed: int = 0
) -> BoundaryMeasures:
    """The three measures of the module docstring for ``module`` (anything with ``schedule``, ``denoise(x_t, t,
    network=...)`` and ``inference_network``, e.g. a ``DiffusionModule``) trained on the Gaussian-process data of
    ``dm`` (a ``GaussianProcessDataModule``); ``generation``: sampler (``ode`` or ``sde``), n_steps,
    sampler_options as in configs/sweeps/gp.yaml."""
    from diffusion_theory.diffusion.samplers import SAMPLERS, resolve_sampler

    if n_generated < 2:
        raise ValueError(f"gp boundary: n_generated must be >= 2; got {n_generated}")
    if n_time_bins < 1:
        raise ValueError(f"gp boundary: n_time_bins must be >= 1; got {n_time_bins}")
    gamma, sigma = dm.dist.gamma, dm.dist.sigma  # (N, N), (d, d)
    schedule = module.schedule
    name = resolve_sampler(generation.get("sampler", "auto"), bool(schedule.discrete))
    options = dict(generation.get("sampler_options") or {})
    N, d = dm.sample_shape
    mean = float(dm.hparams.get("mean", 0.0))

    def exact_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return dm.dist.eps_posterior_mean(x_t.double(), schedule.alpha_bar(t).to(torch.float64)).to(x_t.dtype)

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return module.denoise(x_t, t, network=module.inference_network)

    x_T = torch.randn(n_generated, N, d, generator=torch.Generator().manual_seed(seed))  # shared: paired samples
    ratios = []
    with torch.no_grad():
        for fn in (exact_fn, model_fn):
            x = SAMPLERS[name](
                fn,
                schedule,
                (n_generated, N, d),
                n_steps=generation.get("n_steps"),
                generator=torch.Generator().manual_seed(seed + 1),
                x_T=x_T.clone(),
                **options,
            )
            ratios.append(per_frame_variance_ratio(x, gamma, sigma, mean=mean))

        x0 = dm.evaluation_set["x0"]  # (n_eval, N, d)
        times = schedule.eval_times()  # (n_t,) ascending
        g = torch.Generator().manual_seed(seed + 2)
        per_time = []
        for t in times:
            noise = torch.randn(x0.shape, generator=g)
            tt = t.expand(x0.shape[0])
            abar = schedule.alpha_bar(tt)  # (n_eval,) float64
            x_t = schedule.add_noise(x0, tt, noise)
            per_time.append(
                denoiser_excess_per_frame(model_fn(x_t, tt), dm.dist.eps_posterior_mean(x_t.double(), abar))
            )
    excess = torch.stack(per_time)  # (n_t, N)
    bins = [b for b in torch.tensor_split(torch.arange(len(times)), n_time_bins) if len(b)]
    return BoundaryMeasures(
        ratios[0].tolist(),
        ratios[1].tolist(),
        [excess[b].mean(0).tolist() for b in bins],
        [(float(times[b[0]]), float(times[b[-1]])) for b in bins],
    )
