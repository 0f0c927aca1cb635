"""The non-finite-loss stop (diffusion_theory/models/nonfinite.py): immediate on the CPU, deferred on accelerators
(no host sync per step) yet never checkpointing weights updated by a non-finite loss. The deferred path is forced
on the CPU here (``immediate=False``), which is exactly what runs on a GPU."""

from __future__ import annotations

import math
import re

import pytest
import torch
from conftest import tiny_mtgm_args

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.models.nonfinite import NonFiniteGuard, NonFiniteLossError


class FakeModule:
    _trainer = None

    def __init__(self):
        self.global_step = 0


def test_deferred_guard_reads_the_flag_only_at_checks_and_names_the_first_bad_step():
    guard, module = NonFiniteGuard(check_every_n_steps=4, immediate=False), FakeModule()
    losses = [1.0, 2.0, 0.5, 1.5, 1.0, math.nan, math.inf, 3.0]
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 5 \(seen at step 7"):
        for step, value in enumerate(losses):
            module.global_step = step
            guard.observe(module, torch.tensor(value))  # steps 3 and 7 are checks; 5 and 6 pass silently
            assert step < 7
    guard = NonFiniteGuard(check_every_n_steps=4, immediate=False)
    for step in range(12):  # finite losses never raise
        module.global_step = step
        guard.observe(module, torch.tensor(1.0))
    guard.check(module)
    module.global_step = 12
    guard.observe(module, torch.tensor(-math.inf))
    with pytest.raises(NonFiniteLossError, match="training loss is -inf at step 12"):
        guard.check(module)  # what on_save_checkpoint does before a checkpoint is written


def test_immediate_guard_stops_before_the_optimiser_step():
    module = FakeModule()
    module.global_step = 3
    with pytest.raises(NonFiniteLossError, match="training loss is nan at step 3: stopping before the optimiser step"):
        NonFiniteGuard(immediate=True).observe(module, torch.tensor(math.nan))
    with pytest.raises(ValueError, match="check_every_n_steps"):
        NonFiniteGuard(check_every_n_steps=0)


@pytest.mark.parametrize("every_n_steps", [1, None])
def test_deferred_check_in_a_run_keeps_only_finite_checkpoints(tmp_path, monkeypatch, every_n_steps):
    monkeypatch.setattr(NonFiniteGuard.__init__, "__defaults__", (5, False))  # the accelerator path, checks every 5
    extra = [
        "--optimizer=torch.optim.SGD",
        "--optimizer.lr=1e12",
        "--data.init_args.steps_per_epoch=3",
        "--trainer.log_every_n_steps=1",
    ]
    if every_n_steps:
        extra.append(f"--run.checkpoint_every_n_steps={every_n_steps}")
    with pytest.raises(
        NonFiniteLossError, match=r"training loss is (nan|inf) at step (\d+) \(seen at step (\d+)"
    ) as info:
        DiffusionCLI(args=tiny_mtgm_args(tmp_path, name="nan", max_steps=200, extra=extra))
    first_bad, seen = map(int, re.search(r"at step (\d+) \(seen at step (\d+)", str(info.value)).groups())
    # checkpoint after every step: seen when the step's checkpoint is about to be written (global_step + 1)
    assert first_bad <= seen and (seen == first_bad + 1 if every_n_steps == 1 else seen - first_bad <= 5)
    ckpt_path = tmp_path / "mtgm" / "nan" / "checkpoints" / "last.ckpt"
    if every_n_steps == 1:
        assert ckpt_path.exists()  # written after every step while the loss was finite
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
        assert ckpt["global_step"] <= first_bad  # weights updated by finite losses only
        if every_n_steps == 1:
            assert ckpt["global_step"] == first_bad  # the last good step is kept
