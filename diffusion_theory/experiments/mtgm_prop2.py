"""Paper 1 (MTGM) Prop. 2 (eq. (17)), no training: how far the exact Bayes risk (paper 1 (MTGM) eq. (6)) sits
above the oracle risk (paper 1 (MTGM) eqs. (14) / (33)) as P and d change.

For each evaluation sample X0 of configs/mtgm.yaml's evaluation set (d, P changed; pi~' the Dirichlet(1) draw of
Sec. 5.1) and each step t = 1..T with its own noise E (seeded), the per-sample difference is

    D_i = 1/T sum_t ( ||E - E[E | X^t]||^2 - ||E - E[E | X^t, M_Y]||^2 ) / (2 d P)

(paper 1 (MTGM) eq. (6)'s MMSE estimate minus paper 1 (MTGM) eq. (13)'s oracle estimate on the same draw, so the
noise common to both cancels).
E[D_i] = R_Bayes - R_oracle exactly; the table gives its mean over samples with a 95 % t-interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_theory.metrics.intervals import Interval, t_interval


@dataclass(frozen=True)
class Prop2Point:
    d: int
    P: int
    bayes: float  # R_Bayes, mean over samples
    oracle: float  # R_oracle, paper 1 (MTGM) eq. (33) in closed form (no sampling)
    difference: Interval  # R_Bayes - R_oracle, paired per sample
    nu_min: float  # paper 1 (MTGM) eq. (7) of the evaluation law


def per_sample_differences(d: int, P: int, n: int, seed: int = 0, chunk: int = 4) -> tuple[list[float], float, float]:
    """(D_i for i < n, mean Bayes risk, closed-form oracle risk) at (d, P), every step of the T = 50 schedule."""
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule

    dm = MTGMDataModule(d=d, P=P, n_eval=n)
    dist, sched = dm.eval_dist, LinearAlphaSchedule()
    T = sched.T
    ev = dm.evaluation_set
    g = torch.Generator().manual_seed(seed)
    t = sched.eval_times()  # (T,) the steps 1..T
    abar = sched.alpha_bar(t).double()  # (T,)
    diffs, bayes_sum = [], 0.0
    for i in range(0, n, chunk):
        x0, labels = ev["x0"][i : i + chunk].double(), ev["labels"][i : i + chunk]  # (b, P, d), (b, P)
        b = x0.shape[0]
        x0r, lab = x0.repeat_interleave(T, 0), labels.repeat_interleave(T, 0)  # (b T, P, d)
        ab = abar.repeat(b)  # (b T,)
        noise = torch.randn(b * T, P, d, generator=g, dtype=torch.float64)
        x_t = ab.sqrt().view(-1, 1, 1) * x0r + (1 - ab).sqrt().view(-1, 1, 1) * noise  # paper 1 (MTGM) eq. (2)
        bayes = (noise - dist.bayes_eps(x_t, ab)).pow(2).sum((1, 2)) / (2 * d * P)  # (b T,)
        oracle = (noise - dist.oracle_eps(x_t, ab, lab)).pow(2).sum((1, 2)) / (2 * d * P)
        diffs += (bayes - oracle).view(b, T).mean(1).tolist()
        bayes_sum += bayes.sum().item()
    return diffs, bayes_sum / (n * T), dist.oracle_risk_per_step(abar).mean().item()


def prop2_point(d: int, P: int, n: int, seed: int = 0) -> Prop2Point:
    from diffusion_theory.datamodules.mtgm import MTGMDataModule

    diffs, bayes, oracle = per_sample_differences(d, P, n, seed)
    return Prop2Point(d, P, bayes, oracle, t_interval(diffs), MTGMDataModule(d=d, P=P, n_eval=1).eval_dist.nu_min())
