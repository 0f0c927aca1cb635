"""Mean denoising (paper 1 Sec. 4.2): does attention concentrate on tokens of the query's pattern?

    val/same_pattern_attention = E sum_{j: Y_j = Y_p} softmax_j(x_j^T W x_p / d)      (eq. 20, Fig. 2E)
    val/qk_same/<g>, val/qk_diff/<g>: mean query-key products x_j^T W x_p / d over key tokens j != p
        with the same / a different pattern, for queries of pattern g in {min_pi, max_pi}   (Fig. 4, eqs. 18-19)
Also a figure of one evaluation sample's attention matrix with tokens sorted by pattern.
"""
from __future__ import annotations

import torch
from torch import Tensor

from diffusion_theory import plotting
from diffusion_theory.callbacks.diagnostic import Diagnostic
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.protocols import ExposesAttention, HasTokenLabels


class PatternAttention(Diagnostic):
    """Needs a network with ``attention_logits`` and data with ``token_labels``.

    Args:
        figure_time_fraction: the evaluation time (as a fraction of the grid) of the attention-matrix figure.
    """

    requires = (("network", ExposesAttention), ("data", HasTokenLabels))

    def __init__(self, every_n_epochs: int = 1, n_time_bins: int = 5, figure_time_fraction: float = 0.5):
        super().__init__(every_n_epochs, n_time_bins)
        if not 0 <= figure_time_fraction <= 1:
            raise ValueError(f"PatternAttention.figure_time_fraction must lie in [0, 1]; got {figure_time_fraction}")
        self.figure_time_fraction = figure_time_fraction
        self._example: tuple | None = None

    def groups(self, trainer) -> dict[str, int]:
        dm = trainer.datamodule
        return dm.extreme_patterns() if hasattr(dm, "extreme_patterns") else {}

    def metric_names(self, trainer, pl_module) -> list[str]:
        names = ["val/same_pattern_attention"]
        names += [f"val/same_pattern_attention/t_bin_{k}" for k in range(self.n_time_bins)]
        for g in self.groups(trainer):
            names += [f"val/qk_same/{g}", f"val/qk_diff/{g}"]
        return names

    def measure(self, trainer, pl_module, outputs: dict[str, Tensor], batch, batch_idx: int) -> None:
        x_t, t = outputs["x_t"], outputs["t"]
        logits = pl_module.inference_network.attention_logits(x_t, pl_module.schedule.model_time(t)).float()  # (B, P, P)
        labels = trainer.datamodule.token_labels(outputs)  # (B, P)
        same = labels.unsqueeze(-1) == labels.unsqueeze(-2)  # (B, P, P) query rows, key columns
        mass = (torch.softmax(logits, -1) * same).sum(-1)  # (B, P) attention on same-pattern keys
        self.update("val/same_pattern_attention", mass.mean(1))
        bins = self.time_bins(outputs)
        for k in range(self.n_time_bins):
            if (bins == k).any():
                self.update(f"val/same_pattern_attention/t_bin_{k}", mass[bins == k].mean(1))
        off_diag = ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
        for g, u in self.groups(trainer).items():
            query_is_u = (labels == u).unsqueeze(-1)  # (B, P, 1)
            for kind, key_mask in (("same", same & off_diag), ("diff", ~same)):
                mask = query_is_u & key_mask
                n = mask.sum()
                if n > 0:
                    self.update(f"val/qk_{kind}/{g}", logits[mask].mean(), weight=n.float())
        if batch_idx == 0 and trainer.is_global_zero:
            n_t = int(outputs["n_times"])
            i = min(n_t - 1, int(round(self.figure_time_fraction * (n_t - 1))))
            self._example = (torch.softmax(logits[i], -1).cpu().numpy(), labels[i].cpu().numpy(), int(t[i]))

    def after_epoch(self, trainer, pl_module, values) -> None:
        if self._example is None:
            return
        attn, labels, t = self._example
        fig = plotting.attention_matrix_figure(
            attn, labels, f"attention of one evaluation sample, t = {t}, step {trainer.global_step}\n"
                          f"same-pattern mass {values.get('val/same_pattern_attention', float('nan')):.3f}")
        save_figure(trainer, fig, "attention_matrix")
        self._example = None
