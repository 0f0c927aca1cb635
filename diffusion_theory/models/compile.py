"""``model.compile``: compile a network in place with ``torch.compile`` (``nn.Module.compile``).

In-place compilation keeps the module object, its parameter names and its ``state_dict`` keys, so the
EMA copy (``networks.ema.EMA``, which matches parameters by name), checkpoints and
``load_from_checkpoint`` into a non-compiled module all work unchanged. Only ``module(...)`` calls go
through the compiled code; other methods (``forward_with_cfg``, ``attention_logits``) run eagerly.

On a machine without a GPU, inductor (torch.compile's default backend) builds C++ kernels and needs a
C++ compiler (``g++``; Debian / Ubuntu package ``g++``). That is checked before any work.
"""

from __future__ import annotations

import inspect
import os
import shutil
from typing import Any

import torch
from torch import nn

__all__ = ["compile_in_place", "compile_options"]

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(value: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """``model.compile`` as keyword arguments of ``torch.compile``, or None for no compilation.

    False / None: no compilation; True: ``torch.compile``'s defaults; a dict: its options, e.g.
    ``{"mode": "max-autotune", "dynamic": false}``. Raises ValueError naming the field and the rule.
    """
    if value is None or value is False:
        return None
    if value is True:
        options: dict[str, Any] = {}
    elif isinstance(value, dict):
        options = dict(value)
    else:
        raise ValueError(f"model.compile must be true, false or a dict of torch.compile options; got {value!r}")
    allowed = [name for name in inspect.signature(torch.compile).parameters if name != "model"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"model.compile: unknown torch.compile option(s) {unknown}; allowed: {', '.join(allowed)}")
    if options.get("mode") not in COMPILE_MODES:
        raise ValueError(
            f"model.compile.mode must be one of {', '.join(map(str, COMPILE_MODES[1:]))}; got {options['mode']!r}"
        )
    if options.get("backend", "inductor") == "inductor" and not torch.cuda.is_available() and not _cxx_compiler():
        raise ValueError(
            "model.compile: torch.compile's inductor backend needs a C++ compiler on a machine without "
            "a GPU, and none was found (set CXX or install g++: apt-get install g++); or set "
            "model.compile: false"
        )
    return options


def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would use: $CXX, else g++ / c++ / clang++ on the PATH."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def compile_in_place(network: nn.Module, options: dict[str, Any] | None) -> nn.Module:
    """``network.compile(**options)`` (nothing when options is None); returns the same module object."""
    if options is not None:
        network.compile(**options)
    return network
