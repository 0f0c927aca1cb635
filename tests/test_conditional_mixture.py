"""Class-conditional sampling on a law with a known answer: three Gaussian classes in 2-D.

Samples of class c must match N(mu_c, Sigma_c) within a tolerance set by the sample size n (standard errors
of the sample mean and covariance), first with the exact class-conditional denoiser (tight), then with a
small class-conditional DiT trained for a few seconds with label dropout (classifier-free guidance training).
Negative controls: another class's law and the unconditional (null-class) samples fail the same check.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from diffusion_theory.diffusion.continuous import ContinuousVPSchedule
from diffusion_theory.models.diffusion_module import DiffusionModule
from diffusion_theory.networks.dit import DiT

MEANS = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype=torch.float64)  # (3, 2)
FACTORS = torch.tensor(
    [[[0.5, 0.0], [0.2, 0.2]], [[0.3, 0.0], [0.0, 0.6]], [[0.4, -0.2], [0.0, 0.3]]], dtype=torch.float64
)  # (3, 2, 2): x = mu_c + A_c z
COVS = FACTORS @ FACTORS.transpose(1, 2)  # (3, 2, 2) Sigma_c
SCHEDULE_T = 8.0
SAMPLER = dict(sampler="ode", n_steps=40, spacing="log", progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def law_check(x: Tensor, c: int) -> tuple[float, float, float]:
    """(max |mean error| in standard errors, relative Frobenius error of the covariance, that error's standard
    error) of samples x (n, 2) against class c. Var(S_ij) = (Sigma_ii Sigma_jj + Sigma_ij^2) / n for Gaussians."""
    x = x.double().reshape(x.shape[0], -1)
    n, sigma = x.shape[0], COVS[c]
    mean_z = ((x.mean(0) - MEANS[c]) / (sigma.diagonal() / n).sqrt()).abs().max().item()
    cov_err = ((torch.cov(x.T) - sigma).norm() / sigma.norm()).item()
    var = (sigma.diagonal()[:, None] * sigma.diagonal()[None] + sigma**2) / n
    return mean_z, cov_err, (var.sum().sqrt() / sigma.norm()).item()


# ----------------------------------------------------------------------------------------
# The exact class-conditional denoiser
# ----------------------------------------------------------------------------------------


class ExactClassDenoiser(nn.Module):
    """The Bayes-optimal noise predictor of the mixture under the VP process abar_t = e^{-t} (paper 2, Sec. 2):
    given class c, X_t ~ N(m_c, C_c) with m_c = sqrt(abar) mu_c, C_c = abar Sigma_c + (1 - abar) I, so
    E[E | X_t = x, c] = sqrt(1 - abar) C_c^{-1} (x - m_c); the null class is the mixture, weighting the classes by
    their posterior probabilities (uniform prior). Input x (B, 1, 2), one token of two coordinates."""

    condition_names = ("y",)
    has_null_class = True

    def __init__(self, schedule: ContinuousVPSchedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, x: Tensor, model_time: Tensor, y: Tensor | None = None, drop_labels: bool | Tensor = False):
        t = model_time.double() * self.schedule.T / self.schedule.model_time_scale  # (B,)
        abar = torch.exp(-t)[:, None, None, None]  # (B, 1, 1, 1)
        z = x.double().reshape(x.shape[0], 1, 2, 1)  # (B, 1, 2, 1)
        m = abar.sqrt() * MEANS[None, :, :, None]  # (B, 3, 2, 1)
        C = abar * COVS[None] + (1 - abar) * torch.eye(2, dtype=torch.float64)  # (B, 3, 2, 2)
        eps_c = (1 - abar).sqrt() * torch.linalg.solve(C, z - m)  # (B, 3, 2, 1)
        log_w = torch.distributions.MultivariateNormal(m.squeeze(-1), C).log_prob(z.squeeze(-1))  # (B, 3)
        eps_null = (torch.softmax(log_w, 1)[..., None, None] * eps_c).sum(1)  # (B, 2, 1)
        drop = (
            torch.ones(x.shape[0], dtype=torch.bool)
            if drop_labels is True
            else (drop_labels if isinstance(drop_labels, Tensor) else torch.zeros(x.shape[0], dtype=torch.bool))
        )
        if y is None and not bool(drop.all()):
            raise ValueError("ExactClassDenoiser: labels y are missing")
        labels = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y.long()
        eps = torch.where(drop[:, None, None], eps_null, eps_c[torch.arange(x.shape[0]), labels])
        return eps.reshape(x.shape).to(x.dtype)

    def forward_with_cfg(self, x: Tensor, model_time: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        cond, uncond = self(x, model_time, y), self(x, model_time, drop_labels=True)
        return uncond + cfg_scale * (cond - uncond)


def exact_module() -> DiffusionModule:
    schedule = ContinuousVPSchedule(T=SCHEDULE_T, t0=1e-3)
    return DiffusionModule(ExactClassDenoiser(schedule), schedule, condition_keys=["y"])


def test_exact_denoiser_samples_each_class_and_guidance_one_is_plain_conditional_sampling():
    module = exact_module()
    n = 4000
    for c in range(3):
        x = module.sample(n, y=c, shape=(1, 2), generator=torch.Generator().manual_seed(c), **SAMPLER)
        mean_z, cov_err, cov_se = law_check(x, c)
        assert mean_z < 4 and cov_err < 4 * cov_se, (c, mean_z, cov_err, cov_se)
        wrong_z, wrong_cov, _ = law_check(x, (c + 1) % 3)  # negative control: another class's law fails
        assert wrong_z > 50 and wrong_cov > 4 * cov_se
        guided = module.sample(
            n, y=c, guidance_scale=1.0, shape=(1, 2), generator=torch.Generator().manual_seed(c), **SAMPLER
        )
        assert torch.allclose(guided, x, atol=1e-4)  # CFG at scale 1 = plain conditional sampling
    # guidance beyond 1 pushes the samples away from the other classes: the class mean moves outwards
    strong = module.sample(
        n, y=0, guidance_scale=3.0, shape=(1, 2), generator=torch.Generator().manual_seed(0), **SAMPLER
    )
    assert strong.double().mean(0)[0, 0] > MEANS[0, 0] + 0.01
    # the null class samples the mixture: mean (0, 0) is far from every class
    mixture = module.sample(n, drop_labels=True, shape=(1, 2), generator=torch.Generator().manual_seed(7), **SAMPLER)
    assert mixture.double().mean(0).abs().max() < 0.15
    with pytest.raises(ValueError, match="condition_keys"):
        module.sample(4, shape=(1, 2), **SAMPLER)  # no labels and no null class asked for


# ----------------------------------------------------------------------------------------
# A small class-conditional DiT, trained
# ----------------------------------------------------------------------------------------


class MixtureStream(IterableDataset):
    """Batches {x0 (B, 1, 2), y (B,)} of the mixture with equal class weights, from a seeded stream."""

    def __init__(self, batch_size: int, steps: int):
        self.batch_size, self.steps = batch_size, steps

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(self.steps):
            y = torch.randint(0, 3, (self.batch_size,), generator=g)
            z = torch.randn(self.batch_size, 2, 1, generator=g, dtype=torch.float64)
            x = MEANS[y] + (FACTORS[y] @ z).squeeze(-1)
            yield {"x0": x[:, None, :].float(), "y": y}


class MixtureData(pl.LightningDataModule):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def train_dataloader(self):
        return DataLoader(MixtureStream(256, self.steps), batch_size=None)


def test_trained_class_conditional_dit_samples_each_class():
    steps = 1200
    torch.manual_seed(0)
    net = DiT(input_shape=(1, 2), hidden_size=64, depth=2, num_heads=2, pos_embed_mode="add", num_classes=3)
    module = DiffusionModule(
        net,
        ContinuousVPSchedule(T=SCHEDULE_T, t0=1e-3),
        loss_scale=1.0,
        condition_keys=["y"],
        label_dropout=0.1,
        ema_decay=0.99,
    )
    module.configure_optimizers = lambda: torch.optim.AdamW(module.network.parameters(), lr=3e-3)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=MixtureData(steps))
    n = 600  # per class: mean standard error ~0.025, covariance relative standard error ~0.06
    for c in range(3):
        x = module.sample(n, y=c, generator=torch.Generator().manual_seed(c), **SAMPLER)
        mean_z, cov_err, cov_se = law_check(x, c)
        # 5 standard errors: the sampling noise of n samples plus what a few seconds of training leave
        assert mean_z < 5 and cov_err < 5 * cov_se, (c, mean_z, cov_err, cov_se)
        assert law_check(x, (c + 1) % 3)[0] > 50  # negative control: another class's law fails
    mixture = module.sample(n, drop_labels=True, generator=torch.Generator().manual_seed(9), **SAMPLER)
    assert min(law_check(mixture, c)[0] for c in range(3)) > 20  # the null class learned the mixture, no class
