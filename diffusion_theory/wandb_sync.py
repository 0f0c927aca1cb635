"""Uploading a run's offline W&B segments in the right order.

Every start of a run in offline mode writes a folder ``<run>/wandb/offline-run-<YYYYMMDD_HHMMSS>-<id>``; a run
resumed with ``--ckpt_path=last`` (or requeued by SLURM) continues the same W&B id in a second folder. Synced one
by one with a plain ``wandb sync <folder>``, each later segment replaces the run uploaded before it. The right
upload depends on the installed W&B:

- W&B with ``wandb sync --append`` (releases up to 0.29): the oldest segment with a plain ``wandb sync``, then each
  later one, oldest first, with ``wandb sync --append``;
- newer W&B (no ``--append``): every segment in one ``wandb sync`` call, which uploads the segments of one run in
  the order of their start time.

``scripts/wandb_sync.py <run folder>`` prints (or runs) these commands.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

SEGMENT = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+)$")


def offline_segments(run_dir: str | Path) -> list[Path]:
    """The offline W&B folders of a run folder, oldest first (by the start time in their name, then by the index W&B
    appends when a segment starts in the same second as an earlier one, ``...-<id>-1``, then by the modification time
    of their run file). The W&B id is read from the run file ``run-<id>.wandb`` (the folder name alone is ambiguous
    once W&B has appended that index). Raises if they belong to more than one W&B id."""
    found = []
    for path in Path(run_dir, "wandb").glob("offline-run-*"):
        match = SEGMENT.match(path.name)
        if match and path.is_dir():
            run_files = sorted(path.glob("run-*.wandb"))
            mtime = max((f.stat().st_mtime for f in run_files), default=path.stat().st_mtime)
            run_id = run_files[0].name[len("run-") : -len(".wandb")] if run_files else match.group(2)
            rest = match.group(2)[len(run_id) :] if match.group(2).startswith(run_id) else ""
            index = int(rest[1:]) if rest[1:].isdigit() else 0  # W&B's same-second suffix
            found.append((match.group(1), index, mtime, run_id, path))
    ids = {run_id for *_, run_id, _ in found}
    if len(ids) > 1:
        raise ValueError(
            f"{run_dir}: offline segments of several W&B runs ({', '.join(sorted(ids))}); "
            f"sync each run's folders separately"
        )
    return [path for *_, path in sorted(found, key=lambda item: item[:3])]


def wandb_sync_has_append() -> bool:
    """Whether the installed ``wandb sync`` accepts ``--append`` (W&B up to 0.29)."""
    from wandb.cli.cli import sync

    return any("--append" in getattr(param, "opts", ()) for param in sync.params)


def sync_commands(segments: list[Path], append: bool | None = None) -> list[str]:
    """Shell commands that upload ``segments`` (oldest first) as one W&B run; see the module docstring.

    ``append``: whether ``wandb sync --append`` exists (None: ask the installed W&B)."""
    if not segments:
        return []
    if append is None:
        append = wandb_sync_has_append()
    quoted = [shlex.quote(str(s)) for s in segments]
    if not append:
        return ["wandb sync " + " ".join(quoted)]
    return [f"wandb sync {quoted[0]}"] + [f"wandb sync --append {q}" for q in quoted[1:]]
