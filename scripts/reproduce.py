#!/usr/bin/env python
"""Re-run a paper's experiments and write its sections of docs/reproduction.md.

    python scripts/reproduce.py mtgm                  # paper 1 at CPU scale, 3 seeds: 54 runs, ~1 h 45 min on one core
    python scripts/reproduce.py mtgm --scale paper    # the paper's step counts and evaluation size (GPU)
    python scripts/reproduce.py mtgm --only fig2b     # one study
    python scripts/reproduce.py gp                    # paper 2 at CPU scale, 3 seeds: 33 runs, ~1 h 50 min on one core
    python scripts/reproduce.py mtgm --seeds 5        # 5 seeds per sweep point (default 3)
    python scripts/reproduce.py mtgm --wandb          # also log every run to W&B (offline without network)
    python scripts/reproduce.py gp --grid my_grid.yaml    # other sweep values (a copy of configs/sweeps/gp.yaml)

Every run is an ordinary ``scripts/fit.py`` run (same CLI, same run folders under runs/reproduce/);
the sweeps live in ``diffusion_theory/experiments/`` (one module per paper), their grids in
``configs/sweeps/<paper>.yaml``. This script only parses the arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_theory import experiments  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paper", choices=sorted(experiments.available()))
    parser.add_argument("--scale", default="cpu", help="a scale of the paper's grid: cpu (default), paper, smoke")
    parser.add_argument(
        "--only",
        action="append",
        help="studies to run (mtgm: fig2a fig2b fig2c fig2d fig4 gap fig2b_gd fig2c_gd fig2d_gd prop2 symmetric; "
        "gp: fig4a schedule attention white measures; mnist: fig3; ball: videos)",
    )
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "reproduce")
    parser.add_argument("--wandb", action="store_true")
    parser.add_argument(
        "--report", type=Path, default=experiments.common.DEFAULT_REPORT, help="the markdown report to update"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per sweep point (default 3; seed 0 is the configs' own seeds, the existing runs)",
    )
    parser.add_argument("--grid", type=Path, default=None, help="the sweep grid (default: configs/sweeps/<paper>.yaml)")
    args = parser.parse_args(argv)
    cls = experiments.experiment_class(args.paper)
    grid = experiments.load_grid(args.grid) if args.grid else None
    if args.seeds < 1:
        parser.error(f"--seeds: at least 1 seed per sweep point; got {args.seeds}")
    try:
        cls(grid).check(args.scale, args.only)
    except ValueError as err:
        parser.error(str(err))
    experiments.reproduce(args.paper, args.scale, args.only, args.root, args.wandb, args.report, args.grid, args.seeds)


if __name__ == "__main__":
    main()
