"""A run's output shows what matters: known, expected notices of the libraries are dropped, precisely.

Dropped at every start (``silence_known_notices``, called by ``DiffusionCLI`` on every process):
- Lightning's "Tip: ... try installing litlogger" advertisement (an INFO record, every start);
- Lightning's "Your `IterableDataset` has `__len__` defined ... (when num_workers > 1)": our data modules read
  their streams with ``num_workers=0`` (``datamodules/streams.py``), where the length is exact;
- LightningCLI's "`DiffusionModule.configure_optimizers` will be overridden": its ``configure_optimizers`` is
  only the fallback for configs without an ``optimizer:`` section (the same notice for another model is kept).
``without_unset_wandb_settings`` removes the ``anonymous=None`` that Lightning's ``WandbLogger`` always passes to
``wandb.init``, which W&B >= 0.2x answers with "The anonymous setting has no effect" on every start.
Every other warning is kept. (The "recommended to use sync_dist=True" warnings of the diagnostics are not
filtered: their values are logged as already synced, ``callbacks/diagnostic.py``.)
"""
from __future__ import annotations

import logging
import re
import warnings

from lightning.pytorch.loggers import WandbLogger

LITLOGGER_TIP = "Tip: For seamless cloud logging and experiment tracking"


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return LITLOGGER_TIP not in record.getMessage()


_TIP_FILTER = _DropLitLoggerTip()


def silence_known_notices() -> None:
    """Installs the filters listed in the module docstring (idempotent)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_TIP_FILTER)
    warnings.filterwarnings("ignore", message=re.escape("Your `IterableDataset` has `__len__` defined."))
    warnings.filterwarnings("ignore", message=re.escape(
        "`DiffusionModule.configure_optimizers` will be overridden by `DiffusionCLI.configure_optimizers`."))


def without_unset_wandb_settings(logger: WandbLogger) -> WandbLogger:
    """Drops ``anonymous`` from the logger's ``wandb.init`` arguments when it is unset (None)."""
    if logger._wandb_init.get("anonymous", ...) is None:
        del logger._wandb_init["anonymous"]
    return logger
