"""Attention diagnostics of paper 2, Sec. 6.1 and Appendix F (Figs. 4(b), 5, 10, 11, 12).

Tokens are y_i = [z_i; e_i] (concat mode): z_i the projected frame (coordinates ``frame``),
e_i the time-index embedding (coordinates ``embed``). A head with query / key weights
Q, K in R^{hd x D} scores token pairs by (Q y_i)^T (K y_j) = y_i^T (Q^T K) y_j (paper 2 (GP) eq. (1)), so the
D x D matrix Q^T K splits into four blocks

    [ Q_z^T K_z   Q_z^T K_e ]      Q_z = Q[:, frame], Q_e = Q[:, embed], same for K;
    [ Q_e^T K_z   Q_e^T K_e ]

the construction of Sec. 4 (Fig. 3) predicts that the e-e block dominates (e_i^T e_j ~ gamma(i, j)).
The value weights V in R^{hd x D} split into columns acting on z and on e; Fig. 11 shows the
emphasis on z (V carries Sigma, the spatial dependency).

All functions take weight stacks with arbitrary leading dimensions, e.g. the
``DiT.attention_weights()`` output (L, H, hd, D). Biases are ignored (paper 2 (GP) eq. (1) has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _check_slices(D: int, frame: slice, embed: slice) -> None:
    f = range(D)[frame]
    e = range(D)[embed]
    if len(f) == 0 or len(e) == 0 or set(f) & set(e):
        raise ValueError(
            f"frame and embed must be disjoint, non-empty coordinate ranges of the token width {D}; "
            f"got frame={frame}, embed={embed} (concat mode is needed for a z / e split)"
        )


def qk_product(q_weight: Tensor, k_weight: Tensor) -> Tensor:
    """Q^T K per head: (..., hd, D) x (..., hd, D) -> (..., D, D); y_i^T (Q^T K) y_j is the score."""
    return q_weight.transpose(-2, -1) @ k_weight


@dataclass
class QKBlockNorms:
    """Frobenius norms of the four blocks of Q^T K, each of shape (...) (e.g. (L, H))."""

    frame_frame: Tensor  # ||Q_z^T K_z||_F
    frame_embed: Tensor  # ||Q_z^T K_e||_F
    embed_frame: Tensor  # ||Q_e^T K_z||_F
    embed_embed: Tensor  # ||Q_e^T K_e||_F

    def as_matrix(self) -> Tensor:
        """(..., 2, 2): [[zz, ze], [ez, ee]]."""
        return torch.stack(
            [
                torch.stack([self.frame_frame, self.frame_embed], -1),
                torch.stack([self.embed_frame, self.embed_embed], -1),
            ],
            -2,
        )

    @property
    def embed_share(self) -> Tensor:
        """||Q_e^T K_e||_F^2 / ||Q^T K||_F^2 in [0, 1] (1: the score only sees the index embeddings)."""
        m = self.as_matrix() ** 2
        return m[..., 1, 1] / m.sum((-2, -1))


def qk_block_norms(q_weight: Tensor, k_weight: Tensor, frame: slice, embed: slice) -> QKBlockNorms:
    """Block Frobenius norms of Q^T K for per-head weights (..., hd, D) (Figs. 4(b), 10)."""
    _check_slices(q_weight.shape[-1], frame, embed)
    m = qk_product(q_weight.to(torch.float64), k_weight.to(torch.float64))  # (..., D, D)
    norm = lambda rows, cols: torch.linalg.matrix_norm(m[..., rows, cols])  # noqa: E731
    return QKBlockNorms(
        frame_frame=norm(frame, frame),
        frame_embed=norm(frame, embed),
        embed_frame=norm(embed, frame),
        embed_embed=norm(embed, embed),
    )


@dataclass
class ValueEmphasis:
    """Frobenius norms of the value-weight columns acting on z and on e, each (...)."""

    frame: Tensor  # ||V[:, frame]||_F
    embed: Tensor  # ||V[:, embed]||_F

    @property
    def frame_share(self) -> Tensor:
        """||V_z||_F^2 / ||V||_F^2 in [0, 1] (Fig. 11: close to 1)."""
        f, e = self.frame**2, self.embed**2
        return f / (f + e)


def value_emphasis(v_weight: Tensor, frame: slice, embed: slice, proj_weight: Tensor | None = None) -> ValueEmphasis:
    """Column-block norms of V (..., hd, D) (Appendix F, Fig. 11).

    With ``proj_weight`` (..., D, hd) (the head's slice of the output projection) the effective
    value map W_o^h V^h (D x D), which is the V^m of paper 2 (GP) eq. (1), is used instead of V^h.
    """
    _check_slices(v_weight.shape[-1], frame, embed)
    v = v_weight.to(torch.float64)
    if proj_weight is not None:
        v = proj_weight.to(torch.float64) @ v  # (..., D, D)
    return ValueEmphasis(
        frame=torch.linalg.matrix_norm(v[..., :, frame]), embed=torch.linalg.matrix_norm(v[..., :, embed])
    )


def pearson_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation over the last dimension: (..., M), (..., M) -> (...)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def score_kernel_similarity(scores: Tensor, gamma: Tensor, exclude_diagonal: bool = False) -> Tensor:
    """How much an (averaged) attention score matrix looks like the kernel Gamma (Figs. 5, 12).

    scores: (..., N, N), e.g. the batch-averaged unscaled scores (L, H, N, N) recorded by the
    DiT; gamma: (N, N). Returns the Pearson correlation between the entries of each score
    matrix and of Gamma, shape (...). It ignores the scale and offset of the scores (softmax
    is shift-invariant per row and the scores' scale is arbitrary), is 1 for scores = a Gamma + b
    with a > 0, and ~0 for scores unrelated to Gamma. ``exclude_diagonal`` drops the i = j
    entries (Gamma_ii = 1 and the diagonal of q_i^T k_i can dominate).
    """
    N = gamma.shape[-1]
    if scores.shape[-2:] != (N, N):
        raise ValueError(f"scores must end in (N, N) = ({N}, {N}) to match gamma; got {tuple(scores.shape)}")
    gamma = gamma.to(device=scores.device, dtype=torch.float64)
    keep = torch.ones(N, N, dtype=torch.bool, device=scores.device)
    if exclude_diagonal:
        keep.fill_diagonal_(False)
    s = scores[..., keep]  # (..., M) entries kept, M = N^2 or N(N - 1)
    return pearson_correlation(s, gamma[keep].expand(s.shape))
