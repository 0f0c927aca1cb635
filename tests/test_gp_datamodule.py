"""GaussianProcessDataModule (paper 2, Sec. 6.1): validation, nested training sets, exact eps, white control;
CycledBatches; the continuous schedule's evaluation grid."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_theory.datamodules import streams
from diffusion_theory.datamodules.gaussian_process import GaussianProcessDataModule
from diffusion_theory.datamodules.streams import CycledBatches
from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.distributions import gaussian_process

SMALL = dict(
    N=6,
    d=2,
    length_scale=4.0,
    nu=1.5,
    mean=0.3,
    n_train=20,
    batch_size=4,
    steps_per_epoch=3,
    n_eval=5,
    eval_batch_size=2,
)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(length_scale=0.0), "data.length_scale"),
        (dict(length_scale=-2.0), "data.length_scale"),
        (dict(nu=0.0), "data.nu"),
        (dict(nu=2.5), "data.nu"),
        (dict(N=0), "data.N"),
        (dict(d=0), "data.d"),
        (dict(n_train=0), "data.n_train"),
        (dict(batch_size=0), "data.batch_size"),
        (dict(jitter=-1e-3), "data.jitter"),
        (dict(kernel="rbf"), "data.kernel"),
        (dict(n_eval=0), "data.n_eval"),
    ],
)
def test_bad_inputs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        GaussianProcessDataModule(**(SMALL | kwargs))


def test_non_psd_gamma_names_data_jitter(monkeypatch):
    def indefinite(N, length_scale, nu):  # a symmetric matrix with a clearly negative eigenvalue
        return torch.eye(N, dtype=torch.float64) - 2.0 * torch.ones(N, N, dtype=torch.float64) / N * 1.5

    monkeypatch.setattr(gaussian_process, "kernel_matrix", indefinite)
    with pytest.raises(ValueError, match=r"data\.jitter") as err:
        GaussianProcessDataModule(**SMALL)
    assert "positive semi-definite" in str(err.value)


def test_training_sets_are_nested_and_the_eval_set_is_separate():
    small, large = GaussianProcessDataModule(**(SMALL | dict(n_train=5))), GaussianProcessDataModule(**SMALL)
    small.setup(), large.setup()
    assert torch.equal(small._train_set["x0"], large._train_set["x0"][:5])
    assert torch.equal(large.training_sequences(30)[:20], large._train_set["x0"])  # further draws of the same stream
    assert torch.equal(small.evaluation_set["x0"], large.evaluation_set["x0"])
    assert torch.equal(large.evaluation_set["index"], torch.arange(5))
    assert not torch.allclose(large.evaluation_set["x0"], large._train_set["x0"][:5])
    other = GaussianProcessDataModule(**(SMALL | dict(train_seed=1)))
    other.setup()
    assert not torch.allclose(other._train_set["x0"], large._train_set["x0"])


def brute_force_eps(dm: GaussianProcessDataModule, x_t: torch.Tensor, abar: float) -> torch.Tensor:
    """E[E | X^t] from the full (Nd) x (Nd) covariance: sqrt(1 - abar) C_t^{-1} (v - sqrt(abar) mu), eq. (2)."""
    gamma, sigma = dm.true_covariance()
    Nd = gamma.shape[0] * sigma.shape[0]
    cov_t = abar * torch.kron(gamma, sigma) + (1 - abar) * torch.eye(Nd, dtype=torch.float64)
    v = x_t.reshape(x_t.shape[0], Nd).double() - math.sqrt(abar) * dm.hparams.mean
    return (math.sqrt(1 - abar) * torch.linalg.solve(cov_t, v.T).T).reshape(x_t.shape)


@pytest.mark.parametrize("kernel", ["gp", "white"])
def test_exact_eps_matches_the_full_covariance_posterior(kernel):
    dm = GaussianProcessDataModule(**(SMALL | dict(kernel=kernel)))
    x_t = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for abar in (0.999, 0.5, 0.01):
        got = dm.exact_eps(x_t, torch.full((3,), abar, dtype=torch.float64), {})
        assert torch.allclose(got, brute_force_eps(dm, x_t, abar), atol=1e-9), abar


def test_white_kernel_has_identity_gamma_and_independent_frames():
    dm = GaussianProcessDataModule(**(SMALL | dict(kernel="white", n_train=4000)))
    gamma, sigma = dm.true_covariance()
    assert torch.equal(gamma, torch.eye(6, dtype=torch.float64))
    assert torch.equal(sigma, GaussianProcessDataModule(**SMALL).true_covariance()[1])  # same Sigma as the GP run
    x = dm.training_sequences(4000).double()
    lag_one = ((x[:, 1:] - x.mean(0)[1:]) * (x[:, :-1] - x.mean(0)[:-1])).mean(0)  # (N - 1, d)
    assert lag_one.abs().max() < 5 * sigma.diagonal().max() / math.sqrt(4000)


def test_training_batches_and_evaluation_batches():
    dm = GaussianProcessDataModule(**SMALL)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(b["x0"].shape == (4, 6, 2) for b in batches)
    val = list(dm.val_dataloader())
    assert torch.equal(torch.cat([b["index"] for b in val]), torch.arange(5))
    fresh = GaussianProcessDataModule(**(SMALL | dict(n_train=None)))
    fresh.setup()
    assert next(iter(fresh.train_dataloader()))["x0"].shape == (4, 6, 2)


def test_cycled_batches_cover_each_pass_are_rank_disjoint_and_resume(monkeypatch):
    data = {"x0": torch.arange(10)}
    ds = CycledBatches(data, batch_size=3, steps=4, seed=5)
    rows = torch.cat([ds.rows(s, 0, 1) for s in range(10)])  # 30 positions = 3 passes of 10
    for p in range(3):
        assert sorted(rows[10 * p : 10 * (p + 1)].tolist()) == list(range(10))
    even = CycledBatches({"x0": torch.arange(12)}, batch_size=3, steps=4, seed=5)
    for step in range(6):  # 2 ranks x 3 rows divide the 12 rows: no step straddles passes, ranks share no row
        a, b = even.rows(step, 0, 2), even.rows(step, 1, 2)
        assert not set(a.tolist()) & set(b.tolist())
    resumed = CycledBatches(data, batch_size=3, steps=2, seed=5, step_fn=lambda: 2)
    monkeypatch.setattr(streams, "current_rank_and_world", lambda: (0, 1))
    assert [b["x0"].tolist() for b in resumed] == [b["x0"].tolist() for b in ds][2:4]
    tiny = CycledBatches({"x0": torch.arange(2)}, batch_size=5, steps=1, seed=0)  # batch larger than the set
    assert sorted(tiny.rows(0, 0, 1).tolist()) == [0, 0, 0, 1, 1]


def test_continuous_schedule_eval_grid():
    s = ContinuousVPSchedule(T=10.0, t0=1e-3, n_eval_times=5)
    t = s.eval_times()
    assert t.shape == (5,) and t[0].item() == pytest.approx(1e-3) and t[-1].item() == pytest.approx(10.0)
    ratios = t[1:] / t[:-1]
    assert torch.allclose(ratios, ratios[0].expand(4), rtol=1e-4)  # log spacing
    u = ContinuousVPSchedule(T=10.0, t0=1e-3, n_eval_times=3, eval_spacing="uniform").eval_times()
    assert torch.allclose(u, torch.tensor([1e-3, 5.0005, 10.0]))
    with pytest.raises(ValueError, match="schedule.n_eval_times"):
        ContinuousVPSchedule(n_eval_times=0)
    with pytest.raises(ValueError, match="schedule.eval_spacing"):
        ContinuousVPSchedule(eval_spacing="cosine")
