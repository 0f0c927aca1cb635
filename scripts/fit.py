#!/usr/bin/env python
"""Train any experiment from its config.

    python scripts/fit.py --config configs/mtgm.yaml                      # CPU scale, minutes
    python scripts/fit.py --config configs/mtgm_paper.yaml --config configs/trainer/gpu.yaml
    python scripts/fit.py --config configs/mtgm.yaml --trainer.max_steps=500 --data.K=2
    python scripts/fit.py --config configs/mtgm.yaml --ckpt_path=last       # resume the newest run
    python scripts/fit.py --config configs/mtgm.yaml --print_config         # the full resolved config
"""
from diffusion_theory.cli import DiffusionCLI


def main(args=None) -> None:
    DiffusionCLI(args=args)


if __name__ == "__main__":
    main()
