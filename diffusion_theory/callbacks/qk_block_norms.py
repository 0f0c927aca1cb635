"""Where attention looks: block norms of Q^T K and V over the token layout [z; e] (paper 2, Sec. 6.1,
Fig. 4(b), Appendix F Figs. 10 and 11).

With tokens y_i = [z_i; e_i] (z the projected frame, e the time-index embedding; DiT in concat mode),
head h scores pairs by y_i^T (Q_h^T K_h) y_j (paper 2 (GP) eq. (1)). Per layer l, averaged over heads:

    val/qk_norm/layer_{l}/{xx, xe, ex, ee}   ||Q_x^T K_x||_F, ||Q_x^T K_e||_F, ||Q_e^T K_x||_F, ||Q_e^T K_e||_F
    val/v_frame_share/layer_{l}               ||(W_o V)_z||_F^2 / ||W_o V||_F^2, W_o^h V^h the head's value map
and over all layers and heads:
    val/qk_ee_share      ||Q_e^T K_e||_F^2 / ||Q^T K||_F^2   (Fig. 4(b): the e-e block dominates; 0.25 for
                         four blocks of equal weight at z and e of equal width)
    val/v_frame_share    Fig. 11: the value maps emphasise the data part z (0.5 for no preference)

(x is the paper's name for the data part z.) Weights are those of ``inference_network`` (the EMA
when enabled), identical on every rank: no collective is needed.
Figures: ``fig4b_qk_matrix.png`` (|Q^T K| of one layer, heads summed), ``fig10_qk_matrices.png``
(|Q_h^T K_h|, layers x heads), ``fig11_v_matrices.png`` (|W_o V| per layer).
"""

from __future__ import annotations

import lightning.pytorch as pl

from diffusion_theory import plotting
from diffusion_theory.callbacks.diagnostic import WeightDiagnostic
from diffusion_theory.callbacks.figures import save_figure
from diffusion_theory.metrics.attention import qk_block_norms, qk_product, value_emphasis
from diffusion_theory.protocols import ExposesAttentionWeights

BLOCKS = {"xx": "frame_frame", "xe": "frame_embed", "ex": "embed_frame", "ee": "embed_embed"}


def token_slices(network) -> tuple[slice, slice]:
    """(frame, embed) coordinate slices; raises unless both are non-empty (concat mode)."""
    frame, embed = network.frame_slice, network.embedding_slice
    D = network.attention_weights()["q"].shape[-1]
    if len(range(D)[embed]) == 0 or len(range(D)[frame]) == 0:
        raise ValueError(
            "the z / e split of the attention weights needs tokens [z; e]: set "
            "model.init_args.network.init_args.pos_embed_mode=concat (paper 2, Appendix F)"
        )
    return frame, embed


class QKBlockNorms(WeightDiagnostic):
    """Needs a network with ``attention_weights``, ``frame_slice``, ``embedding_slice`` (DiT, concat mode).

    Args:
        every_n_epochs: run at every n-th validation.
        figure_layer: the layer of ``fig4b_qk_matrix`` (0-based; the paper shows the 5th block, 4;
            clipped to the last layer).
    """

    requires = (("network", ExposesAttentionWeights),)

    def __init__(self, every_n_epochs: int = 1, figure_layer: int = 4):
        super().__init__(every_n_epochs)
        if figure_layer < 0:
            raise ValueError(f"QKBlockNorms.figure_layer must be >= 0; got {figure_layer}")
        self.figure_layer = figure_layer
        self._weights = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        token_slices(pl_module.network)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        net = pl_module.inference_network
        frame, embed = token_slices(net)
        w = {
            k: v.float().cpu() for k, v in net.attention_weights().items()
        }  # q, k, v (L, H, hd, D); proj (L, H, D, hd)
        norms = qk_block_norms(w["q"], w["k"], frame, embed)  # each (L, H)
        emphasis = value_emphasis(w["v"], frame, embed, proj_weight=w["proj"])  # (L, H)
        values: dict[str, float] = {}
        for layer in range(w["q"].shape[0]):
            for short, field in BLOCKS.items():
                values[f"val/qk_norm/layer_{layer}/{short}"] = float(getattr(norms, field)[layer].mean())
            values[f"val/v_frame_share/layer_{layer}"] = float(emphasis.frame_share[layer].mean())
        values["val/qk_ee_share"] = float(norms.embed_share.mean())
        values["val/v_frame_share"] = float(emphasis.frame_share.mean())
        self._weights = (w, frame.stop)
        return values

    def after_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict[str, float]) -> None:
        if self._weights is None:
            return
        w, split = self._weights
        self._weights = None
        qk = qk_product(w["q"], w["k"])  # (L, H, D, D)
        L, H = qk.shape[:2]
        layer = min(self.figure_layer, L - 1)
        step = trainer.global_step
        fig = plotting.heatmap_grid(
            qk[layer].sum(0).abs().numpy()[None, None],
            [f"layer {layer + 1}"],
            [""],
            f"Fig. 4(b): |Q^T K| of block {layer + 1} (heads summed), step {step}\n"
            f"[z | e] split at {split}; e-e share {values['val/qk_ee_share']:.2f} (all layers)",
            split=split,
            cell_size=4.0,
        )
        save_figure(trainer, fig, "fig4b_qk_matrix")
        fig = plotting.heatmap_grid(
            qk.abs().numpy(),
            [f"layer {i + 1}" for i in range(L)],
            [f"head {h + 1}" for h in range(H)],
            f"Fig. 10: |Q_h^T K_h| per layer and head, step {step} (lines: z | e)",
            split=split,
        )
        save_figure(trainer, fig, "fig10_qk_matrices")
        wov = (w["proj"] @ w["v"]).sum(1).abs().numpy()  # (L, D, D): W_o V of each layer, heads summed
        fig = plotting.heatmap_grid(
            wov[None],
            [""],
            [f"layer {i + 1}: z {values[f'val/v_frame_share/layer_{i}']:.2f}" for i in range(L)],
            f"Fig. 11: |W_o V| per layer, step {step} (columns left of the line act on z, right on e)",
            split=split,
        )
        save_figure(trainer, fig, "fig11_v_matrices")
