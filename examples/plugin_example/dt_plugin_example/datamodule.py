"""LightningDataModule of Gaussian AR(1) sequences (``dt_plugin_example.ar1``).

Same batch conventions as diffusion_theory's ``MTGMDataModule``: a batch is a dict with ``x0``
(B, P, d); evaluation batches also carry ``index`` (B,), the row of the fixed evaluation set, which
seeds that sample's evaluation noise. Training draws fresh sequences at every step
(``FreshSampleStream``, seeded by rank and step); evaluation is a fixed set cut into rank shards
without padding (``ShardedBatches``), so the diagnostics are DDP-exact.

Capabilities (``diffusion_theory.protocols``): ``exact_eps`` (so the built-in ``ScoreError`` runs on
it) and ``theory_quantities``.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from diffusion_theory.datamodules.streams import FreshSampleStream, ShardedBatches
from dt_plugin_example.ar1 import AR1Process


class AR1DataModule(pl.LightningDataModule):
    """Stationary AR(1) sequences: x_{i+1} = a x_i + s sqrt(1 - a^2) z, Cov(x_i, x_j) = s^2 a^{|i-j|} I_d.

    Args:
        d: token dimension (independent chains, one per coordinate).
        P: tokens per sequence.
        a: lag-one correlation, |a| < 1.
        variance: s^2, the variance of each coordinate (1 / (1 - a^2) is the chain x_{i+1} = a x_i + N(0, 1)).
        batch_size: sequences per training step (per process under DDP).
        steps_per_epoch: training steps between two validations.
        data_seed: seed of the training stream.
        n_eval: size of the fixed evaluation set.
        eval_seed: seed of the evaluation set.
        eval_batch_size: evaluation sequences per batch (each is run at every evaluation time).
    """

    def __init__(
        self,
        d: int = 8,
        P: int = 32,
        a: float = 0.9,
        variance: float = 1.0,
        batch_size: int = 64,
        steps_per_epoch: int = 100,
        data_seed: int = 0,
        n_eval: int = 128,
        eval_seed: int = 2024,
        eval_batch_size: int = 8,
    ):
        super().__init__()
        for name, value in (
            ("d", d),
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("n_eval", n_eval),
            ("eval_batch_size", eval_batch_size),
        ):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1; got {value}")
        self.save_hyperparameters()
        self.process = AR1Process(P=P, a=a, variance=variance)
        self._eval_set: dict[str, Tensor] | None = None

    def _draw(self, n: int, g: torch.Generator) -> dict[str, Tensor]:
        return {"x0": self.process.sample(n, self.hparams.d, g)}  # (n, P, d)

    def setup(self, stage: str | None = None) -> None:
        if self._eval_set is None:
            g = torch.Generator().manual_seed(self.hparams.eval_seed)
            self._eval_set = {**self._draw(self.hparams.n_eval, g), "index": torch.arange(self.hparams.n_eval)}

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        stream = FreshSampleStream(self._draw, hp.batch_size, hp.steps_per_epoch, hp.data_seed, self._global_step)
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self._eval_set, self.hparams.eval_batch_size), batch_size=None)

    # -- what the diagnostics may ask (diffusion_theory.protocols) ---------------------------------
    def exact_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """E[E | X^t] = sqrt(1 - abar) (abar C + (1 - abar) I)^{-1} X^t; x_t (N, P, d), abar (N,)."""
        return self.process.posterior_noise_mean(x_t, abar)

    def theory_quantities(self) -> dict[str, float]:
        """The chain's parameters and the extreme eigenvalues of C (which set how hard denoising is)."""
        lam = self.process.eigenvalues
        return {
            "ar1_a": self.process.a,
            "ar1_variance": self.process.variance,
            "ar1_cov_eig_min": float(lam.min()),
            "ar1_cov_eig_max": float(lam.max()),
        }
