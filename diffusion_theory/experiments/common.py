"""What every paper's sweep shares: runs cached by their overrides, their metrics, the report, the grid file.

A sweep run is an ordinary ``scripts/fit.py`` run (same CLI, its own run folder); the sweep only chooses
the overrides, reads the run's ``metrics.csv`` and writes sections of the markdown report
(``docs/reproduction.md``) between ``<!-- key:start -->`` and ``<!-- key:end -->`` markers, leaving
everything else in the file alone.
"""

from __future__ import annotations

import abc
import csv
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from matplotlib.figure import Figure

from diffusion_theory.cli import safe_name

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs/ and docs/ live here
DEFAULT_REPORT = REPO / "docs" / "reproduction.md"


# ----------------------------------------------------------------------------------------
# Runs and their metrics
# ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training run of a sweep: a label for the report, the CLI overrides that define it, and (once fitted)
    the rows of its ``metrics.csv``."""

    name: str
    overrides: list[str]
    metrics: list[dict[str, str]] = field(default_factory=list)
    seed: int = 0  # 0: the config's own seeds (no override); s > 0: ``seed_overrides(keys, s)`` are appended

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of every logged value of ``metric``, in logging order."""
        pts = [(int(r["step"]), float(r[metric])) for r in self.metrics if r.get(metric) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    def final(self, metric: str) -> float:
        return self.curve(metric)[1][-1]

    def at(self, metric: str, step: int) -> float:
        """Value at the first validation at or after ``step`` (the last one if none)."""
        steps, values = self.curve(metric)
        for s, v in zip(steps, values):
            if s + 1 >= step:
                return v
        return values[-1]


def run_key(overrides: list[str]) -> str:
    """The run folder's name: ``base`` for no overrides, else the overrides without their ``init_args.`` prefix,
    e.g. ``--data.init_args.K=2`` -> ``K=2``. Runs are keyed by what defines them, not by the study that asks,
    so a run shared by several studies (the base config) is trained once."""
    if not overrides:
        return "base"
    return "_".join(re.sub(r"[^A-Za-z0-9.=-]+", "-", o.split("init_args.")[-1].lstrip("-")) for o in overrides)


def seed_overrides(keys: list[str], seed: int) -> list[str]:
    """The overrides that move a run to seed ``seed``: every key in ``keys`` (the config fields that seed the data
    stream, the training noise and the initialisation, e.g. ``seed_everything``, ``data.init_args.data_seed``) set
    to ``seed``. Seed 0 is the configs' own value of every such key, so it adds nothing: the existing runs are seed 0.
    The evaluation set keeps its own seed, so every seed is measured on the same evaluation data (runs are paired)."""
    if seed < 0:
        raise ValueError(f"--seeds: seeds are 0, 1, ...; got {seed}")
    return [] if seed == 0 else [f"--{k}={seed}" for k in keys]


def seed_key(overrides: list[str], seed: int) -> str:
    """The run folder of ``overrides`` at ``seed``: ``run_key(overrides)`` for seed 0, ``<key>_seed=<s>`` otherwise."""
    return safe_name(run_key(overrides) + ("" if seed == 0 else f"_seed={seed}"))  # the folder fit.py makes


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@dataclass
class Sweep:
    """Where a paper's runs live: ``<root>/<key>``, trained as the experiment ``root.name`` under ``root.parent``.

    Args:
        root: the folder of this paper's runs at this scale.
        wandb: also log every run to W&B (``--run.wandb_mode=auto``); off: ``disabled``.
    """

    root: Path
    wandb: bool = False

    seeds: int = 1  # seeds 0 .. seeds-1 of every sweep point (``fit_seeds``)
    seed_keys: list[str] = field(default_factory=list)  # the config fields a seed sets (``seed_overrides``)

    def run_dir(self, run: Run) -> Path:
        return self.root / seed_key(run.overrides, run.seed)

    def fit(self, config: str, study: str, run: Run, common: list[str]) -> Run:
        """Train ``run`` (``config`` + ``common`` + ``run.overrides`` + its seed's overrides) unless its folder already
        holds metrics and a last checkpoint, then read its metrics into ``run``."""
        from diffusion_theory.cli import DiffusionCLI

        run_dir = self.run_dir(run)
        if not (run_dir / "metrics.csv").exists() or not (run_dir / "checkpoints" / "last.ckpt").exists():
            args = [
                "--config",
                str(REPO / config),
                f"--run.root={self.root.parent}",
                f"--run.experiment={self.root.name}",
                f"--run.name={run_dir.name}",
                "--run.monitor=null",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                f"--run.wandb_mode={'auto' if self.wandb else 'disabled'}",
                *common,
                *run.overrides,
                *seed_overrides(self.seed_keys, run.seed),
            ]
            print(f"[reproduce] {study}/{run.name} seed {run.seed} -> {run_dir}", flush=True)
            argv, sys.argv = sys.argv, sys.argv[:1]  # the run is defined by `args` alone (LightningCLI warns otherwise)
            try:
                DiffusionCLI(args=args)
            finally:
                sys.argv = argv
        run.metrics = read_metrics(run_dir)
        return run

    def fit_seeds(self, config: str, study: str, run: Run, common: list[str]) -> Seeds:
        """``run`` at seeds 0 .. ``self.seeds`` - 1 (each its own folder; seed 0 is the config's own seeds)."""
        if self.seeds > 1 and not self.seed_keys:
            raise ValueError("--seeds > 1 needs the grid's `seed_keys` (the config fields a seed sets)")
        return Seeds(
            run.name,
            [self.fit(config, study, Run(run.name, list(run.overrides), seed=s), common) for s in range(self.seeds)],
        )


@dataclass
class Seeds:
    """One sweep point at several seeds: per-seed numbers, their mean and 95 % t-interval
    (``diffusion_theory.metrics.intervals``)."""

    name: str
    runs: list[Run]

    def finals(self, metric: str) -> list[float]:
        return [r.final(metric) for r in self.runs]

    def ats(self, metric: str, step: int) -> list[float]:
        return [r.at(metric, step) for r in self.runs]

    def values(self, fn) -> list[float]:
        """``fn(run)`` for each seed's run."""
        return [fn(r) for r in self.runs]

    def interval(self, values: list[float]):
        from diffusion_theory.metrics.intervals import t_interval

        return t_interval(values)

    def band(self, metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """(steps, mean, lo, hi) of ``metric`` over the seeds at the steps every seed logged."""
        from diffusion_theory.metrics.intervals import t_interval

        curves = [dict(zip(*r.curve(metric))) for r in self.runs]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        ivs = [t_interval([c[s] for c in curves]) for s in steps]
        return steps, [i.mean for i in ivs], [i.lo for i in ivs], [i.hi for i in ivs]


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------


@dataclass
class Report:
    """The markdown report and its ``figures/`` folder beside it (figures are linked as ``figures/<name>.png``)."""

    path: Path = DEFAULT_REPORT

    @property
    def figures(self) -> Path:
        return self.path.parent / "figures"

    def save(self, fig: Figure, name: str) -> str:
        """Write ``figures/<name>.png``; returns its link relative to the report."""
        from diffusion_theory import plotting

        self.figures.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.figures / f"{name}.png")
        plotting.close(fig)
        return f"figures/{name}.png"

    def copy_figure(self, run_dir: Path, name: str, as_name: str) -> str:
        """Copy a run's ``figures/<name>.png`` (drawn by its diagnostics) to the report's ``figures/<as_name>.png``."""
        self.figures.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "figures" / f"{name}.png", self.figures / f"{as_name}.png")
        return f"figures/{as_name}.png"

    def write_section(self, key: str, text: str) -> None:
        """Replace (or append) the block between ``<!-- key:start -->`` and ``<!-- key:end -->``."""
        start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
        block = f"{start}\n{text.strip()}\n{end}"
        body = self.path.read_text() if self.path.exists() else "# Reproduction report\n"
        if start in body:
            body = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, body, flags=re.S)
        else:
            body = body.rstrip() + "\n\n" + block + "\n"
        self.path.write_text(body)


# ----------------------------------------------------------------------------------------
# Formatting and trends
# ----------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """4 decimals, or scientific notation below 1e-3."""
    return f"{x:.4f}" if abs(x) >= 1e-3 else f"{x:.2e}"


def fmt_iv(values: list[float], f=fmt) -> str:
    """``mean [lo, hi]`` over seeds (95 % t-interval), or ``value (1 seed)``."""
    from diffusion_theory.metrics.intervals import t_interval

    return t_interval(values).format(f)


def seeds_note(n: int) -> str:
    """The sentence every table of the report carries about its seeds."""
    if n < 2:
        return (
            "Single seed: no interval, and no ordering below is resolved (orderings are claimed only where the "
            "95 % t-intervals over seeds separate, or a paired t-test over seeds rejects equality)."
        )
    return (
        f"Mean over {n} seeds [95 % t-interval]; a seed sets the training data stream, the training noise and the "
        "initialisation, the evaluation set is shared, so settings are compared by a paired t-test over seeds "
        "(an ordering is claimed only when the 95 % interval of the paired differences excludes 0, otherwise "
        "'not resolved at this scale')."
    )


def g3(x: float) -> str:
    """3 significant digits (for quantities that span orders of magnitude)."""
    return f"{x:.3g}"


def ordered(values: list[float]) -> bool:
    """Non-decreasing."""
    return all(a <= b for a, b in zip(values, values[1:]))


def monotone_decreasing(values: list[float]) -> bool:
    """Strictly decreasing."""
    return all(b < a for a, b in zip(values, values[1:]))


def trend(values: list[float]) -> str:
    if monotone_decreasing(values):
        return "decreasing"
    return "increasing" if monotone_decreasing(values[::-1]) else "not monotone"


# ----------------------------------------------------------------------------------------
# Experiments
# ----------------------------------------------------------------------------------------


def load_grid(path: Path) -> dict[str, Any]:
    """A sweep grid (YAML): at least ``scales: {name: {...}}``."""
    import yaml

    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, dict) or not isinstance(grid.get("scales"), dict) or not grid["scales"]:
        raise ValueError(f"{path}: a sweep grid needs a mapping `scales:` with at least one scale")
    return grid


class Experiment(abc.ABC):
    """One paper's sweeps. Subclasses set ``name`` (the CLI name, the prefix of its report sections and of its grid
    file ``configs/sweeps/<name>.yaml``) and ``studies``, and implement ``reproduce``.

    Args:
        grid: the sweep grid; None reads ``configs/sweeps/<name>.yaml``.
    """

    name: ClassVar[str]
    studies: ClassVar[tuple[str, ...]]

    def __init__(self, grid: dict[str, Any] | None = None):
        self.grid = grid if grid is not None else load_grid(self.default_grid_path())

    @classmethod
    def default_grid_path(cls) -> Path:
        return REPO / "configs" / "sweeps" / f"{cls.name}.yaml"

    @property
    def scales(self) -> list[str]:
        return list(self.grid["scales"])

    def check(self, scale: str, only: list[str] | None) -> None:
        """One clear error for an unknown scale or study, before any run."""
        if scale not in self.grid["scales"]:
            raise ValueError(f"--scale: {self.name} has scales {', '.join(self.scales)}; got {scale!r}")
        unknown = sorted(set(only or ()) - set(self.studies))
        if unknown:
            raise ValueError(f"--only: {self.name} has studies {', '.join(self.studies)}; got {', '.join(unknown)}")

    def runs_root(self, root: Path, scale: str) -> Path:
        """The folder of this paper's runs at ``scale`` under the sweep root (``--root``): ``<root>/<scale>/<name>``."""
        return root / scale / self.name

    def section(self, key: str) -> str:
        """The report marker key of a study: ``<name>-<key>``."""
        return f"{self.name}-{key}"

    @abc.abstractmethod
    def reproduce(self, scale: str, only: list[str] | None, sweep: Sweep, report: Report) -> None:
        """Fit (or reuse) the runs of the studies in ``only`` (all if None) at ``scale`` and write their report
        sections (and the paper's intro section)."""
