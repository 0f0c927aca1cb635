"""A run's output shows what matters: known, expected notices of the libraries are dropped, precisely.

Dropped at every start (``silence_known_notices``, called by ``DiffusionCLI`` on every process):
- Lightning's "Tip: ... try installing litlogger" advertisement (an INFO record, every start);
- Lightning's "Your `IterableDataset` has `__len__` defined ... (when num_workers > 1)": our data modules read
  their streams with ``num_workers=0`` (``datamodules/streams.py``), where the length is exact;
- LightningCLI's "`DiffusionModule.configure_optimizers` will be overridden": its ``configure_optimizers`` is
  only the fallback for configs without an ``optimizer:`` section (the same notice for another model is kept).
Every other warning is kept, including W&B's "The anonymous setting has no effect" (Lightning's ``WandbLogger``
always passes ``anonymous=None`` to ``wandb.init``): dropping that argument made W&B finish writing the offline
file of a second run in the same process only after ``finish()`` returned (tests/test_fit_cli.py read it empty),
so the line stays until Lightning stops passing it. (The "recommended to use sync_dist=True" warnings of the diagnostics are not
filtered: their values are logged as already synced, ``callbacks/diagnostic.py``.)
"""

from __future__ import annotations

import logging
import re
import warnings

LITLOGGER_TIP = "Tip: For seamless cloud logging and experiment tracking"


class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return LITLOGGER_TIP not in record.getMessage()


_TIP_FILTER = _DropLitLoggerTip()


def silence_known_notices() -> None:
    """Installs the filters listed in the module docstring (idempotent)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_TIP_FILTER)
    warnings.filterwarnings("ignore", message=re.escape("Your `IterableDataset` has `__len__` defined."))
    warnings.filterwarnings(
        "ignore",
        message=re.escape(
            "`DiffusionModule.configure_optimizers` will be overridden by `DiffusionCLI.configure_optimizers`."
        ),
    )
