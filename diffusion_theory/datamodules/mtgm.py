"""LightningDataModule for the MTGM experiment of paper 1, Sec. 5.1.

Training draws fresh samples from D(pi~, K, {mu_i}, rho) at every step (the population loss),
or cycles a finite set of ``n_train`` samples. Evaluation uses a fixed set of ``n_eval`` samples
from the shifted distribution D(pi~', K, {mu_i}, rho), with its own seed (Sec. 5.1: pi~' is "a
randomly generated uniform pattern distribution independent of pi~"; we draw it from the flat
Dirichlet(1, ..., 1), i.e. uniformly on the simplex).

The module answers the diagnostics' questions (see ``diffusion_theory.protocols``):
exact noise posterior mean (Bayes), oracle estimate, token labels, theory quantities.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from diffusion_theory.datamodules.streams import FreshSampleStream, ShardedBatches
from diffusion_theory.distributions.mtgm import MTGM, check_simplex, resolve_pi_tilde, validate_mtgm_shape


class MTGMDataModule(pl.LightningDataModule):
    """Multi-token Gaussian mixture data (Definition 1).

    Args:
        d: token dimension (paper: 64). Must be >= M.
        M: number of orthogonal patterns (paper: 8).
        K: distinct patterns per data point, 0 < K < M (paper: 4, swept in Fig. 2B).
        P: tokens per data point (paper: 256).
        rho: component standard deviation (paper: 0.3).
        pi_tilde: training proportions: ``uniform`` or a list of M positive numbers summing to 1.
        pi_min: if set, pi~ has this minimal entry on pattern 0 and the rest share the remainder (Fig. 2C).
        pattern_seed: seed of the orthogonal patterns mu_1..mu_M.
        batch_size: data points per training step (per process under DDP).
        steps_per_epoch: training steps between two validations.
        n_train: if set, a finite training set of this many samples; None draws fresh samples every step.
        data_seed: seed of the training data stream.
        n_eval: size of the fixed evaluation set (paper: 512 in our bench; the paper does not say).
        eval_pi_tilde: ``random`` (Dirichlet(1) draw with eval_seed), ``train`` (pi~' = pi~) or a list.
        eval_seed: seed of pi~' and the evaluation samples.
        eval_batch_size: evaluation data points per batch (each is run at every time step).
        posterior_dtype: arithmetic of the exact Bayes posterior: float32 (fast; the sum of log-likelihoods is
            still accumulated in float64, agreeing with float64 to ~1e-5) or float64.
    """

    sample_shape_fields = ("P", "d")  # the config fields behind ``sample_shape``, named by shape errors

    def __init__(
        self,
        d: int = 64,
        M: int = 8,
        K: int = 4,
        P: int = 256,
        rho: float = 0.3,
        pi_tilde: Literal["uniform"] | list[float] = "uniform",
        pi_min: float | None = None,
        pattern_seed: int = 0,
        batch_size: int = 32,
        steps_per_epoch: int = 100,
        n_train: int | None = None,
        data_seed: int = 0,
        n_eval: int = 512,
        eval_pi_tilde: Literal["random", "train"] | list[float] = "random",
        eval_seed: int = 2024,
        eval_batch_size: int = 8,
        posterior_dtype: Literal["float32", "float64"] = "float32",
    ):
        super().__init__()
        validate_mtgm_shape(d=d, M=M, K=K, P=P, rho=rho)
        for name, value in (
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("n_eval", n_eval),
            ("eval_batch_size", eval_batch_size),
        ):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1; got {value}")
        if n_train is not None and n_train < 1:
            raise ValueError(f"data.n_train must be >= 1 or null (fresh samples every step); got {n_train}")
        self.save_hyperparameters()
        pi = resolve_pi_tilde(M, pi_tilde, pi_min, field="data.pi_tilde")
        self.train_dist = MTGM(d=d, M=M, K=K, P=P, rho=rho, pi_tilde=pi, pattern_seed=pattern_seed)
        self.eval_dist = self.train_dist.with_pi_tilde(self._eval_proportions(eval_pi_tilde, pi))
        self._train_set: dict[str, Tensor] | None = None
        self._eval_set: dict[str, Tensor] | None = None

    def _eval_proportions(self, spec, train_pi: Tensor) -> Tensor:
        M = self.hparams.M
        if spec == "train":
            return train_pi
        if spec == "random":
            g = torch.Generator().manual_seed(self.hparams.eval_seed)
            e = -torch.rand(M, generator=g, dtype=torch.float64).log()  # Exp(1) -> Dirichlet(1, ..., 1)
            return e / e.sum()
        if isinstance(spec, str):
            raise ValueError(
                f"data.eval_pi_tilde: expected 'random', 'train' or a list of {M} probabilities; got {spec!r}"
            )
        p = torch.as_tensor(spec, dtype=torch.float64)
        check_simplex(p, M, "data.eval_pi_tilde")
        return p

    # -- data ----------------------------------------------------------------------------------
    def _draw(self, dist: MTGM, n: int, g: torch.Generator) -> dict[str, Tensor]:
        s = dist.sample(n, generator=g)
        return {"x0": s.x0, "labels": s.labels}

    @property
    def sample_shape(self) -> tuple[int, int]:
        """The shape of one data point, (P, d): P tokens in R^d (Definition 1)."""
        return (self.hparams.P, self.hparams.d)

    @property
    def evaluation_set(self) -> dict[str, Tensor]:
        """The fixed evaluation set from D(pi~', K, {mu_i}, rho): x0 (n_eval, P, d), labels (n_eval, P) (the
        pattern of each token), index (n_eval,); drawn from ``eval_seed`` on first use."""
        if self._eval_set is None:
            g = torch.Generator().manual_seed(self.hparams.eval_seed + 1)
            eval_set = self._draw(self.eval_dist, self.hparams.n_eval, g)
            eval_set["index"] = torch.arange(self.hparams.n_eval)
            self._eval_set = eval_set
        return self._eval_set

    def setup(self, stage: str | None = None) -> None:
        self.evaluation_set  # noqa: B018  (drawn once, before any validation)
        if self.hparams.n_train is not None and self._train_set is None:
            g = torch.Generator().manual_seed(self.hparams.data_seed)
            self._train_set = self._draw(self.train_dist, self.hparams.n_train, g)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if self._train_set is not None:
            ds = ShardedBatches(self._train_set, hp.batch_size, shuffle_seed=hp.data_seed)
        else:
            ds = FreshSampleStream(
                lambda n, g: self._draw(self.train_dist, n, g),
                hp.batch_size,
                hp.steps_per_epoch,
                hp.data_seed,
                self._global_step,
            )
        return DataLoader(ds, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(ShardedBatches(self.evaluation_set, self.hparams.eval_batch_size), batch_size=None)

    # -- what the diagnostics may ask (diffusion_theory.protocols) ----------------------------------
    def exact_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """E[E | X^t] under the evaluation distribution (Bayes-optimal denoiser, paper 1 (MTGM) eq. (6))."""
        dtype = torch.float64 if self.hparams.posterior_dtype == "float64" else torch.float32
        return self.eval_dist.bayes_eps(x_t, abar, dtype)

    def oracle_eps(self, x_t: Tensor, abar: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """E[E | X^t, M_Y], paper 1 (MTGM) eq. (13), with the true token labels of the batch."""
        return self.eval_dist.oracle_eps(x_t, abar, batch["labels"])

    def oracle_output_scale(self, abar: Tensor) -> Tensor:
        """The coefficient the trained v_t should reach, paper 1 (MTGM) eq. (16)."""
        return self.train_dist.oracle_coefficient(abar)

    def token_labels(self, batch: dict[str, Tensor]) -> Tensor:
        """The latent pattern Y_p of each token, (B, P)."""
        return batch["labels"]

    def extreme_patterns(self) -> dict[str, int]:
        """Patterns with the smallest and largest training proportion pi~ (Fig. 4)."""
        pi = self.train_dist.pi_tilde
        return {"min_pi": int(pi.argmin()), "max_pi": int(pi.argmax())}

    def theory_quantities(self) -> dict[str, float]:
        """nu_min(K) (paper 1 (MTGM) eq. (7)) and delta(pi~) (paper 1 (MTGM) eq. (8)) of the training distribution,
        and the same for pi~'."""
        return {
            "nu_min": self.train_dist.nu_min(),
            "delta": self.train_dist.imbalance(),
            "eval_nu_min": self.eval_dist.nu_min(),
            "eval_delta": self.eval_dist.imbalance(),
            "n_subsets": float(self.train_dist.subsets.shape[0]),
        }
