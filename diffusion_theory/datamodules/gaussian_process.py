"""LightningDataModule for paper 2's Gaussian-process sequences (Sec. 2, Sec. 6.1).

A sequence is X in R^{N x d} with vec(X) ~ N(mu 1, Gamma (x) Sigma), Gamma_ij = exp(-|i - j|^nu / l),
Sigma = A^T A (``distributions.gaussian_process``). Training reads a FINITE set of ``n_train``
sequences (Sec. 5: the empirical risk over n samples; Sec. 6.1: n in {10^3, ..., 10^5}); the set is
the first n_train sequences of one seeded stream, so runs with different n share their first
sequences (nested training sets for the n-sweep of Fig. 4(a)). ``steps_per_epoch`` batches make an
epoch whatever n is, so validation comes at the same steps for every n. Evaluation uses a fixed set
of ``n_eval`` sequences from its own seed, each with an ``index``.

``kernel: white`` replaces Gamma by the identity (Gamma_ij = 1{i = j}, Sec. 3.1's extreme case): the
reviewer's control with no temporal correlation, same Sigma, same everything else.

The module answers the diagnostics' questions (``diffusion_theory.protocols``):
``exact_eps`` (paper 2 (GP) eq. (2) through Tweedie), ``true_covariance`` and ``training_sequences`` (KnowsCovariance).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from diffusion_theory.datamodules.streams import CycledBatches, FreshSampleStream, ShardedBatches
from diffusion_theory.distributions.gaussian_process import GaussianProcessSequences, Kernel

# The training stream and the evaluation set never share a seed: the evaluation seed is offset by this.
EVAL_SEED_OFFSET = 1_000_003


class GaussianProcessDataModule(pl.LightningDataModule):
    """Sequences of N frames in R^d from a stationary Gaussian process (paper 2, Sec. 6.1).

    Args:
        N: sequence length, one token per frame (paper: 128).
        d: frame dimension (paper: 8).
        length_scale: l in gamma(h, h') = exp(-|h - h'|^nu / l) (paper: 64; Fig. 4(a) sweeps 4 .. 1024).
        nu: exponent in (0, 2] (paper: 2; Fig. 4(a) sweeps 1 .. 2).
        mean: the constant mean mu of every entry (paper: 0).
        kernel: ``gp`` (the kernel above) or ``white`` (Gamma = I: no temporal correlation, the control).
        kernel_seed: seeds A in Sigma = A^T A.
        jitter: added to Gamma's diagonal; 0 is the paper's Gamma (numerically singular for smooth
            kernels, which the eigendecomposition handles: jitter is never required).
        n_train: size of the finite training set (paper: 10^3 .. 10^5); null draws fresh sequences at
            every step (the population loss).
        train_seed: seed of the training stream; the first n_train sequences are the training set.
        batch_size: sequences per training step (per process under DDP; paper: 128, Fig. 9).
        steps_per_epoch: training steps between two validations.
        n_eval: size of the fixed evaluation set (each is run at every evaluation time).
        eval_seed: seed of the evaluation set (offset so it never equals a training stream).
        eval_batch_size: evaluation sequences per batch.
    """

    sample_shape_fields = ("N", "d")  # the config fields behind ``sample_shape``, named by shape errors

    def __init__(
        self,
        N: int = 128,
        d: int = 8,
        length_scale: float = 64.0,
        nu: float = 2.0,
        mean: float = 0.0,
        kernel: Kernel = "gp",
        kernel_seed: int = 0,
        jitter: float = 0.0,
        n_train: int | None = 1000,
        train_seed: int = 0,
        batch_size: int = 128,
        steps_per_epoch: int = 100,
        n_eval: int = 64,
        eval_seed: int = 2024,
        eval_batch_size: int = 16,
    ):
        super().__init__()
        for name, value in (
            ("N", N),
            ("d", d),
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("n_eval", n_eval),
            ("eval_batch_size", eval_batch_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"data.{name} must be an integer >= 1; got {value}")
        if not length_scale > 0:
            raise ValueError(f"data.length_scale must be > 0 (the kernel's bandwidth l); got {length_scale}")
        if not 0 < nu <= 2:
            raise ValueError(
                f"data.nu must lie in (0, 2]: exp(-|h|^nu / l) is a positive-definite kernel only for "
                f"0 < nu <= 2; got {nu}"
            )
        if not jitter >= 0:
            raise ValueError(f"data.jitter must be >= 0; got {jitter}")
        if kernel not in ("gp", "white"):
            raise ValueError(
                f"data.kernel must be 'gp' or 'white' (Gamma = I, no temporal correlation); got {kernel!r}"
            )
        if n_train is not None and (int(n_train) != n_train or n_train < 1):
            raise ValueError(
                f"data.n_train must be an integer >= 1, or null for fresh sequences every step; got {n_train}"
            )
        self.save_hyperparameters()
        try:
            self.dist = GaussianProcessSequences(
                N=N, d=d, length_scale=length_scale, nu=nu, mean=mean, seed=kernel_seed, jitter=jitter, kernel=kernel
            )
        except ValueError as err:  # name the config fields: Gamma -> data.jitter, Sigma -> data.kernel_seed
            message = str(err).replace("gp.jitter", "data.jitter").replace("gp.seed", "data.kernel_seed")
            raise ValueError(message.replace("gp.", "data: ")) from err
        self._train_set: dict[str, Tensor] | None = None
        self._eval_set: dict[str, Tensor] | None = None

    # -- data ------------------------------------------------------------------------------------
    def training_sequences(self, n: int) -> Tensor:
        """The first n sequences of the training stream, (n, N, d) float32 (KnowsCovariance).

        For n <= n_train these are training sequences; beyond, further draws of the same stream.
        Nested: training_sequences(n) == training_sequences(n')[:n] for n <= n'.
        """
        return self.dist.training_set(n, seed=self.hparams.train_seed)

    def training_set_size(self) -> int | None:
        """n_train, or None when training draws fresh sequences every step (KnowsCovariance)."""
        return None if self.hparams.n_train is None else int(self.hparams.n_train)

    @property
    def sample_shape(self) -> tuple[int, int]:
        """The shape of one sequence, (N, d): what the network's ``input_shape`` must equal."""
        return (self.hparams.N, self.hparams.d)

    @property
    def evaluation_set(self) -> dict[str, Tensor]:
        """The fixed evaluation set: x0 (n_eval, N, d), index (n_eval,); drawn from ``eval_seed`` on first use."""
        if self._eval_set is None:
            hp = self.hparams
            x0 = self.dist.sample(hp.n_eval, generator=hp.eval_seed + EVAL_SEED_OFFSET)
            self._eval_set = {"x0": x0, "index": torch.arange(hp.n_eval)}
        return self._eval_set

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.evaluation_set  # noqa: B018  (drawn once, before any validation)
        if hp.n_train is not None and self._train_set is None:
            self._train_set = {"x0": self.training_sequences(hp.n_train)}

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if self._train_set is not None:
            ds = CycledBatches(self._train_set, hp.batch_size, hp.steps_per_epoch, hp.train_seed, self._global_step)
        else:
            ds = FreshSampleStream(
                lambda n, g: {"x0": self.dist.sample(n, generator=g)},
                hp.batch_size,
                hp.steps_per_epoch,
                hp.train_seed,
                self._global_step,
            )
        return DataLoader(ds, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.evaluation_set, self.hparams.eval_batch_size), batch_size=None)

    # -- what the diagnostics may ask (diffusion_theory.protocols) ------------------------------------
    def exact_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """E[E | X^t] = -sigma_t grad log p_t(X^t), with the score of paper 2 (GP) eq. (2):
        -(abar Gamma (x) Sigma + (1 - abar) I)^{-1} (v_t - alpha_t mu). x_t (B, N, d), abar (B,) -> (B, N, d)."""
        return self.dist.eps_posterior_mean(x_t, abar)

    def true_covariance(self) -> tuple[Tensor, Tensor]:
        """(Gamma (N, N), Sigma (d, d)), float64: Cov[vec(X)] = Gamma (x) Sigma (Sec. 2)."""
        return self.dist.gamma, self.dist.sigma
