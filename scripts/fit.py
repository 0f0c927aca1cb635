#!/usr/bin/env python
"""Train any experiment from its config.

    python scripts/fit.py --config configs/mtgm.yaml                      # CPU scale, minutes
    python scripts/fit.py --config configs/mtgm_paper.yaml --config configs/trainer/gpu.yaml
    python scripts/fit.py --config configs/mtgm.yaml --trainer.max_steps=500 --data.init_args.K=2
    python scripts/fit.py --config configs/mtgm.yaml --ckpt_path=last       # resume the newest run
    python scripts/fit.py --config configs/mtgm.yaml --print_config         # the full resolved config
    python scripts/fit.py --list                                            # components by short name

A bad config value ends with one line naming the key and the rule and exit status 2, before any run folder,
W&B run or training step; DIFFUSION_THEORY_DEBUG=1 shows the traceback instead.
"""

import os
import sys

from diffusion_theory.cli import DiffusionCLI
from diffusion_theory.config_errors import DEBUG_ENV, ConfigError
from diffusion_theory.protocols import MissingCapabilityError


def main(args=None) -> None:
    try:
        DiffusionCLI(args=args)
    except (ConfigError, MissingCapabilityError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
