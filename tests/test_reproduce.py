"""scripts/reproduce.py writes its report sections from real runs (smoke scale: seconds)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, smoke_reproduce_cmd


def test_reproduce_mtgm_smoke_writes_report_section(tmp_path):
    cmd, report = smoke_reproduce_cmd("mtgm", tmp_path, 2, "fig2d")
    report.parent.mkdir()
    report.write_text("# Reproduction report\n\nintro kept\n")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text()
    assert "intro kept" in text and "<!-- mtgm-fig2d:start -->" in text and "Fig. 2D" in text
    assert (tmp_path / "docs" / "figures" / "mtgm_fig2d.png").stat().st_size > 1000
    for mode in ("first", "uniform", "last"):
        assert f"| {mode} |" in text
        assert (
            tmp_path / "runs" / "smoke" / ("base" if mode == "uniform" else f"time-sampling={mode}") / "metrics.csv"
        ).exists()
        assert (
            tmp_path
            / "runs"
            / "smoke"
            / (("base" if mode == "uniform" else f"time-sampling={mode}") + "_seed=1")
            / "metrics.csv"
        ).exists()
    assert "Mean over 2 seeds [95 % t-interval]" in text and "] |" in text
    # a second run replaces the section instead of appending a copy
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and report.read_text().count("<!-- mtgm-fig2d:start -->") == 1


def test_reproduce_rejects_an_unknown_scale_or_study_before_any_run(tmp_path):
    for script, args, message in (
        ("reproduce.py", ["mtgm", "--scale", "huge"], "--scale: mtgm has scales cpu, paper, smoke"),
        ("reproduce.py", ["mtgm", "--only", "fig9"], "--only: mtgm has studies fig2a"),
        ("reproduce.py", ["mtgm", "--seeds", "0"], "--seeds: at least 1 seed"),
        ("reproduce_gp.py", ["--only", "fig2b"], "--only: gp has studies fig4a, schedule, attention, white, measures"),
    ):
        res = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / script),
                *args,
                "--root",
                str(tmp_path / "runs"),
                "--report",
                str(tmp_path / "r.md"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.md").exists()


def test_reproduce_mtgm_gd_and_symmetric_studies_write_their_sections(tmp_path):
    """The plain-GD study (steps to thresholds, excess at fixed steps, orderings over seeds) and the symmetric family
    (no training) at the smoke scale, 2 seeds."""
    cmd, report = smoke_reproduce_cmd("mtgm", tmp_path, 2, "fig2d_gd", "symmetric")
    report.parent.mkdir()
    report.write_text("# Reproduction report\n")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text()
    gd = text[text.index("<!-- mtgm-fig2d_gd:start -->") : text.index("<!-- mtgm-fig2d_gd:end -->")]
    assert "| steps to 0.45 | steps to 0.4 | steps to 0.35 | excess / R_oracle @ 5 |" in gd
    for mode in ("first", "uniform", "last"):
        assert f"| {mode} |" in gd
        assert (
            tmp_path / "runs" / "smoke" / "gd" / ("base" if mode == "uniform" else f"time-sampling={mode}")
        ).is_dir()
    assert "counts as 25 steps (a lower bound" in gd and "excess / R_oracle at step 20" in gd
    assert (tmp_path / "docs" / "figures" / "mtgm_fig2d_gd.png").stat().st_size > 1000
    sym = text[text.index("<!-- mtgm-symmetric:start -->") : text.index("<!-- mtgm-symmetric:end -->")]
    assert "| 8 | 16 | 3 |" in sym and "trained - family" in sym
