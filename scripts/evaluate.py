#!/usr/bin/env python
"""Validation and diagnostics of a trained checkpoint (logic: ``diffusion_theory.evaluation_run``).

    python scripts/evaluate.py --ckpt runs/gp/<run>/checkpoints/last.ckpt            # the run's own diagnostics
    python scripts/evaluate.py --ckpt ... --config more.yaml --out eval_dir          # others, from a config
    python scripts/evaluate.py --ckpt ... --trainer.strategy=ddp --trainer.devices=2 --trainer.accelerator=cpu

Reads <run>/config.yaml next to <run>/checkpoints/; further --config files and --key=value overrides compose
on top as in scripts/fit.py. Writes metrics.json, metrics.csv and figures/ to --out
(default <run>/evaluation/<ckpt stem>/) and prints a table.
"""

import argparse
import sys

from diffusion_theory.evaluation_run import evaluate_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of scripts/fit.py: <run>/checkpoints/<x>.ckpt")
    parser.add_argument("--config", action="append", default=[], help="more config files, applied after the run's")
    parser.add_argument("--out", default=None, help="output folder (default <run>/evaluation/<ckpt stem>/)")
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--")]
    if bad:
        parser.error(f"unexpected arguments {bad}; overrides take the form --key=value")
    try:
        evaluate_checkpoint(args.ckpt, args.config, overrides, args.out)
    except ValueError as error:
        print(f"evaluate.py: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
