"""Resuming a SLURM job that was requeued.

Under SLURM, Lightning's ``SLURMEnvironment(auto_requeue=True)`` (detected automatically when ``SLURM_NTASKS`` is
set and the job is not interactive) handles the signal that ``#SBATCH --signal=SIGUSR1@90`` sends before the time
limit: it writes ``<default_root_dir>/hpc_ckpt_<n>.ckpt`` and calls ``scontrol requeue $SLURM_JOB_ID``. The
requeued job has the same ``SLURM_JOB_ID``, hence the same run folder ``<root>/<experiment>/slurm-<id>``
(``cli.resolve_run_dir``) and the same W&B id. ``requeue_checkpoint`` then picks the checkpoint to continue from:
the newest of the HPC checkpoints and ``checkpoints/last.ckpt`` (the job may have validated, and written
``last.ckpt``, between the signal and its end; a job requeued after a node failure has no HPC checkpoint at all).
"""

from __future__ import annotations

import re
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment

HPC_CKPT = re.compile(r"^hpc_ckpt_(\d+)\.ckpt$")


def requeue_checkpoint(run_dir: str | Path) -> str | None:
    """Under SLURM (``SLURMEnvironment.detect()``), the newest of ``run_dir/hpc_ckpt_*.ckpt`` and
    ``run_dir/checkpoints/last.ckpt`` (by modification time); None outside SLURM or when there is none."""
    if not SLURMEnvironment.detect():
        return None
    run_dir = Path(run_dir)
    candidates = [p for p in run_dir.glob("hpc_ckpt_*.ckpt") if HPC_CKPT.match(p.name)]
    candidates += [p for p in (run_dir / "checkpoints" / "last.ckpt",) if p.is_file()]
    if not candidates:
        return None
    return str(max(candidates, key=lambda p: p.stat().st_mtime))
