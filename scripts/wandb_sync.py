#!/usr/bin/env python
"""Upload a run's offline W&B segments as one W&B run, oldest first (``diffusion_theory.wandb_sync``).

python scripts/wandb_sync.py runs/mtgm/20261128-120000          # prints the wandb sync commands
python scripts/wandb_sync.py runs/mtgm/20261128-120000 --run    # runs them, stopping at the first failure
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from diffusion_theory.wandb_sync import offline_segments, sync_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder (holding wandb/offline-run-*)")
    parser.add_argument("--run", action="store_true", help="run the commands instead of printing them")
    args = parser.parse_args(argv)
    segments = offline_segments(args.run_dir)
    if not segments:
        parser.error(f"run_dir: no offline W&B segments under {args.run_dir}/wandb")
    for command in sync_commands(segments):
        print(command, flush=True)
        if args.run and subprocess.call(command, shell=True) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
