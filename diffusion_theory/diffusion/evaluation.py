"""A fixed, reproducible evaluation grid: every evaluation sample at every evaluation time.

The noise of evaluation sample i is drawn from its own generator seeded by (seed, i), so the
grid is identical in every run, on every rank and in every process count: curves from
different runs are comparable and DDP validation equals single-process validation.
"""
from __future__ import annotations

import torch
from torch import Tensor


def evaluation_noise(index: Tensor, n_times: int, shape: tuple[int, ...], seed: int,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """Noise E for each (sample, time) pair: (B, n_times, *shape), a pure function of (seed, index)."""
    out = torch.empty(index.numel(), n_times, *shape, dtype=dtype)
    for row, i in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(i))
        out[row] = torch.randn(n_times, *shape, generator=g, dtype=dtype)
    return out


def expand_over_times(x: Tensor, n_times: int) -> Tensor:
    """(B, ...) -> (B * n_times, ...), each sample repeated for every time, sample-major."""
    return x.repeat_interleave(n_times, dim=0)
