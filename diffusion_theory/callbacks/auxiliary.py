"""The third role of ``requires``: an auxiliary frozen model a diagnostic loads from a checkpoint path.

A classifier whose features give an FID, a VAE decoder that turns generated latents into video frames:
models the diagnostic needs but that are not trained. ``UsesAuxiliaryModel`` keeps such a model on the
callback, never on the LightningModule, so it is never part of the trained model's state dict, its
optimiser's parameters or its EMA; its parameters do not require gradients and it stays in eval mode
(re-asserted at every use, since Lightning's train()/eval() switches do not reach it). It is loaded when
first asked for (the start-up check asks, on the CPU, so a bad path fails before any training) and moved to
the LightningModule's device when a diagnostic uses it.

Checkpoint format (``save_auxiliary`` / ``load_auxiliary``): a plain dict
    {"class_path": "package.module.Class", "init_args": {...}, "state_dict": {...}}
loaded with ``torch.load(weights_only=True)`` (no pickled objects: safe for checkpoints from elsewhere).
The class is imported by its path and built with ``init_args``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT_KEYS = ("class_path", "init_args", "state_dict")


def save_auxiliary(module: nn.Module, path: str | Path, init_args: dict[str, Any] | None = None) -> Path:
    """Write ``module`` as an auxiliary checkpoint: its class path, constructor arguments and weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cls = type(module)
    torch.save(
        {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": dict(init_args or {}),
            "state_dict": module.state_dict(),
        },
        path,
    )
    return path


def load_auxiliary(path: str | Path, field: str = "aux_checkpoint") -> nn.Module:
    """The frozen module of an auxiliary checkpoint, on the CPU, in eval mode, without gradients.

    ``field`` names the config field in error messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{field}: no such file {str(path)!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in FORMAT_KEYS):
        raise ValueError(
            f"{field}: {str(path)!r} is not an auxiliary checkpoint (a dict with keys "
            f"{', '.join(FORMAT_KEYS)}; write one with callbacks.auxiliary.save_auxiliary)"
        )
    module_name, _, class_name = str(ckpt["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{field}: cannot import the class {ckpt['class_path']!r} of {str(path)!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{field}: {ckpt['class_path']!r} of {str(path)!r} is not a torch.nn.Module")
    module = cls(**ckpt["init_args"])
    module.load_state_dict(ckpt["state_dict"])
    return freeze(module)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients, in place."""
    module.eval()
    module.requires_grad_(False)
    return module


class UsesAuxiliaryModel:
    """Mixin of a diagnostic that needs an auxiliary frozen model (role ``auxiliary`` in ``requires``).

    Call ``init_auxiliary(aux_checkpoint)`` in the constructor; ``auxiliary_model(device)`` returns the frozen
    model (loaded once, then moved to ``device`` when given).
    """

    aux_checkpoint: str | None = None
    _aux: nn.Module | None = None

    def init_auxiliary(self, aux_checkpoint: str | None) -> None:
        if aux_checkpoint is not None and not str(aux_checkpoint).strip():
            raise ValueError(
                f"{type(self).__name__}.aux_checkpoint must be a path to a checkpoint; got an empty string"
            )
        self.aux_checkpoint = None if aux_checkpoint is None else str(aux_checkpoint)
        self._aux = None

    def auxiliary_model(self, device: torch.device | str | None = None) -> nn.Module:
        """The frozen auxiliary model (eval mode, no gradients), on ``device`` if given."""
        if self._aux is None:
            if self.aux_checkpoint is None:
                raise ValueError(
                    f"{type(self).__name__}.aux_checkpoint: this diagnostic needs an auxiliary model; "
                    f"set aux_checkpoint to its checkpoint path"
                )
            self._aux = load_auxiliary(self.aux_checkpoint, f"{type(self).__name__}.aux_checkpoint")
        if device is not None:
            self._aux.to(device)
        return freeze(self._aux)
