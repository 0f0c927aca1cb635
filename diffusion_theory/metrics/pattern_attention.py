"""Mean denoising in paper 1 (MTGM) Sec. 4.2: attention mass and query-key products by latent pattern.

Inputs are the pre-softmax attention logits of a one-layer transformer, x_j^T W x_p / d with queries in
rows and keys in columns, (B, P, P), and the latent pattern Y_p of each token, (B, P).
"""

from __future__ import annotations

import torch
from torch import Tensor


def same_pattern_mass(logits: Tensor, labels: Tensor) -> Tensor:
    """sum_{j: Y_j = Y_p} softmax_j(x_j^T W x_p / d) for every query token p, paper 1 (MTGM) eq. (20):
    (B, P, P), (B, P) -> (B, P). The trained model puts mass >= 1 - sqrt(eps) on the query's own pattern."""
    same = labels.unsqueeze(-1) == labels.unsqueeze(-2)  # (B, P, P) query rows, key columns
    return (torch.softmax(logits, -1) * same).sum(-1)


def query_key_means(logits: Tensor, labels: Tensor, pattern: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Mean query-key products for queries of latent pattern ``pattern``, paper 1 (MTGM) eqs. (18)-(19):

        same: keys j != p with Y_j = Y_p  (paper 1 (MTGM) eq. (18): large, >= log(Omega(1/eps K delta)) / 2)
        diff: keys k with Y_k != Y_p      (paper 1 (MTGM) eq. (19): small, O(log d / sqrt d) of the same-pattern
                                          products)

    Returns {"same": (mean, count), "diff": (mean, count)}; a mean over no pair is NaN with count 0.
    logits: (B, P, P) query rows; labels: (B, P).
    """
    same = labels.unsqueeze(-1) == labels.unsqueeze(-2)  # (B, P, P)
    off_diag = ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    query = (labels == pattern).unsqueeze(-1)  # (B, P, 1)
    out = {}
    for kind, key_mask in (("same", same & off_diag), ("diff", ~same)):
        mask = query & key_mask
        out[kind] = (logits[mask].mean(), mask.sum())
    return out
