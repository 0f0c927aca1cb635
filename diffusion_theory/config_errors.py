"""One short message for a bad config value, instead of two tracebacks and jsonargparse's union noise.

A component's constructor raises ``ValueError("K: must satisfy 0 < K < M = 8 (Definition 1); got K = 0")``;
jsonargparse wraps it in "Does not validate against any of the Union subtypes" and Lightning in a second
traceback. ``explain`` digs out the constructor's own error and prefixes the config key of the component
that raised it, found by its class in the config:

    data.init_args.K: must satisfy 0 < K < M = 8 (Definition 1); got K = 0

``scripts/fit.py`` prints that one line and exits with status 2 (``DIFFUSION_THEORY_DEBUG=1`` shows the
traceback instead).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

DEBUG_ENV = "DIFFUSION_THEORY_DEBUG"
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s")  # "K: must ..." -> K


class ConfigError(ValueError):
    """A config value or combination is invalid; raised before any run folder, W&B run or training step."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_ours(exc: BaseException) -> bool:
    """Raised by a constructor outside jsonargparse (ours, a plugin's, torch's)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and "jsonargparse" not in last.tb_frame.f_code.co_filename


def _raising_class(exc: BaseException) -> type | None:
    """The class whose ``__init__`` (innermost on the traceback) raised ``exc``."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
            cls = type(frame.f_locals["self"])
            if "jsonargparse" not in (inspect.getmodule(cls).__name__ if inspect.getmodule(cls) else ""):
                found = cls
        tb = tb.tb_next
    return found


def _config_paths(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, class_path) of every component in a (nested dict/list) config."""
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield prefix, node["class_path"]
        for key, value in node.items():
            yield from _config_paths(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _config_paths(value, f"{prefix}[{i}]")


def component_key(cls: type, config: dict) -> str | None:
    """The config key of the component of class ``cls`` (``data``, ``model.init_args.network``, ...)."""
    names = {f"{cls.__module__}.{cls.__qualname__}", cls.__name__}
    for key, class_path in _config_paths(config):
        if class_path in names or class_path.rsplit(".", 1)[-1] == cls.__name__:
            return key
    return None


def explain(exc: BaseException, config: dict | None = None) -> str:
    """One line naming the config key and the rule, from an exception raised while building the components."""
    root = next((e for e in _chain(exc) if isinstance(e, (ValueError, TypeError)) and _is_ours(e)), None)
    if root is None:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = str(root).strip()
    cls = _raising_class(root)
    key = component_key(cls, config or {}) if cls is not None else None
    if key is None:
        return message
    field = _FIELD.match(message)
    if field and field.group(1) in inspect.signature(cls.__init__).parameters:
        return f"{key}.init_args.{message}"
    return f"{key} ({cls.__name__}): {message}"
