"""Plugins: examples/plugin_example installed with pip, used by short name through scripts/fit.py (1 and 2 DDP
processes); the built-in ScoreError and the plugin's own diagnostic run on it; AR(1) exact posterior against
autograd of the dense Gaussian log-density; a broken plugin; --list; a diagnostic on data that cannot answer."""

from __future__ import annotations

import importlib
import importlib.util
import math
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, last_value, read_metrics, run_fit_subprocess

from diffusion_theory import registry
from diffusion_theory.cli import DiffusionCLI

PLUGIN_DIR = ROOT / "examples" / "plugin_example"
AR1_CONFIG = PLUGIN_DIR / "configs" / "ar1.yaml"


def _installed_from_this_checkout() -> bool:
    try:
        direct_url = distribution("dt_plugin_example").read_text("direct_url.json") or ""
    except PackageNotFoundError:
        return False
    return PLUGIN_DIR.resolve().as_uri() in direct_url


@pytest.fixture(scope="session")
def plugin_installed() -> None:
    """``pip install -e examples/plugin_example`` into this interpreter's environment, once (offline: no deps)."""
    if not _installed_from_this_checkout():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PLUGIN_DIR)]
        if importlib.util.find_spec("setuptools") is not None:
            cmd.insert(4, "--no-build-isolation")  # build with the local setuptools: no network needed
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        importlib.invalidate_caches()
    assert "ar1" in {ep.name for ep in entry_points(group=registry.GROUP)}


@pytest.fixture
def plugin_on_path(monkeypatch) -> None:
    """The package importable in this process (an editable install's path hook is read at interpreter start)."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))


@pytest.fixture
def plugin_importable(plugin_installed, plugin_on_path) -> None:
    """Installed (its entry point visible) and importable in this process."""


def tiny_ar1_args(root: Path, name: str, extra: list[str] | None = None) -> list[str]:
    """examples/plugin_example/configs/ar1.yaml at seconds scale: P = 8, d = 4, T = 10, two validations."""
    return [
        "--config",
        str(AR1_CONFIG),
        f"--run.root={root}",
        f"--run.name={name}",
        "--data.init_args.d=4",
        "--data.init_args.P=8",
        "--data.init_args.n_eval=15",
        "--data.init_args.eval_batch_size=4",
        "--data.init_args.batch_size=16",
        "--data.init_args.steps_per_epoch=10",
        "--model.init_args.schedule.init_args.T=10",
        "--optimizer.init_args.lr=0.05",
        "--trainer.max_steps=20",
        "--trainer.log_every_n_steps=5",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ] + (extra or [])


PLUGIN_METRICS = ["val/score_error", "val/bayes_risk", "val/lag1_corr", "val/lag1_corr_exact", "val/lag1_corr_error"]


def check_plugin_run(run_dir: Path) -> dict[str, float]:
    rows = read_metrics(run_dir)
    values = {name: last_value(rows, name) for name in PLUGIN_METRICS}
    for name, value in values.items():
        assert math.isfinite(value), name
    # both diagnostics measured at both validations, and the per-step linear denoiser learned
    score = [float(r["val/score_error"]) for r in rows if r.get("val/score_error")]
    assert len(score) == 2 and score[1] < score[0]
    assert len([r for r in rows if r.get("val/lag1_corr_error")]) == 2
    assert last_value(rows, "theory/ar1_a") == pytest.approx(0.9)
    assert 0 < values["val/lag1_corr_exact"] < 1
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["data"]["class_path"] == "dt_plugin_example.datamodule.AR1DataModule"  # the short name resolved
    return values


# ----------------------------------------------------------------------------------------------
# The plugin's mathematics
# ----------------------------------------------------------------------------------------------


def test_ar1_exact_eps_matches_autograd_of_dense_gaussian_density(plugin_on_path):
    from dt_plugin_example.datamodule import AR1DataModule
    from dt_plugin_example.lag_correlation import lag_one_correlation

    P, d, a, s2 = 5, 2, -0.7, 1.3
    dm = AR1DataModule(d=d, P=P, a=a, variance=s2)
    # C from the recursion x_{i+1} = a x_i + s sqrt(1 - a^2) z, propagated step by step (not the closed form)
    C = torch.zeros(P, P, dtype=torch.float64)
    C[0, 0] = s2
    for i in range(P - 1):
        C[i + 1, : i + 1] = a * C[i, : i + 1]
        C[: i + 1, i + 1] = C[i + 1, : i + 1]
        C[i + 1, i + 1] = a**2 * C[i, i] + s2 * (1 - a**2)
    abar = torch.tensor([0.9, 0.5, 0.05], dtype=torch.float64)
    x_t = torch.randn(3, P, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = dm.exact_eps(x_t, abar, {})
    for n in range(3):
        cov = torch.kron(
            abar[n] * C + (1 - abar[n]) * torch.eye(P, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
        )
        x = x_t[n].reshape(-1).clone().requires_grad_(True)  # vec X, row-major: index p d + k
        torch.distributions.MultivariateNormal(torch.zeros(P * d, dtype=torch.float64), cov).log_prob(x).backward()
        expected = -(1 - abar[n]).sqrt() * x.grad.reshape(P, d)  # E[E | X^t] = -sqrt(1 - abar) grad log p_t
        torch.testing.assert_close(got[n], expected, rtol=1e-10, atol=1e-12)
    # the sampler draws that law: L L^T = C exactly, empirical covariance close
    torch.testing.assert_close(dm.process.cholesky @ dm.process.cholesky.T, C)
    x0 = dm.process.sample(40000, d, torch.Generator().manual_seed(1)).double()  # (n, P, d)
    emp = torch.einsum("npk,nqk->pq", x0, x0) / (x0.shape[0] * d)
    assert (emp - C).abs().max() < 0.04
    # the plugin diagnostic's statistic: a constant sequence has r = (P-1)/P, an alternating one -(P-1)/P
    const, alt = torch.ones(1, P, d), (-1.0) ** torch.arange(P).view(1, P, 1).expand(1, P, d)
    assert float(lag_one_correlation(const)) == pytest.approx((P - 1) / P)
    assert float(lag_one_correlation(alt)) == pytest.approx(-(P - 1) / P)
    with pytest.raises(ValueError, match="data.a must lie in"):
        AR1DataModule(a=1.0)


# ----------------------------------------------------------------------------------------------
# The plugin through scripts/fit.py, by short name
# ----------------------------------------------------------------------------------------------


def test_plugin_by_short_name_runs_builtin_and_own_diagnostics(plugin_installed, tmp_path):
    res = run_fit_subprocess(tiny_ar1_args(tmp_path, "single"))
    assert res.returncode == 0, res.stderr[-4000:]
    check_plugin_run(tmp_path / "ar1" / "single")


def test_plugin_under_ddp_matches_single_process_validation(plugin_importable, tmp_path):
    res = run_fit_subprocess(tiny_ar1_args(tmp_path, "ddp", ["--config", str(ROOT / "configs/trainer/ddp_cpu.yaml")]))
    assert res.returncode == 0, res.stderr[-4000:]
    ddp_values = check_plugin_run(tmp_path / "ar1" / "ddp")
    # the same checkpoint validated in one process (n_eval = 15: uneven shards, nothing padded)
    cli = DiffusionCLI(
        args=tiny_ar1_args(
            tmp_path, "single", ["--run.wandb_mode=disabled", "--trainer.accelerator=cpu", "--trainer.devices=1"]
        ),
        run=False,
    )
    cli.trainer.validate(
        cli.model,
        datamodule=cli.datamodule,
        ckpt_path=str(tmp_path / "ar1" / "ddp" / "checkpoints" / "last.ckpt"),
        verbose=False,
    )
    for name in PLUGIN_METRICS:
        assert float(cli.trainer.callback_metrics[name]) == pytest.approx(ddp_values[name], rel=1e-5, abs=1e-7), name


# ----------------------------------------------------------------------------------------------
# Finding components: --list, a broken plugin
# ----------------------------------------------------------------------------------------------


def test_list_shows_builtin_and_plugin_components_with_capabilities(plugin_importable, capsys):
    with pytest.raises(SystemExit) as info:
        DiffusionCLI(args=["--list"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name, path in [
        ("MTGMDataModule", "diffusion_theory.datamodules.mtgm.MTGMDataModule"),
        ("DiffusionModule", "diffusion_theory.models.diffusion_module.DiffusionModule"),
        ("OneLayerTransformer", "diffusion_theory.networks.theory_transformer.OneLayerTransformer"),
        ("LinearAlphaSchedule", "diffusion_theory.diffusion.schedules.LinearAlphaSchedule"),
        ("ScoreError", "diffusion_theory.callbacks.score_error.ScoreError"),
        ("AR1DataModule", "dt_plugin_example.datamodule.AR1DataModule"),
        ("SequenceLinearDenoiser", "dt_plugin_example.network.SequenceLinearDenoiser"),
        ("LagOneCorrelation", "dt_plugin_example.lag_correlation.LagOneCorrelation"),
    ]:
        assert any(line.split()[:2] == [name, path] for line in out.splitlines()), name
    sections = out.split("\n\n")
    data = next(s for s in sections if s.startswith("Data modules"))
    networks = next(s for s in sections if s.startswith("Networks"))
    ar1 = data.split("AR1DataModule", 1)[1].split("MTGMDataModule")[0]
    assert "[plugin ar1]" in ar1 and "exact_eps (KnowsPosteriorNoise)" in ar1 and "oracle_eps" not in ar1
    mtgm = data.split("MTGMDataModule", 1)[1]
    assert all(m in mtgm for m in ("exact_eps", "oracle_eps", "token_labels", "theory_quantities"))
    assert "ScoreError" not in data and "attention_logits (ExposesAttention)" in networks
    # --help points at --list
    with pytest.raises(SystemExit):
        DiffusionCLI(args=["--help"])
    assert "--list" in capsys.readouterr().out


def write_broken_plugin(folder: Path) -> None:
    """An installed distribution (dist-info on the path) whose entry point's module raises ImportError."""
    info = folder / "dt_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dt_broken_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\nbroken = dt_broken_plugin:components\n")
    (folder / "dt_broken_plugin.py").write_text('raise ImportError("dt_broken_plugin needs nonexistent_dep")\n')


def test_broken_plugin_is_named_and_the_others_still_load(plugin_importable, tmp_path, monkeypatch):
    write_broken_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.warns(
        registry.PluginImportWarning, match=r"'broken'.*ImportError: dt_broken_plugin needs nonexistent_dep"
    ):
        failures = registry.load_components()
    assert list(failures) == ["broken"]
    listed = {c.name for items in registry.list_components().values() for c in items}
    assert {"MTGMDataModule", "ScoreError", "AR1DataModule", "LagOneCorrelation"} <= listed
    # a config naming a class the broken plugin would provide: the parse error says why
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "BrokenDataModule"}}))
    res = run_fit_subprocess(
        ["--config", str(AR1_CONFIG), "--config", str(config), f"--run.root={tmp_path}"],
        env={"PYTHONPATH": str(tmp_path / "site")},
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    error = res.stderr.split("error:", 1)[1]
    assert "BrokenDataModule" in error and "'broken'" in error and "nonexistent_dep" in error
    assert not (tmp_path / "ar1").exists()


# ----------------------------------------------------------------------------------------------
# Capabilities: a diagnostic on data that cannot answer fails at start-up
# ----------------------------------------------------------------------------------------------

PLAIN_DATA = '''
import lightning.pytorch as pl
import torch
from pathlib import Path
from torch.utils.data import DataLoader


class PlainSequences(pl.LightningDataModule):
    """Gaussian sequences with no exact_eps; touches ``marker`` if a training batch is ever requested."""

    def __init__(self, marker: str, P: int = 4, d: int = 4):
        super().__init__()
        self.marker, self.P, self.d = marker, P, d

    def train_dataloader(self):
        Path(self.marker).touch()
        x0 = torch.randn(8, self.P, self.d)
        return DataLoader([{"x0": x0[i:i + 4]} for i in (0, 4)], batch_size=None)

    def val_dataloader(self):
        return DataLoader([{"x0": torch.randn(4, self.P, self.d), "index": torch.arange(4)}], batch_size=None)
'''


def test_diagnostic_on_data_without_capability_fails_before_training(tmp_path):
    (tmp_path / "plain_sequences.py").write_text(PLAIN_DATA)
    marker = tmp_path / "training_started"
    config = {
        "run": {"root": str(tmp_path), "name": "plain", "experiment": "plain"},
        "model": {
            "class_path": "DiffusionModule",
            "init_args": {
                "network": {"class_path": "OneLayerTransformer", "init_args": {"d": 4, "T": 5}},
                "schedule": {"class_path": "LinearAlphaSchedule", "init_args": {"T": 5}},
            },
        },
        "data": {"class_path": "plain_sequences.PlainSequences", "init_args": {"marker": str(marker)}},
        "trainer": {"max_steps": 2, "callbacks": [{"class_path": "ScoreError"}]},
    }
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(config))
    res = run_fit_subprocess(["--config", str(tmp_path / "plain.yaml")], env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode != 0
    last_line = res.stderr.strip().splitlines()[-1]
    assert "MissingCapabilityError" in last_line and "callback ScoreError" in last_line
    assert "exact_eps()" in last_line and "PlainSequences" in last_line
    assert not marker.exists()  # no training batch was drawn
    assert not (tmp_path / "plain").exists()  # no run folder, checkpoint, metrics or W&B run
