"""The evaluation grid of discrete schedules and the vectorised, counter-based evaluation noise."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from diffusion_theory.callbacks import CovarianceError, QKBlockNorms, ScoreError, TrainingCurves
from diffusion_theory.diffusion.evaluation import (
    MASK32,
    as_int32_bits,
    evaluation_noise,
    hash32,
    hash32_int32,
    hash_noise,
    needs_noisy_grid,
)
from diffusion_theory.diffusion.schedules import LinearAlphaSchedule, LinearBetaSchedule, noise_level_grid

# ----------------------------------------------------------------------------------------
# Grid
# ----------------------------------------------------------------------------------------


def test_default_grid_is_every_training_step():
    for mode, lo, hi in (("uniform", 1, 50), ("first", 1, 20), ("last", 31, 50)):
        assert LinearAlphaSchedule(time_sampling=mode).eval_times().tolist() == list(range(lo, hi + 1))
        assert LinearAlphaSchedule(time_sampling=mode, n_eval_steps=hi - lo + 1).eval_times().tolist() == list(
            range(lo, hi + 1)
        )
    assert LinearBetaSchedule().eval_times().tolist() == list(range(1, 1001))


@pytest.mark.parametrize("spacing", ["log_snr", "alpha_bar"])
@pytest.mark.parametrize("n", [2, 5, 20, 100])
def test_n_steps_are_evenly_spaced_in_noise_level(spacing, n):
    s = LinearBetaSchedule(T=1000, n_eval_steps=n, eval_spacing=spacing)
    t = s.eval_times()
    assert t.numel() == n and t[0] == 1 and t[-1] == 1000 and bool((t.diff() > 0).all())
    level = s.noise_level(t)
    all_levels = s.noise_level(torch.arange(1, 1001))
    targets = torch.linspace(float(all_levels[0]), float(all_levels[-1]), n, dtype=torch.float64)
    nearest = (all_levels.view(1, -1) - targets.view(-1, 1)).abs().argmin(1) + 1  # brute force, steps 1..1000
    # every step is its target's nearest step, unless a collision pushed it right after the previous step
    # (where the chain is coarser than the grid, near t = 1 for log-SNR) or left of the next one (at the end)
    moved = t != nearest
    pushed_right = torch.zeros(n, dtype=torch.bool)
    pushed_right[1:] = t[1:] == t[:-1] + 1
    pushed_left = torch.zeros(n, dtype=torch.bool)
    pushed_left[:-1] = t[:-1] == t[1:] - 1
    assert bool((~moved | pushed_right | pushed_left).all())
    assert int((~moved).sum()) >= n // 2
    if spacing == "log_snr" and n <= 20:  # log-SNR of a linear-beta chain is smooth: nearly equal gaps
        gap = float(all_levels[0] - all_levels[-1]) / (n - 1)
        assert float((level.diff().abs() / gap - 1).abs().max()) < 0.35


def test_noise_level_grid_brute_force_small():
    # a level that jumps at the start (like log-SNR at t = 1): collisions are pushed apart, ends kept
    level = torch.tensor([10.0, 3.0, 2.9, 2.8, 2.7, 2.6, 0.0])
    # targets 10, 6.67, 3.33, 0 -> nearest entries 0, 0 (|10 - 6.67| < |3 - 6.67|), 1, 6 -> pushed apart: 0, 1, 2, 6
    assert noise_level_grid(level, 4).tolist() == [0, 1, 2, 6]
    # n = 1: the middle level 5.0 -> nearest entry 1 (3.0)
    assert noise_level_grid(level, 1).tolist() == [1]
    for n in range(1, 8):
        idx = noise_level_grid(level, n)
        assert idx.numel() == n and len(set(idx.tolist())) == n and bool((idx.diff() > 0).all())
        if n >= 2:
            assert idx[0] == 0 and idx[-1] == 6
    assert noise_level_grid(level, 7).tolist() == list(range(7))


def test_bad_grid_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"schedule.n_eval_steps must be null .* \[1, 50\]"):
        LinearAlphaSchedule(n_eval_steps=51)
    with pytest.raises(ValueError, match=r"schedule.n_eval_steps"):
        LinearAlphaSchedule(time_sampling="last", n_eval_steps=21)
    with pytest.raises(ValueError, match=r"schedule.n_eval_steps"):
        LinearAlphaSchedule(n_eval_steps=0)
    with pytest.raises(ValueError, match=r"schedule.eval_spacing must be"):
        LinearAlphaSchedule(n_eval_steps=5, eval_spacing="linear")


# ----------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------


def test_int32_hash_equals_the_exact_int64_hash():
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randint(0, 2**32, (100_000,), generator=g, dtype=torch.int64),
            torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1]),
        ]
    )
    exact = hash32(x)
    assert bool(((exact >= 0) & (exact <= MASK32)).all())
    assert torch.equal(hash32_int32(as_int32_bits(x)).to(torch.int64) & MASK32, exact)
    # a bijection on 32-bit words: distinct inputs give distinct outputs
    assert torch.unique(hash32(torch.arange(200_000))).numel() == 200_000


def test_noise_is_a_pure_function_of_seed_index_and_position():
    idx = torch.arange(40)
    full = hash_noise(idx, 7, (5, 3), seed=1234)  # (40, 7, 5, 3)
    assert full.shape == (40, 7, 5, 3) and full.dtype == torch.float32
    assert torch.equal(full, hash_noise(idx, 7, (5, 3), seed=1234))  # deterministic
    # any subset of indices, in any order (what each DDP rank holds) gets the same rows
    perm = torch.tensor([31, 2, 17, 0])
    assert torch.equal(hash_noise(perm, 7, (5, 3), seed=1234), full[perm])
    # a longer grid extends the shorter one: position k's noise does not depend on the grid length
    assert torch.equal(hash_noise(idx, 3, (5, 3), seed=1234), full[:, :3])
    # another seed, another draw
    other = hash_noise(idx, 7, (5, 3), seed=1235)
    assert (other - full).abs().mean() > 0.5
    # float64 carries the same values
    torch.testing.assert_close(hash_noise(idx, 7, (5, 3), seed=1234, dtype=torch.float64).float(), full)


def test_noise_is_standard_normal_and_independent_across_indices_and_entries():
    n_idx, n_t, shape = 4000, 5, (6, 4)
    z = hash_noise(torch.arange(n_idx), n_t, shape, seed=7).double()  # (4000, 5, 6, 4)
    flat = z.flatten()
    N = flat.numel()  # 480 000
    se = 1 / math.sqrt(N)
    assert abs(float(flat.mean())) < 5 * se
    assert abs(float(flat.var()) - 1) < 5 * math.sqrt(2) * se
    assert abs(float((flat**4).mean()) - 3) < 5 * math.sqrt(96) * se  # kurtosis of N(0, 1)
    # normal CDF at a few points: P(Z <= q) matches Phi(q) within 5 binomial standard errors
    for q in (-2.0, -1.0, 0.0, 0.5, 1.5, 2.5):
        p = 0.5 * (1 + math.erf(q / math.sqrt(2)))
        assert abs(float((flat <= q).double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / N)
    # correlations: between neighbouring indices, between grid positions, between entries of an item
    rows = z.flatten(1)  # (4000, 120): one row per index
    for a, b in ((rows[:-1], rows[1:]), (z[:, 0].flatten(1), z[:, 1].flatten(1))):
        corr = (a * b).mean(0) / (a.std(0) * b.std(0))  # (entries,) correlation over indices
        assert float(corr.abs().max()) < 5.5 / math.sqrt(a.shape[0])
    c = torch.corrcoef(rows.T)  # (120, 120) across entries of one item
    off = c[~torch.eye(120, dtype=torch.bool)]
    assert float(off.abs().max()) < 5.5 / math.sqrt(n_idx)
    assert abs(float(off.mean())) < 5 / math.sqrt(n_idx * off.numel() / 120)


def test_chunking_does_not_change_the_noise(monkeypatch):
    from diffusion_theory.diffusion import evaluation

    whole = hash_noise(torch.arange(9), 4, (5, 7), seed=3)
    monkeypatch.setattr(evaluation, "CHUNK_ENTRIES", 40)  # one (sample, position) row of 36 words per pass
    assert torch.equal(hash_noise(torch.arange(9), 4, (5, 7), seed=3), whole)
    monkeypatch.setattr(evaluation, "CHUNK_ENTRIES", 200)  # 5 rows per pass, the last pass shorter
    assert torch.equal(hash_noise(torch.arange(9), 4, (5, 7), seed=3), whole)


def test_odd_sizes_and_large_indices():
    z = hash_noise(torch.tensor([0, 2**40 + 3]), 2, (3,), seed=-5)
    assert z.shape == (2, 2, 3) and bool(torch.isfinite(z).all())
    assert torch.equal(z[1], hash_noise(torch.tensor([2**40 + 3]), 2, (3,), seed=-5)[0])
    assert not torch.equal(z[1], hash_noise(torch.tensor([3]), 2, (3,), seed=-5)[0])  # high bits count
    with pytest.raises(ValueError, match="indices must be >= 0"):
        hash_noise(torch.tensor([-1]), 2, (3,), seed=0)


# ----------------------------------------------------------------------------------------
# Which runs noise the grid
# ----------------------------------------------------------------------------------------


def test_noisy_grid_is_skipped_only_when_no_callback_reads_it():
    batch, weights, generation = ScoreError(), QKBlockNorms(), CovarianceError(n_samples=4)
    assert needs_noisy_grid([])  # plain training keeps val/ddpm_loss
    assert needs_noisy_grid([batch, weights])
    assert not needs_noisy_grid([weights, generation])
    assert needs_noisy_grid([weights, ModelCheckpoint(monitor="val/ddpm_loss")])
    assert not needs_noisy_grid([weights, ModelCheckpoint(monitor="val/cov_rel_error")])
    assert needs_noisy_grid([generation, TrainingCurves({"f": ["val/ddpm_loss"]})])
    assert not needs_noisy_grid([generation, TrainingCurves({"f": ["val/cov_rel_error"]})])


def test_validation_step_skips_the_grid_for_weight_and_generation_diagnostics(tmp_path):
    from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
    from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
    from diffusion_theory.models.diffusion_module import DiffusionModule
    from diffusion_theory.networks.dit import DiT

    dm = GaussianProcessDataModule(N=8, d=2, length_scale=4.0, n_train=8, n_eval=6, eval_batch_size=3, batch_size=4)
    net = DiT(input_shape=(8, 2), hidden_size=16, depth=1, num_heads=2, pos_embed_mode="concat", pos_dim=8)
    calls = []

    class Spy(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            calls.append(outputs)

    for callbacks, grid in (([QKBlockNorms()], False), ([QKBlockNorms(), ScoreError()], True)):
        calls.clear()
        trainer = pl.Trainer(
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
            callbacks=[*callbacks, Spy()],
            default_root_dir=tmp_path,
        )
        trainer.validate(DiffusionModule(net, ContinuousVPSchedule(n_eval_times=2)), datamodule=dm, verbose=False)
        assert len(calls) == 2
        assert all((out is not None) == grid for out in calls)
        assert ("val/ddpm_loss" in trainer.callback_metrics) == grid
        assert "val/qk_ee_share" in trainer.callback_metrics


def test_default_generator_noise_is_the_per_sample_generator_of_earlier_runs():
    """The default draws sample i's (n_t, *shape) noise from torch.Generator seeded by (seed, i), as every run
    before the hash existed (so earlier numbers stand); a pure function of (seed, index) under any sharding."""
    idx = torch.tensor([5, 0, 12])
    z = evaluation_noise(idx, 4, (3, 2), seed=1234)  # method="generator"
    for row, i in enumerate(idx.tolist()):
        ref = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1234 * 1_000_003 + i))
        assert torch.equal(z[row], ref)
    assert torch.equal(evaluation_noise(idx[1:], 4, (3, 2), seed=1234), z[1:])
    assert evaluation_noise(idx, 4, (3, 2), seed=1234, method="hash").shape == z.shape
    with pytest.raises(ValueError, match="eval_noise: must be one of generator, hash"):
        evaluation_noise(idx, 4, (3, 2), seed=1234, method="philox")
