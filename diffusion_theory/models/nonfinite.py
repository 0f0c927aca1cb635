"""Stopping a run on a NaN or infinite training loss without a host-device sync every step.

On the CPU, reading the loss costs nothing: the check is immediate and the run stops before the optimiser step
of the bad batch. On an accelerator, ``bool(torch.isfinite(loss))`` every step would wait for the device to
finish the step (a stall of the launch queue). There the first bad step and its loss stay on the device
(``torch.where``, no transfer) and are read on the host every ``check_every_n_steps`` steps, at the end of
training and before every checkpoint is written (``DiffusionModule.on_save_checkpoint``). So on either device:

- no checkpoint ever holds weights updated by a non-finite loss: the last good checkpoint is kept;
- the run stops with ``NonFiniteLossError`` naming the first bad step (on an accelerator, within
  ``check_every_n_steps`` steps of it: its update and those after it are applied in memory, never saved).

Under DDP the host checks gather every rank's flag (a collective, reached at the same step on every rank).
"""

from __future__ import annotations

import torch
from torch import Tensor

HINT = (
    "The last good checkpoint is kept in the run's checkpoints/ folder; lower the learning rate "
    "(optimizer.init_args.lr) or resume from it with --ckpt_path=last."
)


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN or infinite (before the optimiser step on the CPU)."""


class NonFiniteGuard:
    """Watches the training loss of a LightningModule (see the module docstring).

    Args:
        check_every_n_steps: steps between two host reads of the device flag on an accelerator.
        immediate: check every step on the host (None: only when the loss is on the CPU).
    """

    def __init__(self, check_every_n_steps: int = 50, immediate: bool | None = None):
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1; got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self.immediate = immediate
        self._first_step: Tensor | None = None  # () int64 on the device, -1 while every loss was finite
        self._first_loss: Tensor | None = None  # () float32, the first non-finite loss

    def observe(self, module, loss: Tensor) -> None:
        """Called by ``training_step`` with the step's loss, before it is returned (and backpropagated)."""
        step = module.global_step
        immediate = self.immediate if self.immediate is not None else loss.device.type == "cpu"
        if immediate:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"training loss is {loss.item()} at step {step}: stopping before the optimiser step. {HINT}"
                )
            return
        loss = loss.detach().float()
        if self._first_step is None or self._first_step.device != loss.device:
            self._first_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._first_loss = torch.zeros((), device=loss.device)
        new = ~torch.isfinite(loss) & (self._first_step < 0)  # () bool, stays on the device
        self._first_step = torch.where(new, step, self._first_step)
        self._first_loss = torch.where(new, loss, self._first_loss)
        if (step + 1) % self.check_every_n_steps == 0:
            self.check(module)

    def check(self, module) -> None:
        """Reads the device flag (all ranks) and raises if any training loss so far was non-finite."""
        if self._first_step is None:
            return
        flags = torch.stack([self._first_step.double(), self._first_loss.double()])  # (2,)
        trainer = module._trainer
        if trainer is not None and trainer.world_size > 1:
            flags = module.all_gather(flags)  # (world, 2)
        flags = flags.view(-1, 2).cpu()
        bad = flags[flags[:, 0] >= 0]
        if bad.numel():
            step, loss = bad[bad[:, 0].argmin()].tolist()
            raise NonFiniteLossError(
                f"training loss is {loss} at step {int(step)} (seen at step {module.global_step}; on an accelerator "
                f"the loss is read every {self.check_every_n_steps} steps and before every checkpoint): stopping "
                f"before any checkpoint of the weights after step {int(step)} is written. {HINT}"
            )
