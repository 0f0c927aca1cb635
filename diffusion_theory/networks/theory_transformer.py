"""The one-layer single-head softmax transformer of paper 1 (MTGM) eq. (1).

    f(Psi; X, t)_p = v_t (x_p - X softmax(X^T W x_p / d)),      Psi = {W in R^{d x d}, v in R^T}

Token-major layout: X is (B, P, d), so the attention of query p on key j is
softmax_j(x_j^T W x_p / d). Initialisation as in paper 1 (MTGM) eq. (4): W(0) = 0, v_t(0) ~ N(0, 1/d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusion_theory.init_config import RecordsInitArgs  # checkpoints record the constructor arguments


class OneLayerTransformer(RecordsInitArgs, nn.Module):
    """Paper 1 (MTGM) eq. (1). ``forward(x, t)`` takes noisy tokens (B, P, d) and integer steps t in {1..T} (B,).

    Args:
        d: token dimension.
        T: number of diffusion steps (one output scale v_t per step).
        init_seed: seed of the N(0, 1/d) draw of v(0), so runs are comparable.
    """

    def __init__(self, d: int, T: int, init_seed: int = 0):
        super().__init__()
        if d < 1:
            raise ValueError(f"model.d must be >= 1; got {d}")
        if T < 1:
            raise ValueError(f"model.T must be >= 1; got {T}")
        self.d, self.T = d, T
        self.W = nn.Parameter(torch.zeros(d, d))  # W(0) = 0
        g = torch.Generator().manual_seed(init_seed)
        self.v = nn.Parameter(torch.randn(T, generator=g) / d**0.5)  # v_t(0) ~ N(0, 1/d)

    def queries(self, x: Tensor) -> Tensor:
        """Rows (W x_p)^T, so that queries @ keys^T = x_j^T W x_p. (B, P, d)"""
        return x @ self.W.T

    def attention_logits(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """logits[b, p, j] = x_j^T W x_p / d: query p (rows), key j (columns). (B, P, P); t is unused."""
        return self.queries(x) @ x.transpose(-1, -2) / self.d

    def attention(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """softmax over keys of ``attention_logits``; each row sums to one. (B, P, P)"""
        return torch.softmax(self.attention_logits(x), dim=-1)

    def output_scales(self) -> Tensor:
        """v_t for t = 1..T. (T,)"""
        return self.v

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: (B, P, d) noisy tokens X^t; t: (B,) steps in {1..T}. Returns the noise estimate (B, P, d)."""
        mean = F.scaled_dot_product_attention(self.queries(x), x, x, scale=1.0 / self.d)  # (B, P, d)
        v_t = self.v[t.long() - 1].view(-1, 1, 1).to(x.dtype)
        return v_t * (x - mean)
