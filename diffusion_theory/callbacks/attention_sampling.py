"""Attention scores along the backward process against the kernel Gamma: paper 2, Fig. 5 and Fig. 12.

Generate ``n_samples`` sequences with the (EMA) network; at the backward steps ``steps`` of a
``reference_steps``-step chain (paper: {0, 50, 100, 200, 400, 800, 1000} of the DiT code base's 1000-step
linear-beta DDPM), re-run the network on the current state x_t with attention recording on and average
the pre-softmax score matrices
S^l = (Q Y)^T K Y (paper 2 (GP) eq. (1); unscaled q_i . k_j, heads averaged) over the samples: one N x N matrix per
(step, layer). Paper step k is matched to our process by noise level, not by step fraction: the
reference chain's state after k backward steps has abar_{1000-k} (``samplers.reference_alpha_bar``), and
we record at the sampler step whose abar is nearest (``samplers.steps_at_noise_levels``); e.g. paper step
800 (abar 0.66) is t = 0.42 of the VP process abar_t = e^{-t}, not 80 % of its backward time grid.
Each is compared with the data's Gamma by the Pearson correlation of their entries
(``metrics.attention.score_kernel_similarity``; 1 for S = a Gamma + b, a > 0):

    val/attn_gamma_corr                     max over layers, at the last recorded step (the clean end)
    val/attn_gamma_corr/layer_{l}           layer l at the last recorded step
    val/attn_gamma_corr/step_{k}            mean over layers at paper step k

With ``reference_length_scale`` (the reviewer's control: a model trained on white data, Gamma = I),
the same correlations against a reference GP kernel exp(-|i - j|^reference_nu / reference_length_scale)
are logged as val/attn_ref_corr[/layer_{l}]: a control model scoring as high as the GP model would mean
the pattern comes from the index embeddings, not from the data's temporal correlation.

Figure ``fig12_attention_scores.png``: layers x steps grid of the averaged score matrices, each with its
correlation, and Gamma (and the reference kernel) in the last column(s).
Under DDP each rank draws its chunks of samples (``diffusion.generation.for_each_chunk``); the sums of
the score matrices are all-reduced (float64), so every rank computes the same correlations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from diffusion_theory import plotting
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.callbacks.generation_diagnostic import GenerationDiagnostic
from diffusion_theory.diffusion.generation import all_reduce_sum, for_each_chunk
from diffusion_theory.diffusion.samplers import (
    alpha_bar_at,
    callback_times,
    default_steps,
    reference_alpha_bar,
    resolve_sampler,
    steps_at_noise_levels,
)
from diffusion_theory.distributions.gaussian_process import kernel_matrix
from diffusion_theory.metrics.attention import score_kernel_similarity
from diffusion_theory.protocols import KnowsCovariance, RecordsAttention

PAPER_STEPS = (0, 50, 100, 200, 400, 800, 1000)


def map_steps(
    steps: Sequence[int], reference_steps: int, schedule, n_steps: int | None, spacing: str = "uniform"
) -> list[int]:
    """Sampler step index (0 .. K) of each paper step k: the step whose state has the noise level (abar) nearest
    to that after k of ``reference_steps`` backward steps of the paper's linear-beta DDPM (paper 2, Fig. 5, 12)."""
    grid = alpha_bar_at(schedule, callback_times(schedule, n_steps, spacing))  # (K + 1,)
    return steps_at_noise_levels(reference_alpha_bar(steps, reference_steps), grid)


class AttentionAlongSampling(GenerationDiagnostic):
    """Needs a network that records attention (DiT) and data with ``true_covariance`` (KnowsCovariance).

    Args:
        every_n_epochs: run at every n-th validation.
        n_samples: sequences generated; the score matrices are averaged over them (paper: 10^5).
        steps: backward steps to record, in units of a ``reference_steps``-step chain (0 = pure noise,
            reference_steps = the generated sample).
        reference_steps: the length of the chain ``steps`` refer to (paper: 1000 DDPM steps).
        sampler, n_steps, sampler_options: as ``CovarianceError`` (null n_steps: 1000, or all T for ddpm).
        chunk_size: sequences per batch (the unit split across DDP ranks).
        seed: generation seed (chunk k uses (seed, k)).
        exclude_diagonal: drop i = j entries from the correlation (Gamma_ii = 1 everywhere).
        reference_length_scale, reference_nu: if set, also correlate with this GP kernel (the control).
    """

    requires = (("network", RecordsAttention), ("data", KnowsCovariance))

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int = 256,
        steps: list[int] = list(PAPER_STEPS),  # noqa: B006 (jsonargparse shows it)
        reference_steps: int = 1000,
        sampler: str = "auto",
        n_steps: int | None = None,
        sampler_options: dict[str, Any] | None = None,
        chunk_size: int = 256,
        seed: int = 1,
        exclude_diagonal: bool = False,
        reference_length_scale: float | None = None,
        reference_nu: float = 2.0,
    ):
        super().__init__(every_n_epochs)
        if n_samples < 1:
            raise ValueError(f"AttentionAlongSampling.n_samples must be >= 1; got {n_samples}")
        if reference_steps < 1:
            raise ValueError(f"AttentionAlongSampling.reference_steps must be >= 1; got {reference_steps}")
        if not steps or any(not 0 <= k <= reference_steps for k in steps):
            raise ValueError(
                f"AttentionAlongSampling.steps must be a non-empty list in [0, reference_steps = "
                f"{reference_steps}]; got {steps}"
            )
        if reference_length_scale is not None and not reference_length_scale > 0:
            raise ValueError(
                f"AttentionAlongSampling.reference_length_scale must be > 0 or null; got {reference_length_scale}"
            )
        if not 0 < reference_nu <= 2:
            raise ValueError(f"AttentionAlongSampling.reference_nu must lie in (0, 2]; got {reference_nu}")
        self.n_samples, self.steps, self.reference_steps = (
            n_samples,
            sorted(set(int(k) for k in steps)),
            reference_steps,
        )
        self.sampler, self.n_steps, self.chunk_size, self.seed = sampler, n_steps, chunk_size, seed
        self.sampler_options = dict(sampler_options or {})
        self.exclude_diagonal = exclude_diagonal
        self.reference_length_scale, self.reference_nu = reference_length_scale, reference_nu
        self._figure = None

    def sampler_steps(self, pl_module) -> tuple[str, int]:
        """(sampler name, number of backward steps it takes)."""
        schedule = pl_module.schedule
        name = resolve_sampler(self.sampler, bool(schedule.discrete))
        n = self.n_steps if self.n_steps is not None else default_steps(schedule, name)
        return name, int(n if n is not None else schedule.T)

    def mean_scores(self, trainer: pl.Trainer, pl_module) -> tuple[Tensor, list[int]]:
        """Sample-averaged scores (n_rec, L, H, N, N) float64 on every rank, and the sampler steps recorded."""
        name, total = self.sampler_steps(pl_module)
        recorded = map_steps(
            self.steps, self.reference_steps, pl_module.schedule, total, self.sampler_options.get("spacing", "uniform")
        )
        unique = sorted(set(recorded))
        net = pl_module.inference_network
        sums: dict[int, Tensor] = {}

        def record(k: int, t: Tensor, x_t: Tensor) -> None:
            with net.recording_attention(reduce="mean"):
                pl_module.denoise(x_t, t, None, network=net)
                scores = torch.stack([r["scores"] for r in net.attention_records()])  # (L, H, N, N), batch mean
            total_k = scores.double() * x_t.shape[0]  # batch sum
            sums[k] = sums[k] + total_k if k in sums else total_k

        def draw(chunk: int, start: int, rows: int, generator: torch.Generator) -> None:
            pl_module.sample(
                rows,
                sampler=name,
                n_steps=self.n_steps,
                generator=generator,
                callback=record,
                callback_steps=set(unique),
                progress=False,
                **self.sampler_options,
            )

        for_each_chunk(trainer, pl_module, self.n_samples, self.chunk_size, self.seed, draw)
        if not sums:  # a rank with no chunk still takes part in the all-reduce
            shape = self.score_shape(pl_module)
            local = torch.zeros(len(unique), *shape, dtype=torch.float64, device=pl_module.device)
        else:
            local = torch.stack([sums[k] for k in unique])
        mean = all_reduce_sum(trainer, local) / self.n_samples  # (n_unique, L, H, N, N)
        index = [unique.index(k) for k in recorded]
        return mean[index], recorded

    @staticmethod
    def score_shape(pl_module) -> tuple[int, ...]:
        """(L, H, T, T) of a network's recorded scores, from a one-sample forward pass."""
        net = pl_module.inference_network
        x = torch.zeros(1, *net.input_shape, device=pl_module.device)
        t = pl_module.schedule.eval_times()[:1].to(pl_module.device)  # (1,) any native time of the schedule
        with net.recording_attention(reduce="mean"):
            pl_module.denoise(x, t, None, network=net)
            return tuple(torch.stack([r["scores"] for r in net.attention_records()]).shape)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        mean, recorded = self.mean_scores(trainer, pl_module)
        maps = mean.mean(2).cpu()  # (n_steps, L, N, N): heads averaged
        gamma, _ = trainer.datamodule.true_covariance()
        corr = score_kernel_similarity(maps, gamma, self.exclude_diagonal)  # (n_steps, L)
        L = maps.shape[1]
        values = {"val/attn_gamma_corr": float(corr[-1].max())}
        values |= {f"val/attn_gamma_corr/layer_{layer}": float(corr[-1, layer]) for layer in range(L)}
        values |= {f"val/attn_gamma_corr/step_{k}": float(corr[i].mean()) for i, k in enumerate(self.steps)}
        kernels = [("Gamma", gamma, corr)]
        if self.reference_length_scale is not None:
            ref = kernel_matrix(gamma.shape[0], self.reference_length_scale, self.reference_nu)
            ref_corr = score_kernel_similarity(maps, ref, self.exclude_diagonal)
            values["val/attn_ref_corr"] = float(ref_corr[-1].max())
            values |= {f"val/attn_ref_corr/layer_{layer}": float(ref_corr[-1, layer]) for layer in range(L)}
            kernels.append(
                (f"reference kernel l={self.reference_length_scale:g}, nu={self.reference_nu:g}", ref, ref_corr)
            )
        self._figure = (maps.numpy(), kernels, recorded)
        return values

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        if self._figure is None:
            return
        maps, kernels, recorded = self._figure
        self._figure = None
        S, L, N, _ = maps.shape
        name, corr = kernels[0][0], kernels[0][2]
        extra = np.stack([np.broadcast_to(k.numpy(), (L, N, N)) for _, k, _ in kernels], 1)  # (L, n_kernels, N, N)
        grid = np.concatenate([maps.transpose(1, 0, 2, 3), extra], 1)  # (L, S + n_kernels, N, N)
        titles = [
            [f"r={float(corr[s, layer]):.2f}" for s in range(S)] + [n.split(" ")[0] for n, _, _ in kernels]
            for layer in range(L)
        ]
        cols = [f"step {k}\n(sampler {r})" for k, r in zip(self.steps, recorded)] + [n for n, _, _ in kernels]
        fig = plotting.heatmap_grid(
            grid,
            [f"layer {layer + 1}" for layer in range(L)],
            cols,
            f"Fig. 12: mean attention scores (QY)^T KY along the backward process, step {trainer.global_step}; "
            f"r = correlation with {name}",
            cell_titles=titles,
        )
        save_figure(trainer, fig, "fig12_attention_scores")
