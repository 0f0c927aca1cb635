"""Paper 1 (MTGM) eq. (1) over the three-parameter symmetric family of attention weights, no training.

Gradient descent (paper 1 (MTGM) eq. (4)) from W(0) = 0 under a uniform pi~ commutes with permutations of the patterns
and with rotations of their orthogonal complement, so it stays in

    W / d = c Proj + e (J - Proj) + b Proj_perp                                           (d, d)

with u_1..u_M = mu_u / ||mu_u|| (orthonormal, paper 1 Definition 1), Proj = sum_u u_u u_u^T (the projector on the
patterns), J = sum_{u,v} u_u u_v^T (the all-ones matrix in the pattern basis) and Proj_perp = I - Proj. The attention
logits of paper 1 (MTGM) eq. (1) are then x_j^T (W/d) x_p. The one-parameter family of ``mtgm_isotropic`` (W = c d
Proj) is e = b = 0. With v_t fitted by least squares at each step, min over (c, e, b) of the loss minus the Bayes risk
(paper 1 (MTGM) eq. (6)) is the best Bayes gap GD can reach from W(0) = 0 at this d, P (up to the evaluation sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from diffusion_theory.experiments.mtgm_isotropic import isotropic_residual, least_squares_loss


def symmetric_weight(patterns: Tensor, c: float, e: float, b: float) -> Tensor:
    """W / d = c Proj + e (J - Proj) + b Proj_perp for patterns (M, d) with orthogonal rows; (d, d) float64."""
    u = patterns.double() / patterns.double().norm(dim=1, keepdim=True)  # (M, d) orthonormal rows
    proj = u.T @ u  # (d, d)
    ones = u.sum(0)  # (d,) = sum_u u_u
    J = torch.outer(ones, ones)  # sum_{u,v} u_u u_v^T
    eye = torch.eye(patterns.shape[1], dtype=torch.float64)
    return c * proj + e * (J - proj) + b * (eye - proj)


@dataclass
class EvaluationDraw:
    """A fixed noisy evaluation set: every sample at every step t = 1..T with its own noise (seed 0)."""

    x_t: Tensor  # (n T, P, d)
    noise: Tensor  # (n T, P, d)
    t: Tensor  # (n T,) in 1..T
    T: int
    bayes: float  # R_Bayes on this draw, paper 1 (MTGM) eq. (6)
    patterns: Tensor  # (M, d)


def evaluation_draw(d: int, P: int, n_eval: int) -> EvaluationDraw:
    """configs/mtgm.yaml's evaluation data (d, P changed), noised exactly as ``mtgm_isotropic.isotropic_gaps``."""
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule

    dm = MTGMDataModule(d=d, P=P, n_eval=n_eval)
    sched = LinearAlphaSchedule()
    T = sched.T
    x0 = dm.evaluation_set["x0"]  # (n, P, d)
    t = sched.eval_times().repeat(n_eval)  # (n T,)
    noise = torch.randn(n_eval * T, P, d, generator=torch.Generator().manual_seed(0))
    x_t = sched.add_noise(x0.repeat_interleave(T, 0), t, noise)
    bayes = 0.5 * (noise - dm.exact_eps(x_t, sched.alpha_bar(t), {})).pow(2).mean().item()  # paper 1 (MTGM) eq. (6)
    return EvaluationDraw(x_t, noise, t, T, bayes, dm.eval_dist.patterns.float())


def symmetric_gap(draw: EvaluationDraw, c: float, e: float, b: float) -> float:
    """Loss of paper 1 (MTGM) eq. (1) with W/d = c Proj + e (J - Proj) + b Proj_perp and least-squares v_t,
    minus R_Bayes."""
    wd = symmetric_weight(draw.patterns, c, e, b).float()
    return least_squares_loss(isotropic_residual(draw.x_t, wd, 1.0), draw.noise, draw.t, draw.T) - draw.bayes


@dataclass(frozen=True)
class SymmetricOptimum:
    c: float
    e: float
    b: float
    gap: float  # at (c, e, b)
    start_gap: float  # at the start (c0, 0, 0): the isotropic family's point
    evaluations: int


def optimise_symmetric(
    draw: EvaluationDraw, c0: float, step: float = 0.05, max_evals: int = 60, tol: float = 1e-6
) -> SymmetricOptimum:
    """Nelder-Mead over (c, e, b) from (c0, 0, 0) (the best isotropic c); never worse than its start."""
    from scipy.optimize import minimize

    cache: dict[tuple[float, float, float], float] = {}

    def f(p) -> float:
        key = tuple(round(float(v), 10) for v in p)
        if key not in cache:
            cache[key] = symmetric_gap(draw, *key)
        return cache[key]

    start = (float(c0), 0.0, 0.0)
    simplex = [start, (c0 + step, 0.0, 0.0), (c0, step, 0.0), (c0, 0.0, step)]
    minimize(
        f,
        start,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "maxfev": max_evals, "fatol": tol, "xatol": 1e-3},
    )
    best = min(cache, key=cache.get)
    return SymmetricOptimum(*best, gap=cache[best], start_gap=f(start), evaluations=len(cache))


def trained_gap(draw: EvaluationDraw, checkpoint: Path, chunk: int = 200) -> float:
    """Loss of a trained checkpoint's network (paper 1 (MTGM) eq. (1)) on ``draw``, minus R_Bayes on it: the same
    noisy inputs as ``symmetric_gap``, so trained and family gaps are paired."""
    from diffusion_theory.models.diffusion_module import DiffusionModule

    module = DiffusionModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    with torch.no_grad():
        eps_hat = torch.cat(
            [
                module.denoise(draw.x_t[i : i + chunk], draw.t[i : i + chunk], network=module.inference_network)
                for i in range(0, draw.x_t.shape[0], chunk)
            ]
        )  # (n T, P, d)
    return module.loss_scale * (draw.noise - eps_hat).pow(2).mean().item() - draw.bayes
