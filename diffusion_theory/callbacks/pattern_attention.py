"""Mean denoising (paper 1 (MTGM) Sec. 4.2): does attention concentrate on tokens of the query's pattern?

    val/same_pattern_attention = E sum_{j: Y_j = Y_p} softmax_j(x_j^T W x_p / d)
        (paper 1 (MTGM) eq. (20), Fig. 2E; ``metrics.pattern_attention.same_pattern_mass``), also per time bin
    val/qk_same/<g>, val/qk_diff/<g>: mean query-key products x_j^T W x_p / d over key tokens j != p
        with the same / a different pattern, for queries of pattern g in {min_pi, max_pi}
        (paper 1 (MTGM) eqs. (18)-(19), Fig. 4; ``metrics.pattern_attention.query_key_means``)
Also a figure of one evaluation sample's attention matrix with tokens sorted by pattern.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_theory import plotting
from diffusion_theory.callbacks.diagnostic import BatchDiagnostic
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.metrics.pattern_attention import query_key_means, same_pattern_mass
from diffusion_theory.protocols import ExposesAttention, HasPatternGroups, HasTokenLabels


class PatternAttention(BatchDiagnostic):
    """Needs a network with ``attention_logits`` and data with ``token_labels`` and ``extreme_patterns``.

    Args:
        figure_time_fraction: the evaluation time (as a fraction of the grid) of the attention-matrix figure.
    """

    requires = (("network", ExposesAttention), ("data", HasTokenLabels), ("data", HasPatternGroups))

    def __init__(self, every_n_epochs: int = 1, n_time_bins: int = 5, figure_time_fraction: float = 0.5):
        super().__init__(every_n_epochs, n_time_bins)
        if not 0 <= figure_time_fraction <= 1:
            raise ValueError(f"PatternAttention.figure_time_fraction must lie in [0, 1]; got {figure_time_fraction}")
        self.figure_time_fraction = figure_time_fraction
        self._example: tuple | None = None

    def metric_names(self, trainer, pl_module) -> list[str]:
        names = ["val/same_pattern_attention"] + self.time_bin_names("val/same_pattern_attention")
        for g in trainer.datamodule.extreme_patterns():
            names += [f"val/qk_same/{g}", f"val/qk_diff/{g}"]
        return names

    def measure(self, trainer, pl_module, outputs: dict[str, Tensor], batch, batch_idx: int) -> None:
        x_t, t = outputs["x_t"], outputs["t"]
        logits = pl_module.inference_network.attention_logits(
            x_t, pl_module.schedule.model_time(t)
        ).float()  # (B, P, P)
        labels = trainer.datamodule.token_labels(outputs)  # (B, P)
        mass = same_pattern_mass(logits, labels)  # (B, P) attention on same-pattern keys
        self.update_with_time_bins("val/same_pattern_attention", mass.mean(1), outputs)
        for g, u in trainer.datamodule.extreme_patterns().items():
            for kind, (mean, n) in query_key_means(logits, labels, u).items():
                if n > 0:
                    self.update(f"val/qk_{kind}/{g}", mean, weight=n.float())
        if batch_idx == 0 and trainer.is_global_zero:
            n_t = int(outputs["n_times"])
            i = min(n_t - 1, int(round(self.figure_time_fraction * (n_t - 1))))
            self._example = (torch.softmax(logits[i], -1).cpu().numpy(), labels[i].cpu().numpy(), int(t[i]))

    def after_epoch(self, trainer, pl_module, values) -> None:
        if self._example is None:
            return
        attn, labels, t = self._example
        fig = plotting.attention_matrix_figure(
            attn,
            labels,
            f"attention of one evaluation sample, t = {t}, step {trainer.global_step}\n"
            f"same-pattern mass {values.get('val/same_pattern_attention', float('nan')):.3f}",
        )
        save_figure(trainer, fig, "attention_matrix")
        self._example = None
