"""configs/sweeps/mtgm_K.yaml and gp_n.yaml: the command lines W&B's agent builds from them parse with our CLI
and set the swept values (W&B's server is not reachable here, so the agent's own formatting is replayed)."""

from __future__ import annotations

import itertools

import pytest
import yaml
from conftest import ROOT

from diffusion_theory.cli import DiffusionCLI

SWEEPS = ["configs/sweeps/mtgm_K.yaml", "configs/sweeps/gp_n.yaml"]


def grid(parameters: dict) -> list[dict]:
    """Every run of a `method: grid` sweep: the product of each parameter's `values` (`value`: a constant)."""
    names = list(parameters)
    choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


def agent_command(sweep: dict, params: dict) -> list[str]:
    """The command W&B's agent runs for one sweep run, as in ``wandb.wandb_agent.Agent._command_run``: the
    macros of ``command:`` replaced, ``${args}`` by ``create_sweep_command_args`` (``--<name>=<value>``)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    command = []
    for part in sweep_utils.create_sweep_command(sweep["command"]):
        part = str(part)
        if part.startswith("${") and part.endswith("}"):
            command += sweep_vars.get(part[2:-1]) or []
        else:
            command.append(part)
    return command


def configured(cli: DiffusionCLI, dotted: str):
    """The value of a dotted key in the parsed config (``seed_everything``, ``data.init_args.K``, ...)."""
    return cli.config[dotted]


@pytest.mark.parametrize("path", SWEEPS)
def test_sweep_file_is_a_grid_over_fit_py(path):
    sweep = yaml.safe_load((ROOT / path).read_text())
    assert sweep["program"] == "scripts/fit.py" and (ROOT / sweep["program"]).is_file()
    assert sweep["method"] == "grid" and "${args}" in sweep["command"]
    assert sweep["command"][:3] == ["${env}", "${interpreter}", "${program}"]
    config = sweep["command"][sweep["command"].index("--config") + 1]
    assert (ROOT / config).is_file()
    assert len(grid(sweep["parameters"])) > 1


@pytest.mark.parametrize("path", SWEEPS)
def test_agent_arguments_parse_and_set_the_swept_values(tmp_path, path):
    sweep = yaml.safe_load((ROOT / path).read_text())
    swept = {k for k, spec in sweep["parameters"].items() if "values" in spec}
    seen = {k: set() for k in swept}
    for params in grid(sweep["parameters"]):
        command = agent_command(sweep, params)
        assert command[:3] == ["/usr/bin/env", "python", "scripts/fit.py"]
        args = command[3:]
        for name, value in params.items():
            assert f"--{name}={value}" in args  # the agent's format: one --key=value per parameter
        cli = DiffusionCLI(args=args + [f"--run.root={tmp_path}", "--run.wandb_mode=disabled"], run=False)
        for name, value in params.items():
            assert configured(cli, name) == value, name
        for name in swept:  # the instantiated objects got them too
            section, _, field = name.partition(".init_args.")
            if section == "data":
                assert cli.datamodule.hparams[field] == params[name]
            elif name == "trainer.max_steps":
                assert cli.trainer.max_steps == params[name]
            seen[name].add(params[name])
        assert cli.run_dir.parent.name == params.get("run.experiment", cli.run_config.experiment)
    assert all(seen[k] == set(sweep["parameters"][k]["values"]) for k in swept)


def test_a_sweep_run_gets_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_RUN_ID", "run42")
    monkeypatch.setenv("SLURM_JOB_ID", "777")  # an agent inside one SLURM job runs many sweep runs
    sweep = yaml.safe_load((ROOT / SWEEPS[0]).read_text())
    args = agent_command(sweep, grid(sweep["parameters"])[0])[3:]
    cli = DiffusionCLI(args=args + [f"--run.root={tmp_path}", "--run.wandb_mode=disabled"], run=False)
    assert cli.run_dir == tmp_path / "mtgm_K_sweep" / "sweep-run42"
