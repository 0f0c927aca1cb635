"""The best-isotropic-W study (paper 1 (MTGM) eq. (1) with W = c d Pi, least-squares v_t) against brute force."""

from __future__ import annotations

import pytest
import torch

from diffusion_theory.experiments.mtgm_isotropic import (
    best_isotropic_gap,
    isotropic_gaps,
    isotropic_residual,
    least_squares_loss,
)


def test_residual_matches_a_token_by_token_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)  # (B, P, d)
    a = torch.randn(4, 2, generator=g, dtype=torch.float64)
    proj = a @ torch.linalg.pinv(a)  # a projector of rank 2
    c = 0.7
    want = torch.empty_like(x)
    for b in range(3):
        for p in range(5):
            logits = torch.stack([c * x[b, j] @ proj @ x[b, p] for j in range(5)])  # x_j^T (c d Pi) x_p / d
            w = torch.exp(logits - logits.max())
            want[b, p] = x[b, p] - sum(w[j] / w.sum() * x[b, j] for j in range(5))
    torch.testing.assert_close(isotropic_residual(x, proj, c, chunk=2), want)
    # c = 0: uniform attention, x_p minus the token mean
    torch.testing.assert_close(isotropic_residual(x, proj, 0.0), x - x.mean(1, keepdim=True))


def test_least_squares_v_is_the_best_scale_per_step():
    g = torch.Generator().manual_seed(1)
    T, n = 3, 4
    t = torch.arange(1, T + 1).repeat(n)  # (n T,)
    resid = torch.randn(n * T, 5, 2, generator=g, dtype=torch.float64)
    noise = 0.8 * resid + 0.3 * torch.randn(n * T, 5, 2, generator=g, dtype=torch.float64)

    def loss_at(v: torch.Tensor) -> float:  # v (T,): 0.5 mean over steps of mean ||v_t r - E||^2
        return sum(0.5 * (v[k] * resid[t == k + 1] - noise[t == k + 1]).pow(2).mean().item() for k in range(T)) / T

    best = least_squares_loss(resid, noise, t, T)
    v_star = torch.stack(
        [
            torch.linalg.lstsq(resid[t == k].reshape(-1, 1), noise[t == k].reshape(-1, 1)).solution[0, 0]
            for k in range(1, T + 1)
        ]
    )
    assert best == pytest.approx(loss_at(v_star), rel=1e-12)
    for k in range(T):
        for dv in (-1e-2, 1e-2):
            assert loss_at(v_star + dv * torch.eye(T, dtype=torch.float64)[k]) > best


def test_best_gap_is_the_smallest_over_the_scanned_scales():
    scales = (0.0, 0.25, 0.5)
    gaps = isotropic_gaps(8, 16, scales, n_eval=3)
    c, gap = best_isotropic_gap(8, 16, scales, n_eval=3)
    assert gap == min(gaps.values()) and gaps[c] == gap
    assert best_isotropic_gap(8, 16, (c,), n_eval=3) == (c, gap)


# ---- the symmetric family W/d = c Proj + e (J - Proj) + b Proj_perp (issue 12) -------------------------------

from diffusion_theory.experiments.mtgm_symmetric import (  # noqa: E402
    evaluation_draw,
    optimise_symmetric,
    symmetric_gap,
    symmetric_weight,
)


def test_symmetric_weight_acts_on_patterns_and_complement_as_defined():
    d, M = 6, 3
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    mu = 1.7 * q[:, :M].T  # (M, d) orthogonal rows of equal norm
    c, e, b = 0.3, -0.2, 0.05
    W = symmetric_weight(mu, c, e, b)
    u = mu / mu.norm(dim=1, keepdim=True)
    for k in range(M):  # W u_k = c u_k + e sum_{v != k} u_v, by the sums over pairs
        want = c * u[k] + e * sum(u[v] for v in range(M) if v != k)
        torch.testing.assert_close(W @ u[k], want)
    for k in range(M, d):  # the complement is scaled by b
        torch.testing.assert_close(W @ q[:, k], b * q[:, k])
    torch.testing.assert_close(W, W.T)


def test_symmetric_family_contains_the_isotropic_one_and_optimising_never_loses():
    draw = evaluation_draw(8, 16, n_eval=3)
    iso = isotropic_gaps(8, 16, (0.25,), n_eval=3)[0.25]
    assert symmetric_gap(draw, 0.25, 0.0, 0.0) == pytest.approx(iso, rel=1e-5, abs=1e-7)
    opt = optimise_symmetric(draw, 0.25, max_evals=12)
    assert opt.start_gap == pytest.approx(iso, rel=1e-5, abs=1e-7)
    assert opt.gap <= opt.start_gap and opt.evaluations <= 12
    assert symmetric_gap(draw, opt.c, opt.e, opt.b) == pytest.approx(opt.gap)


# ---- Prop. 2: R_Bayes - R_oracle, per sample (issue 12) ----------------------------------------------------


def test_prop2_difference_is_bayes_minus_oracle_on_the_same_draws():
    from diffusion_theory.datamodules.mtgm import MTGMDataModule
    from diffusion_theory.diffusion.schedules import LinearAlphaSchedule
    from diffusion_theory.experiments.mtgm_prop2 import per_sample_differences

    d, P, n = 8, 12, 3
    diffs, bayes, oracle = per_sample_differences(d, P, n, seed=5, chunk=2)
    dm, sched = MTGMDataModule(d=d, P=P, n_eval=n), LinearAlphaSchedule()
    ev, g = dm.evaluation_set, torch.Generator().manual_seed(5)
    want_b, want_o = [], []
    for i in range(0, n, 2):  # the same noise order: per chunk of samples, sample-major then step
        b = min(2, n - i)
        noise = torch.randn(b * sched.T, P, d, generator=g, dtype=torch.float64)
        for s in range(b):
            for k in range(1, sched.T + 1):
                e = noise[s * sched.T + k - 1 : s * sched.T + k]
                ab = sched.alpha_bar(torch.tensor([k])).double()
                x_t = ab.sqrt() * ev["x0"][i + s : i + s + 1].double() + (1 - ab).sqrt() * e
                want_b.append((e - dm.eval_dist.bayes_eps(x_t, ab)).pow(2).mean().item() / 2)
                want_o.append(
                    (e - dm.eval_dist.oracle_eps(x_t, ab, ev["labels"][i + s : i + s + 1])).pow(2).mean().item() / 2
                )
    T = sched.T
    for s in range(n):
        assert diffs[s] == pytest.approx(
            sum(want_b[s * T : (s + 1) * T]) / T - sum(want_o[s * T : (s + 1) * T]) / T, rel=1e-9
        )
    assert bayes == pytest.approx(sum(want_b) / len(want_b), rel=1e-9)
    assert oracle == pytest.approx(dm.eval_dist.oracle_risk_per_step(sched.alpha_bar(sched.eval_times())).mean().item())


@pytest.mark.slow
def test_prop2_bayes_minus_oracle_does_not_fall_with_P_but_falls_with_d():
    """The report's Prop. 2 finding at the configs' shapes (about 1 min on one core): at d = 64 the 95 % intervals of
    R_Bayes - R_oracle at P = 64 and P = 1024 overlap (no decrease with P), while d = 256 lies entirely below."""
    from diffusion_theory.experiments.mtgm_prop2 import prop2_point

    p64, p1024, d256 = prop2_point(64, 64, 32), prop2_point(64, 1024, 32), prop2_point(256, 256, 32)
    assert p64.difference.lo > 0 and p1024.difference.lo > 0
    assert p1024.difference.lo <= p64.difference.hi and p64.difference.lo <= p1024.difference.hi  # overlap
    assert d256.difference.hi < min(p64.difference.lo, p1024.difference.lo)


def test_trained_gap_is_eq1_of_the_checkpoint_on_the_same_draw(tmp_path):
    """The trained side of the symmetric-family table: eq. (1) written out by hand (v_t (x_p - sum_j softmax_j(x_j^T W
    x_p / d) x_j)) with the checkpoint's W and v_t, on the family's own noisy draw, minus R_Bayes of that draw."""
    from conftest import tiny_mtgm_args

    from diffusion_theory.cli import DiffusionCLI
    from diffusion_theory.experiments.mtgm_symmetric import trained_gap
    from diffusion_theory.models.diffusion_module import DiffusionModule

    DiffusionCLI(args=tiny_mtgm_args(tmp_path, max_steps=20, extra=["--run.wandb_mode=disabled"]))
    ckpt = tmp_path / "mtgm" / "tiny" / "checkpoints" / "last.ckpt"
    draw = evaluation_draw(8, 16, n_eval=2)
    net = DiffusionModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).network
    W, v = net.W.detach().double(), net.v.detach().double()  # (d, d), (T,)
    assert W.abs().max() > 0  # trained away from W(0) = 0: the attention is not uniform
    losses = []
    for x, e, t in zip(draw.x_t.double(), draw.noise.double(), draw.t):  # (P, d), (P, d), step 1..T
        attn = torch.softmax((x @ W.T) @ x.T / 8, dim=-1)  # [p, j] = softmax_j(x_j^T W x_p / d)
        losses.append(0.5 * (e - v[int(t) - 1] * (x - attn @ x)).pow(2).mean().item())
    assert trained_gap(draw, ckpt, chunk=7) == pytest.approx(sum(losses) / len(losses) - draw.bayes, rel=1e-4, abs=1e-6)
