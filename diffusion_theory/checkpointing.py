"""Checkpoint I/O that never leaves a half-written file: write to a temporary file, then rename."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<path>.tmp``, fsync, then ``os.replace``: a run killed mid-write keeps the old file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def with_atomic_checkpoint_io(plugins: Any) -> list:
    """The trainer's plugins with ``AtomicCheckpointIO`` appended, unless they already hold a ``CheckpointIO``
    (the user's choice wins). ``plugins``: None, one plugin or a list, as ``Trainer(plugins=...)`` takes them."""
    from lightning.fabric.plugins import CheckpointIO

    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins
