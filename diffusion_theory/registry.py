"""Components by short name: built-in classes and those of installed plugin packages.

jsonargparse resolves a short ``class_path`` (``MTGMDataModule``) to any imported subclass of the
expected base class. ``load_components`` imports the built-in modules and, for every entry point of
the group ``diffusion_theory.plugins``, the modules it names, so their classes are found by short
name. An entry point names a callable returning module names (or a module itself):

    [project.entry-points."diffusion_theory.plugins"]
    my_paper = "my_paper:components"           # def components() -> list[str]: return ["my_paper.data", ...]

A plugin that fails to import is reported (a ``PluginImportWarning`` at start, and ``failure_report``,
which the CLI appends to config errors) and the other components still load.
``format_components`` is what ``scripts/fit.py --list`` prints.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

GROUP = "diffusion_theory.plugins"
BUILTIN = "built-in"

BUILTIN_MODULES = (
    "diffusion_theory.datamodules.mtgm",
    "diffusion_theory.datamodules.gaussian_process",
    "diffusion_theory.models.diffusion_module",
    "diffusion_theory.networks.theory_transformer",
    "diffusion_theory.diffusion.schedules",
    "diffusion_theory.diffusion.continuous",
    "diffusion_theory.networks.dit",
    "diffusion_theory.datamodules.images",
    "diffusion_theory.networks.classifier",
    "diffusion_theory.models.classifier_module",
    "diffusion_theory.callbacks.per_class_fid",
    "diffusion_theory.callbacks",
    "diffusion_theory.datamodules.ball",
    "diffusion_theory.models.vae_module",
    "diffusion_theory.networks.vae",
    "diffusion_theory.callbacks.ball_videos",
)


def builtin_components() -> list[str]:
    """The entry point of this package itself: the modules holding the built-in components."""
    return list(BUILTIN_MODULES)


class PluginImportWarning(UserWarning):
    """A plugin of the ``diffusion_theory.plugins`` group failed to import; the others are still available."""


@dataclass
class Source:
    """Where components come from: the built-ins or one plugin entry point."""

    name: str  # "built-in" or the entry point's name
    origin: str  # "ar1 = dt_plugin_example:components (dt_plugin_example 0.1.0)"
    modules: list[str] = field(default_factory=list)  # imported successfully
    errors: list[str] = field(default_factory=list)  # "ImportError: ..." per failure


_SOURCES: list[Source] = []


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" ({dist.name} {dist.version})" if dist is not None else ""
    return f"{ep.name} = {ep.value}{where}"


def _load_plugin(ep: EntryPoint) -> Source:
    source = Source(ep.name, _origin(ep))
    try:
        target = ep.load()
        if inspect.ismodule(target):
            names = [target.__name__]
        else:
            names = target() if callable(target) else target
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(f"the entry point must return a list of module names; got {names!r}")
    except Exception as err:  # a broken plugin must not take the others down
        source.errors.append(f"{type(err).__name__}: {err}")
        return source
    for module in names:
        try:
            importlib.import_module(module)
            source.modules.append(module)
        except Exception as err:
            source.errors.append(f"module {module}: {type(err).__name__}: {err}")
    return source


def load_components() -> dict[str, str]:
    """Import built-in and plugin modules. Returns {plugin name: error} for plugins that failed to import."""
    for module in BUILTIN_MODULES:  # our own modules must import: an error here is a bug, raised as is
        importlib.import_module(module)
    sources = [Source(BUILTIN, "diffusion_theory", list(BUILTIN_MODULES))]
    for ep in entry_points(group=GROUP):
        if ep.value == f"{__name__}:{builtin_components.__name__}":
            continue  # the built-ins, imported above
        sources.append(_load_plugin(ep))
    _SOURCES[:] = sources
    for source in sources:
        if source.errors:
            warnings.warn(describe_failure(source), PluginImportWarning, stacklevel=2)
    return {s.name: "; ".join(s.errors) for s in sources if s.errors}


def describe_failure(source: Source) -> str:
    return (
        f"diffusion_theory plugin {source.name!r} ({source.origin}) failed to import: "
        f"{'; '.join(source.errors)}. Its classes cannot be named in configs; the other components "
        f"are still available."
    )


def failure_report() -> str:
    """One paragraph naming every plugin that failed to import, or '' if none did."""
    failed = [s for s in _SOURCES if s.errors]
    if not failed:
        return ""
    lines = [f"  - {describe_failure(s)}" for s in failed]
    return (
        "Note: these plugins failed to import, so a class_path naming one of their classes cannot resolve:\n"
        + "\n".join(lines)
    )


# ----------------------------------------------------------------------------------------
# Listing (scripts/fit.py --list)
# ----------------------------------------------------------------------------------------

KIND_MEANING = {
    "batch": "measures the noisy evaluation batch",
    "weights": "reads the model's weights",
    "generation": "generates samples",
}  # the diagnostic kinds of callbacks.diagnostic


@dataclass
class Component:
    name: str  # the short name
    class_path: str  # module.Class
    source: str  # "built-in" or the plugin's entry point name
    provides: list[str]  # capabilities (protocols) the class implements, "method (Protocol)"
    needs: list[str]  # for diagnostics: "role: method (Protocol)"
    summary: str  # first line of the docstring
    kind: str = ""  # for diagnostics: batch, weights or generation (callbacks.diagnostic.KINDS)


def _categories():
    """(title, config key, base class) in the order a class is classified (most specific first)."""
    from lightning.pytorch import Callback, LightningDataModule, LightningModule
    from torch import nn

    from diffusion_theory.diffusion.schedules import NoiseSchedule

    return (
        ("Data modules", "data", LightningDataModule),
        ("Models", "model", LightningModule),
        ("Schedules", "model.init_args.schedule", NoiseSchedule),
        ("Callbacks", "trainer.callbacks", Callback),
        ("Networks", "model.init_args.network", nn.Module),
    )


def _protocols() -> list[type]:
    from diffusion_theory import protocols

    return [
        obj
        for obj in vars(protocols).values()
        if inspect.isclass(obj) and getattr(obj, "_is_protocol", False) and obj.__module__ == protocols.__name__
    ]


def protocol_methods(protocol: type) -> list[str]:
    return [m for m in protocol.__dict__ if not m.startswith("_") and callable(getattr(protocol, m, None))]


def capabilities(cls: type) -> list[str]:
    """The protocols of ``diffusion_theory.protocols`` whose methods ``cls`` implements, as 'method (Protocol)'."""
    return [
        f"{', '.join(protocol_methods(p))} ({p.__name__})"
        for p in _protocols()
        if all(callable(getattr(cls, m, None)) for m in protocol_methods(p))
    ]


def _module_classes(module_name: str) -> list[type]:
    """Classes a component module offers: those in ``__all__``, else those defined in it or its submodules."""
    module = sys.modules[module_name]
    exported = getattr(module, "__all__", None)
    names = exported if exported is not None else [n for n in vars(module) if not n.startswith("_")]
    classes = [getattr(module, n, None) for n in names]
    return [
        c
        for c in classes
        if inspect.isclass(c)
        and (exported is not None or c.__module__ == module_name or c.__module__.startswith(module_name + "."))
    ]


def list_components() -> dict[str, list[Component]]:
    """{category title: components}, from the modules imported by the last ``load_components``."""
    from diffusion_theory.callbacks.diagnostic import Diagnostic

    cats = _categories()
    bases = {base for _, _, base in cats} | {Diagnostic}
    out: dict[str, list[Component]] = {title: [] for title, _, _ in cats}
    seen: set[str] = set()
    for source in _SOURCES:
        for module in source.modules:
            for cls in _module_classes(module):
                path = f"{cls.__module__}.{cls.__qualname__}"
                title = next((t for t, _, base in cats if issubclass(cls, base)), None)
                if title is None or cls in bases or path in seen:
                    continue
                seen.add(path)
                needs = [
                    f"{role}: {', '.join(protocol_methods(p))} ({p.__name__})"
                    for role, p in (getattr(cls, "requires", ()) if title == "Callbacks" else ())
                ]
                provides = capabilities(cls) if title in ("Data modules", "Networks") else []
                kind = str(getattr(cls, "kind", "") or "") if issubclass(cls, Diagnostic) else ""
                doc = (inspect.getdoc(cls) or "").strip().splitlines()
                summary = doc[0] if doc and not doc[0].endswith(":") else ""  # not a bare "Args:"
                out[title].append(Component(cls.__name__, path, source.name, provides, needs, summary, kind))
    for items in out.values():
        items.sort(key=lambda c: (c.name.lower(), c.class_path))
    return out


def format_components() -> str:
    """The text of ``scripts/fit.py --list``."""
    listing = list_components()
    keys = {title: key for title, key, _ in _categories()}
    counts: dict[str, int] = {}
    for items in listing.values():
        for c in items:
            counts[c.name] = counts.get(c.name, 0) + 1
    lines = [
        "Components by short name (`class_path: AR1DataModule`) or full class path, built-in and from plugins",
        f"(entry-point group {GROUP!r}). Sources: "
        + ", ".join(s.name if s.name == BUILTIN else f"plugin {s.origin}" for s in _SOURCES if s.modules)
        + ".",
    ]
    for title in ("Data modules", "Models", "Networks", "Schedules", "Callbacks"):
        lines += ["", f"{title} ({keys[title]}):"]
        for c in listing[title]:
            tag = "" if c.source == BUILTIN else f"   [plugin {c.source}]"
            clash = "   (short name not unique: use the class path)" if counts[c.name] > 1 else ""
            lines.append(f"  {c.name:<26} {c.class_path}{tag}{clash}")
            if c.summary:
                lines.append(f"      {c.summary}")
            if c.kind:  # a diagnostic: its kind next to its needs
                lines.append(f"      kind:     {c.kind} ({KIND_MEANING.get(c.kind, 'a plugin kind')})")
            for label, items in (("provides: ", c.provides), ("needs:    ", c.needs)):
                if items:
                    lines.append(
                        textwrap.fill(
                            "; ".join(items),
                            width=116,
                            initial_indent=f"      {label}",
                            subsequent_indent=" " * 16,
                            break_long_words=False,
                        )
                    )
        if not listing[title]:
            lines.append("  (none)")
    lines += ["", "Also any importable class by its full class path (torch.optim.Adam, lightning callbacks, ...)."]
    if failure_report():
        lines += ["", failure_report()]
    return "\n".join(lines)
