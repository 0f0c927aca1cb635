"""A run's output shows what matters (diffusion_theory/quiet.py, callbacks/diagnostic.py SYNCED): the known library
notices are dropped, other warnings are kept, and a 2-process DDP run prints no per-metric sync_dist warning."""

from __future__ import annotations

import logging
import warnings

from conftest import ROOT, read_metrics, run_fit_subprocess, tiny_mtgm_args
from lightning.pytorch.utilities import rank_zero_info

from diffusion_theory.quiet import LITLOGGER_TIP, silence_known_notices


def test_known_notices_are_dropped_and_others_kept(caplog):
    silence_known_notices()
    caplog.set_level(logging.INFO)
    rank_zero_info(f"💡 {LITLOGGER_TIP}, try installing [litlogger](...)")
    rank_zero_info("GPU available: False, used: False")
    assert LITLOGGER_TIP not in caplog.text and "GPU available" in caplog.text
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        silence_known_notices()  # after simplefilter: its filters take precedence
        warnings.warn("Your `IterableDataset` has `__len__` defined. In combination with ...", stacklevel=1)
        warnings.warn(
            "`DiffusionModule.configure_optimizers` will be overridden by `DiffusionCLI.configure_optimizers`.",
            stacklevel=1,
        )
        warnings.warn(
            "`MyModel.configure_optimizers` will be overridden by `DiffusionCLI.configure_optimizers`.", stacklevel=1
        )
        warnings.warn("something real", stacklevel=1)
    assert [str(w.message) for w in seen] == [
        "`MyModel.configure_optimizers` will be overridden by `DiffusionCLI.configure_optimizers`.",
        "something real",
    ]


def test_ddp_run_prints_no_per_metric_sync_warning_nor_start_notices(tmp_path):
    args = tiny_mtgm_args(tmp_path, name="ddp", max_steps=20) + ["--config", str(ROOT / "configs/trainer/ddp_cpu.yaml")]
    res = run_fit_subprocess(args, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "All distributed processes registered. Starting with 2 processes" in out  # it did run DDP
    for notice in (
        "sync_dist=True",
        LITLOGGER_TIP,
        "IterableDataset` has `__len__`",
        "configure_optimizers` will be overridden",
    ):
        assert notice not in out, notice
    rows = read_metrics(tmp_path / "mtgm" / "ddp")
    assert sum(1 for r in rows if r.get("val/bayes_gap")) == 2  # the diagnostics are still logged, once per validation
