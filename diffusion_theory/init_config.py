"""Plain configs of objects built in Python: the class path and the arguments an object was built with.

A checkpoint stores its model's hyper-parameters as plain config (class paths and values, never
pickled objects), so that ``DiffusionModule.load_from_checkpoint(path)`` rebuilds the model alone and
every checkpoint loads with ``torch.load(weights_only=True)``. A run of ``scripts/fit.py`` hands the
module its config from LightningCLI; a network or schedule built in Python records its own
arguments by inheriting ``RecordsInitArgs``, and ``init_config`` turns them into the same form:

    {"class_path": "diffusion_theory.networks.dit.DiT", "init_args": {"input_shape": [8, 2], ...}}
"""

from __future__ import annotations

import inspect
from typing import Any

_PLAIN_SCALARS = (bool, int, float, str, type(None))


class RecordsInitArgs:
    """Mixin: every instance remembers the arguments of its construction (bound to ``__init__``'s
    signature, defaults applied), in ``_init_args``. Recorded in ``__new__``, so subclasses need no call."""

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        except TypeError:  # e.g. copy.deepcopy calls __new__ without arguments; __dict__ is copied afterwards
            return obj
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])  # without self
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD and name in arguments:
                arguments.update(arguments.pop(name))
            elif param.kind is inspect.Parameter.VAR_POSITIONAL and name in arguments:
                if arguments.pop(name):
                    return obj  # positional varargs have no names: not a config
        object.__setattr__(obj, "_init_args", arguments)
        return obj


def plain(value: Any) -> Any:
    """value as plain config (None, bool, int, float, str, lists, dicts with str keys); ValueError otherwise.
    Tuples become lists (YAML has no tuples)."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v) for k, v in value.items()}
    raise ValueError(f"not plain config: {type(value).__name__}")


def init_config(obj: Any) -> dict[str, Any] | None:
    """{"class_path", "init_args"} of an object that recorded its arguments (``RecordsInitArgs``) and whose
    arguments are all plain; a plain config passes through; None if neither."""
    if isinstance(obj, dict) and "class_path" in obj:
        return plain(obj)
    args = obj.__dict__.get("_init_args") if hasattr(obj, "__dict__") else None
    if args is None:
        return None
    try:
        init_args = plain(args)
    except ValueError:
        return None
    cls = type(obj)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
