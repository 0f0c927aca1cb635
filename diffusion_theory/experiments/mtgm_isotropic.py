"""How low can the Bayes gap of paper 1 (MTGM) eq. (1) go? A one-parameter family of attention weights, no training.

W = c * d * sum_u mu_u mu_u^T / ||mu||^2 makes the attention logits x_j^T W x_p / d = c * x_j^T Pi x_p with Pi the
projector on the span of the patterns: the mean-denoising solution of paper 1 Prop. 3 at temperature c. With v_t
fitted by least squares at each step (paper 1 (MTGM) eq. (1)'s output is linear in v_t), the family's best loss minus
the Bayes risk (paper 1 (MTGM) eq. (6)) upper-bounds what the trained model can reach and shows how d and P move it
(paper 1 Thm. 1, conditions (i) and (iii)).
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALES = (0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75)
N_EVAL = 24


def isotropic_residual(x_t: Tensor, proj: Tensor, c: float, chunk: int = 200) -> Tensor:
    """x_p - X softmax_j(c x_j^T Pi x_p): paper 1 (MTGM) eq. (1) without v_t, for W = c d Pi. x_t (B, P, d), proj (d, d)
    -> (B, P, d)."""
    return torch.cat([x - torch.softmax(c * (x @ proj) @ x.transpose(1, 2), -1) @ x for x in x_t.split(chunk)])


def least_squares_loss(resid: Tensor, noise: Tensor, t: Tensor, T: int) -> float:
    """Paper 1 (MTGM) eq. (3) averaged over the steps t = 1..T, 0.5 * mean ||v_t r - E||^2, with each step's v_t the
    least-squares fit v_t = <r, E> / <r, r> over the samples of that step. resid, noise (B, P, d), t (B,) in 1..T."""
    num, den = (resid * noise).sum((1, 2)), resid.pow(2).sum((1, 2))  # (B,)
    loss = 0.0
    for k in range(1, T + 1):
        m = t == k
        v = num[m].sum() / den[m].sum()
        loss += 0.5 * (v * resid[m] - noise[m]).pow(2).mean().item() / T
    return loss


def isotropic_gaps(d: int, P: int, scales=SCALES, n_eval: int = N_EVAL) -> dict[float, float]:
    """{c: loss - R_Bayes} for each c, on ``n_eval`` evaluation samples of configs/mtgm.yaml's data (d, P changed)
    noised at every step of the T = 50 schedule with fixed noise (seed 0)."""
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule

    dm = MTGMDataModule(d=d, P=P, n_eval=n_eval)
    sched = LinearAlphaSchedule()
    T = sched.T
    x0 = dm.evaluation_set["x0"]  # (n, P, d)
    t = sched.eval_times().repeat(n_eval)  # (n T,): 1..T for each sample
    noise = torch.randn(n_eval * T, P, d, generator=torch.Generator().manual_seed(0))
    x_t = sched.add_noise(x0.repeat_interleave(T, 0), t, noise)
    bayes = 0.5 * (noise - dm.exact_eps(x_t, sched.alpha_bar(t), {})).pow(2).mean().item()  # paper 1 (MTGM) eq. (6)
    mu = dm.eval_dist.patterns.float()  # (M, d)
    proj = mu.T @ mu / mu.pow(2).sum(1).mean()  # Pi: mu_u^T mu_v = sqrt(d) delta_uv, so this is the projector
    return {c: least_squares_loss(isotropic_residual(x_t, proj, c), noise, t, T) - bayes for c in scales}


def best_isotropic_gap(d: int, P: int, scales=SCALES, n_eval: int = N_EVAL) -> tuple[float, float]:
    """(c, gap) of the smallest gap over ``scales`` (the first such c on ties)."""
    gaps = isotropic_gaps(d, P, scales, n_eval)
    best = (float("nan"), float("inf"))
    for c, gap in gaps.items():
        if gap < best[1]:
            best = (c, gap)
    return best
