"""EMA of network weights."""

import pytest
import torch
from torch import nn

from diffusion_theory.networks.ema import EMA


def test_ema_follows_the_closed_form_average():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    w0 = model[0].weight.detach().clone()
    targets = [torch.full_like(w0, float(k)) for k in range(1, 4)]
    expected = w0.clone()
    for target in targets:
        with torch.no_grad():
            model[0].weight.copy_(target)
            model[1].running_mean.fill_(float(target[0, 0]))
        ema.update(model)
        expected = 0.9 * expected + 0.1 * target
    assert torch.allclose(ema.module[0].weight, expected, atol=1e-6)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # buffers are copied
    assert not any(p.requires_grad for p in ema.parameters())
    assert int(ema.num_updates) == 3
    x = torch.randn(5, 3)
    assert torch.equal(ema(x), ema.module(x))


def test_ema_warmup_ramp_and_validation():
    ema = EMA(nn.Linear(2, 2), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.num_updates.fill_(990)
    assert ema.current_decay() == pytest.approx(0.991)
    with pytest.raises(ValueError, match="ema.decay"):
        EMA(nn.Linear(2, 2), decay=1.0)
