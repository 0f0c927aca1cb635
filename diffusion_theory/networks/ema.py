"""Exponential moving average (EMA) of a network's weights, as DiT samples from (decay 0.9999)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``model`` whose floating-point parameters track

        theta_ema <- decay_k theta_ema + (1 - decay_k) theta,

    with decay_k = decay, or min(decay, (1 + k) / (10 + k)) after k updates when ``warmup``
    (so early averages are not dominated by the random init). Buffers are copied, not averaged.
    Call ``update(model)`` after each optimizer step; call the EMA like the model.

    Args:
        model: the network to track (deep-copied; the copy is in eval mode, no gradients).
        decay: the EMA decay in [0, 1) (DiT: 0.9999).
        warmup: use the (1 + k) / (10 + k) ramp.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"ema.decay must lie in [0, 1); got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        k = int(self.num_updates)
        return min(self.decay, (1 + k) / (10 + k)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        source = dict(model.named_parameters())
        ema_params, new_params = [], []
        for name, p in self.module.named_parameters():
            if p.is_floating_point():
                ema_params.append(p)
                new_params.append(source[name].detach().to(p.dtype))
        if ema_params:
            torch._foreach_lerp_(ema_params, new_params, 1.0 - decay)
        source_buffers = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(source_buffers[name])
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
