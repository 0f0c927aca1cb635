"""diffusion_theory.experiments: the registry, run caching, metrics, report sections and the sweep grids."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import ClassVar

import pytest

from diffusion_theory import experiments
from diffusion_theory.experiments import common
from diffusion_theory.experiments.common import Experiment, Report, Run, Sweep, load_grid, run_key
from diffusion_theory.experiments.mtgm import MTGMExperiment, named_runs, one_parameter_runs


def test_registry_names_both_papers_and_rejects_unknown_names():
    assert {"mtgm", "gp"} <= set(experiments.available())
    assert experiments.experiment_class("mtgm") is MTGMExperiment
    with pytest.raises(ValueError, match="unknown experiment 'foo'; available: .*gp.*mtgm"):
        experiments.experiment_class("foo")


class Toy(Experiment):
    """A third paper's sweep, registered without touching the other two."""

    name = "toy"
    studies: ClassVar = ("a", "b")

    def reproduce(self, scale, only, sweep, report):
        report.write_section(self.section("intro"), f"scale {scale}, runs under {sweep.root.name}, only {only}")


def test_a_new_experiment_plugs_into_the_registry(tmp_path, monkeypatch):
    monkeypatch.setitem(experiments.BUILTIN, "toy", f"{__name__}:Toy")
    grid = tmp_path / "toy.yaml"
    grid.write_text("scales: {tiny: {}}\n")
    report = tmp_path / "report.md"
    experiments.reproduce("toy", "tiny", ["b"], root=tmp_path / "runs", report=report, grid=grid)
    assert (
        "<!-- toy-intro:start -->\nscale tiny, runs under toy, only ['b']\n<!-- toy-intro:end -->" in report.read_text()
    )
    with pytest.raises(ValueError, match="--scale: toy has scales tiny; got 'cpu'"):
        experiments.reproduce("toy", "cpu", None, root=tmp_path, report=report, grid=grid)
    with pytest.raises(ValueError, match="--only: toy has studies a, b; got c"):
        experiments.reproduce("toy", "tiny", ["c"], root=tmp_path, report=report, grid=grid)


def test_run_keys_name_the_overrides():
    assert run_key([]) == "base"
    assert run_key(["--data.init_args.K=2"]) == "K=2"
    assert run_key(["--model.init_args.schedule.init_args.time_sampling=first"]) == "time-sampling=first"
    assert (
        run_key(["--data.init_args.nu=1", "--data.init_args.length_scale=64", "--data.init_args.n_train=16"])
        == "nu=1_length-scale=64_n-train=16"
    )


def write_run(run_dir: Path, rows: list[dict[str, str]]) -> None:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "val/x", "train/y"])
        w.writeheader()
        w.writerows(rows)


def test_a_finished_run_is_reused_and_its_metrics_read(tmp_path, monkeypatch):
    import diffusion_theory.cli

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(diffusion_theory.cli, "DiffusionCLI", no_training)
    sweep = Sweep(tmp_path / "cpu")
    write_run(
        tmp_path / "cpu" / "K=2",
        [
            {"step": "9", "val/x": "3.0", "train/y": ""},
            {"step": "10", "train/y": "1.0", "val/x": ""},
            {"step": "19", "val/x": "2.0", "train/y": ""},
            {"step": "29", "val/x": "1.5", "train/y": ""},
        ],
    )
    run = sweep.fit("configs/mtgm.yaml", "fig2b", Run("K2", ["--data.init_args.K=2"]), [])
    assert run.curve("val/x") == ([9, 19, 29], [3.0, 2.0, 1.5])
    assert run.final("val/x") == 1.5
    assert run.at("val/x", 10) == 3.0 and run.at("val/x", 11) == 2.0 and run.at("val/x", 100) == 1.5
    # without a last checkpoint the run counts as unfinished and is trained
    (tmp_path / "cpu" / "K=2" / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(AssertionError, match="must not be trained"):
        sweep.fit("configs/mtgm.yaml", "fig2b", Run("K2", ["--data.init_args.K=2"]), [])


def test_report_sections_are_replaced_in_place_and_others_kept(tmp_path):
    report = Report(tmp_path / "docs" / "reproduction.md")
    report.path.parent.mkdir()
    report.path.write_text("# Report\n\nhand-written\n\n<!-- b-x:start -->\nother paper\n<!-- b-x:end -->\n")
    report.write_section("a-x", "first")
    report.write_section("a-y", "second")
    report.write_section("a-x", "first, again\nwith $1 and \\1")  # replacement text is taken literally
    text = report.path.read_text()
    assert text.count("<!-- a-x:start -->") == 1 and "first, again\nwith $1 and \\1\n<!-- a-x:end -->" in text
    assert "hand-written" in text and "other paper" in text and "second" in text
    assert text.index("a-x:start") < text.index("a-y:start")


def test_grids_load_and_reject_a_grid_without_scales(tmp_path):
    for name in ("mtgm", "gp"):
        grid = load_grid(experiments.experiment_class(name).default_grid_path())
        assert {"cpu", "paper", "smoke"} <= set(grid["scales"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("studies: {}\n")
    with pytest.raises(ValueError, match="needs a mapping `scales:`"):
        load_grid(bad)


def test_mtgm_grid_defines_the_report_runs():
    """configs/sweeps/mtgm.yaml gives the runs of docs/reproduction.md: the config's own value is the base run."""
    studies = MTGMExperiment().grid["studies"]
    fig2b = one_parameter_runs(studies["fig2b"])
    assert [(r.name, r.overrides) for r in fig2b] == [
        ("K1", ["--data.init_args.K=1"]),
        ("K2", ["--data.init_args.K=2"]),
        ("K4", []),
        ("K6", ["--data.init_args.K=6"]),
    ]
    assert [run_key(r.overrides) for r in one_parameter_runs(studies["fig2c"])] == [
        "pi-min=0.01",
        "pi-min=0.05",
        "base",
    ]
    assert [r.name for r in one_parameter_runs(studies["fig2d"])] == ["first", "uniform", "last"]
    assert [(r.name, run_key(r.overrides)) for r in named_runs(studies["gap"])] == [
        ("d64_P64", "P=64"),
        ("d64_P256", "base"),
        ("d256_P256", "d=256"),
    ]
    assert [run_key(r.overrides) for r in named_runs(studies["fig4"])] == ["pi-min=0.01"]


def test_trends():
    assert common.ordered([1, 1, 2]) and not common.ordered([2, 1])
    assert common.monotone_decreasing([3, 2, 1]) and not common.monotone_decreasing([3, 3])
    assert common.trend([3, 2]) == "decreasing" and common.trend([2, 3]) == "increasing"
    assert common.trend([1, 3, 2]) == "not monotone"
    assert common.fmt(0.12345) == "0.1235" and common.fmt(1.5e-4) == "1.50e-04"


# ---- seeds (issue 12) -----------------------------------------------------------------------------------------


def test_seed_overrides_and_folders():
    keys = ["seed_everything", "data.init_args.data_seed"]
    assert common.seed_overrides(keys, 0) == []  # seed 0: the configs' own seeds, the existing runs
    assert common.seed_overrides(keys, 2) == ["--seed_everything=2", "--data.init_args.data_seed=2"]
    assert common.seed_key(["--data.init_args.K=2"], 0) == "K=2"
    assert common.seed_key(["--data.init_args.K=2"], 2) == "K=2_seed=2" and common.seed_key([], 1) == "base_seed=1"
    with pytest.raises(ValueError, match="seeds are 0, 1"):
        common.seed_overrides(keys, -1)


def test_seed_keys_are_config_fields_that_exist():
    """Every seed key of a grid is a field of its config(s) or a constructor argument of the class the config names
    there (a typo would silently not reseed)."""
    import importlib
    import inspect

    import yaml

    from diffusion_theory.registry import BUILTIN_MODULES

    def resolve(class_path: str):
        if "." in class_path:
            module, _, name = class_path.rpartition(".")
            return getattr(importlib.import_module(module), name)
        for module in BUILTIN_MODULES:
            found = getattr(importlib.import_module(module), class_path, None)
            if found is not None:
                return found
        raise AssertionError(f"unknown class {class_path}")

    def has(cfg: dict, dotted: str) -> bool:
        node, parts = cfg, dotted.split(".")
        for i, part in enumerate(parts):
            if isinstance(node, dict) and part in node:
                parent, node = node, node[part]
            elif i == len(parts) - 1 and parts[i - 1] == "init_args" and "class_path" in parent:
                return part in inspect.signature(resolve(parent["class_path"]).__init__).parameters
            else:
                return False
        return True

    from diffusion_theory.experiments.gp import GPExperiment

    for grid, configs in (
        (MTGMExperiment().grid, ["configs/mtgm.yaml"]),
        (GPExperiment().grid, sorted({s["config"] for s in GPExperiment().grid["scales"].values()})),
    ):
        assert grid["seed_keys"]
        for config in configs:
            cfg = yaml.safe_load((common.REPO / config).read_text())
            for key in grid["seed_keys"]:
                assert has(cfg, key), (config, key)
    assert not has(yaml.safe_load((common.REPO / "configs/mtgm.yaml").read_text()), "data.init_args.dat_seed")


def test_seeded_runs_are_fitted_once_per_seed_with_their_overrides(tmp_path, monkeypatch):
    import diffusion_theory.cli

    calls = []

    def fake_cli(args):
        calls.append(args)
        name = next(a.split("=", 1)[1] for a in args if a.startswith("--run.name="))
        seed = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--seed_everything=")), 0)
        write_run(tmp_path / "cpu" / name, [{"step": "9", "val/x": str(1.0 + seed), "train/y": ""}])

    monkeypatch.setattr(diffusion_theory.cli, "DiffusionCLI", fake_cli)
    sweep = Sweep(tmp_path / "cpu", seeds=3, seed_keys=["seed_everything"])
    pts = sweep.fit_seeds("configs/mtgm.yaml", "fig2b", Run("K2", ["--data.init_args.K=2"]), [])
    assert [r.seed for r in pts.runs] == [0, 1, 2] and pts.finals("val/x") == [1.0, 2.0, 3.0]
    assert [next(a for a in c if a.startswith("--run.name=")) for c in calls] == [
        "--run.name=K=2",
        "--run.name=K=2_seed=1",
        "--run.name=K=2_seed=2",
    ]
    assert "--seed_everything=1" in calls[1] and not any(a.startswith("--seed_everything") for a in calls[0])
    assert pts.band("val/x")[1] == [2.0]
    assert common.fmt_iv([1.0, 2.0, 3.0]).startswith("2.0000 [")
    sweep.fit_seeds("configs/mtgm.yaml", "fig2b", Run("K2", ["--data.init_args.K=2"]), [])
    assert len(calls) == 3  # finished seeds are reused
    with pytest.raises(ValueError, match="seed_keys"):
        Sweep(tmp_path / "x", seeds=2).fit_seeds("configs/mtgm.yaml", "s", Run("a", []), [])


def test_reproduce_rejects_zero_seeds(tmp_path):
    with pytest.raises(ValueError, match="--seeds: at least 1"):
        experiments.reproduce("mtgm", "smoke", ["fig2d"], root=tmp_path, report=tmp_path / "r.md", seeds=0)
    assert not (tmp_path / "r.md").exists()


def test_gd_studies_use_their_own_run_folders_and_plain_gd():
    grid = MTGMExperiment().grid
    assert "--optimizer=torch.optim.SGD" in grid["gd"]["overrides"]
    assert "--optimizer.init_args.momentum=0.0" in grid["gd"]["overrides"]
    for scale in grid["scales"].values():
        assert scale["gd_steps"] > scale["gd_validate_every"] > 0
    assert {"fig2b_gd", "fig2c_gd", "fig2d_gd", "prop2", "symmetric"} <= set(MTGMExperiment.studies)


@pytest.mark.parametrize(
    "edit,message",
    [
        ({"n_sweep": [[3.0, 64.0]]}, "grid scales.cpu.n_sweep: every entry must be a [nu, l] of a Fig. 4(a) setting"),
        ({"orderings_n": 0}, "grid scales.cpu.orderings_n: must be a positive integer"),
        ({"schedule": {"nus": [1.0, 2.0], "time_samplings": ["uniform", "first"]}}, "grid scales.cpu.schedule: needs"),
    ],
)
def test_gp_grid_errors_name_the_field_before_any_run(edit, message):
    import copy

    from diffusion_theory.experiments.gp import GPExperiment

    grid = copy.deepcopy(GPExperiment().grid)
    GPExperiment(grid).check("cpu", None)  # the shipped grid passes
    grid["scales"]["cpu"].update(edit)
    with pytest.raises(ValueError, match=re.escape(message)):
        GPExperiment(grid).check("cpu", None)
