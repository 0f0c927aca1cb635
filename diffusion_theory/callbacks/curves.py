"""Training curves: named panels of logged metrics against training step, redrawn after each validation.

The history is kept in the callback's state, so it survives a resume from checkpoint.
Example (paper 1 Fig. 2A and 2E):
    panels:
      fig2a_risks: [val/ddpm_loss, val/score_error, val/bayes_risk, val/oracle_risk]
      fig2e_attention: [val/same_pattern_attention]
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from diffusion_theory import plotting
from diffusion_theory.callbacks.figures import save_figure


class TrainingCurves(pl.Callback):
    """Args:
    panels: figure name -> metric names drawn on it (missing metrics are skipped).
    dashed: metric names drawn as dashed reference lines (e.g. exact risks).
    logy: figure names drawn with a log y axis.
    """

    def __init__(self, panels: dict[str, list[str]], dashed: list[str] | None = None, logy: list[str] | None = None):
        if not panels:
            raise ValueError("TrainingCurves.panels must name at least one figure")
        self.panels = panels
        self.dashed = list(dashed or [])
        self.logy = list(logy or [])
        self.history: dict[str, list[tuple[int, float]]] = {}

    @property
    def reads_eval_batch(self) -> bool:
        """Drawing val/ddpm_loss needs the noisy evaluation grid (``diffusion.evaluation.needs_noisy_grid``)."""
        return any(name.startswith("val/ddpm_loss") for names in self.panels.values() for name in names)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [tuple(p) for p in v] for k, v in state_dict.get("history", {}).items()}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        wanted = {m for names in self.panels.values() for m in names}
        for name in wanted:
            if name in trainer.callback_metrics:
                self.history.setdefault(name, []).append((trainer.global_step, float(trainer.callback_metrics[name])))
        for fig_name, names in self.panels.items():
            present = [n for n in names if self.history.get(n)]
            if not present:
                continue
            steps = {n: [s for s, _ in self.history[n]] for n in present}
            values = {n: [v for _, v in self.history[n]] for n in present}
            fig = plotting.curves_figure(steps, values, title=fig_name, logy=fig_name in self.logy, dashed=self.dashed)
            save_figure(trainer, fig, fig_name)
