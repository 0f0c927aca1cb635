"""scripts/reproduce.py writes its report sections from real runs (smoke scale: seconds)."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_reproduce_mtgm_smoke_writes_report_section(tmp_path):
    report = tmp_path / "docs" / "reproduction.md"
    report.parent.mkdir()
    report.write_text("# Reproduction report\n\nintro kept\n")
    cmd = [sys.executable, str(ROOT / "scripts/reproduce.py"), "mtgm", "--scale", "smoke", "--only", "fig2d",
           "--root", str(tmp_path / "runs"), "--report", str(report)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text()
    assert "intro kept" in text and "<!-- mtgm-fig2d:start -->" in text and "Fig. 2D" in text
    assert (tmp_path / "docs" / "figures" / "mtgm_fig2d.png").stat().st_size > 1000
    for mode in ("first", "uniform", "last"):
        assert f"| {mode} |" in text
    # a second run replaces the section instead of appending a copy
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and report.read_text().count("<!-- mtgm-fig2d:start -->") == 1
