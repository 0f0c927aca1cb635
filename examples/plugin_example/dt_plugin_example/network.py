"""A per-step linear denoiser over the positions of a sequence.

    f(X, t) = A_t X,      A_t in R^{P x P},  X in R^{P x d}      (the same A_t for every coordinate)

For zero-mean Gaussian sequences with Cov(vec X^0) = C (x) I_d (the AR(1) data of this plugin) the
Bayes-optimal noise prediction is in this class,

    A_t* = sqrt(1 - abar_t) (abar_t C + (1 - abar_t) I_P)^{-1},

so the score error of a trained model can go to zero. A_t(0) = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SequenceLinearDenoiser(nn.Module):
    """``forward(x, t)``: noisy sequences x (B, P, d), discrete steps t in {1..T} (B,) -> noise estimate (B, P, d).

    Args:
        P: tokens per sequence.
        T: number of diffusion steps (one P x P matrix per step).
    """

    def __init__(self, P: int, T: int):
        super().__init__()
        if P < 1:
            raise ValueError(f"network.P must be >= 1; got {P}")
        if T < 1:
            raise ValueError(f"network.T must be >= 1; got {T}")
        self.P, self.T = P, T
        self.A = nn.Parameter(torch.zeros(T, P, P))  # A_t(0) = 0

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.P:
            raise ValueError(f"SequenceLinearDenoiser: x must be (B, P={self.P}, d); got {tuple(x.shape)}")
        step = t.round().long()  # (B,) in {1..T}: a discrete schedule's model time is the step itself
        if int(step.min()) < 1 or int(step.max()) > self.T:
            raise ValueError(
                f"SequenceLinearDenoiser: steps t must lie in {{1..T={self.T}}} (a discrete schedule "
                f"with the same T); got range [{float(t.min())}, {float(t.max())}]"
            )
        return self.A[step - 1].to(x.dtype) @ x  # (B, P, P) @ (B, P, d)
