"""reproduce.py mnist at smoke scale on tiny IDX files written here: the report section with its intervals,
paired verdicts and figures (paper 1 (MTGM), Sec. 5.2, Fig. 3 and 5)."""

from __future__ import annotations

import yaml
from conftest import ROOT
from image_fixtures import write_tiny_idx


def test_reproduce_mnist_smoke_writes_its_report_section(tmp_path):
    from diffusion_theory import experiments

    idx = write_tiny_idx(tmp_path / "idx", n_train=40, n_test=30)
    grid = yaml.safe_load((ROOT / "configs/sweeps/mnist.yaml").read_text())
    data = ["--data.init_args.dataset=folder", f"--data.init_args.root={idx}", "--data.init_args.image_size=8"]
    grid["scales"]["smoke"]["overrides"] += data + [
        "--data.init_args.n_real_per_class=30",
        "--model.init_args.network.init_args.input_shape=[1, 8, 8]",
        "--model.init_args.network.init_args.patch_size=4",
    ]
    grid["scales"]["smoke"]["classifier_overrides"] += data + [
        "--model.init_args.network.init_args.input_shape=[1, 8, 8]"
    ]
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    report = tmp_path / "report.md"
    experiments.reproduce(
        "mnist", "smoke", root=tmp_path / "sweeps", report=report, grid=tmp_path / "grid.yaml", seeds=2
    )
    text = report.read_text()
    assert "<!-- mnist-fig3:start -->" in text and "Mean over 2 seeds" in text
    assert "| 2 (minority) |" in text and "Ordering of the paper (minority worst):" in text
    assert "Data: `folder` classes [0, 1, 2, 3]" in text
    assert (tmp_path / "figures" / "mnist_smoke_fig3_per_class_fid.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "mnist_smoke_fig5_grid.png").exists()
