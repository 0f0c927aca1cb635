#!/usr/bin/env python
"""Paper 2's reproduction: the same as ``python scripts/reproduce.py gp [options]``
(sweeps in diffusion_theory/experiments/gp.py, grid in configs/sweeps/gp.yaml).

    python scripts/reproduce_gp.py --scale smoke --only attention
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce import main  # noqa: E402

if __name__ == "__main__":
    main(["gp", *sys.argv[1:]])
