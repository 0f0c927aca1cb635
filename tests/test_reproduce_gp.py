"""scripts/reproduce.py gp writes paper 2's report sections from real runs (smoke scale: a tiny DiT, seconds per run)."""

from __future__ import annotations

import os
import subprocess

from conftest import ROOT, smoke_reproduce_cmd


def test_reproduce_gp_smoke_writes_every_section_and_figure(tmp_path):
    cmd, report = smoke_reproduce_cmd("gp", tmp_path, 1)
    report.parent.mkdir()
    report.write_text("# Reproduction report\n\n<!-- mtgm-intro:start -->\nkept\n<!-- mtgm-intro:end -->\n")
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = report.read_text()
    assert "<!-- mtgm-intro:start -->\nkept" in text  # other papers' sections are left alone
    for key in ("intro", "fig4a", "schedule", "attention", "white", "measures"):
        assert text.count(f"<!-- gp-{key}:start -->") == 1, key
    assert "| nu = 1 |" in text and "| l = 64 |" in text and "eps decreases as n grows" in text
    assert "white model: corr. with the GP Gamma" in text
    assert "not resolved at this scale (single seed)" in text and "(1 seed)" in text
    assert "| base (l = 64, nu = 2) | 2, 64 |" in text and "fitted nu, l per layer" in text and "frame N-1" in text
    assert "| ddpm_linear | 0.09" in text and "| uniform | 0.010 |" in text  # share of training at abar > 0.9
    assert "| exact eps, same sampler and x_T: variance ratio |" in text and "model excess over the exact eps" in text
    for fig in (
        "gp_fig4a_nu",
        "gp_fig4a_l",
        "gp_fig1_covariance",
        "gp_fig12_attention_scores",
        "gp_white_control",
        "gp_fig10_qk_matrices",
        "gp_white_fig12_attention_scores",
    ):
        assert (tmp_path / "docs" / "figures" / f"{fig}.png").stat().st_size > 3000, fig
    runs = sorted(p.name for p in (tmp_path / "runs" / "smoke" / "gp").iterdir() if p.is_dir())
    # nu = 2 at l = 64 is shared by both sweeps and trained once per n
    assert runs == [
        "base",
        "kernel=white",
        "nu=1_length-scale=64_n-train=16",
        "nu=1_length-scale=64_n-train=32",
        "nu=1_length-scale=64_n-train=32_time-sampling=ddpm-linear",
        "nu=2_length-scale=64_n-train=16",
        "nu=2_length-scale=64_n-train=32",
        "nu=2_length-scale=64_n-train=32_time-sampling=ddpm-linear",
    ]
