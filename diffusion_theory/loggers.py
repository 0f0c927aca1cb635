"""A CSV logger that continues ``metrics.csv`` when a run is resumed (Lightning's deletes it).

On resume, rows logged after the restored checkpoint was written (by the killed run, between its last
checkpoint and its death) are dropped before training continues, so every step appears once.
"""

from __future__ import annotations

import csv
import os

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only


class AppendingExperimentWriter(ExperimentWriter):
    """Keeps an existing metrics.csv and its columns; new rows are appended (new columns rewrite the header)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` directly in the run folder, kept across resumes."""

    def __init__(self, save_dir: str):
        super().__init__(save_dir=save_dir, name="", version="")

    @property
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def flushed_row_count(self) -> int:
        """Writes the buffered rows, then returns the number of data rows in metrics.csv."""
        self.save()
        path = self.experiment.metrics_file_path
        if not os.path.isfile(path):
            return 0
        with open(path, newline="") as f:
            return max(sum(1 for _ in csv.reader(f)) - 1, 0)

    @rank_zero_only
    def keep_first_rows(self, n: int) -> int:
        """Truncates metrics.csv to its first ``n`` data rows (atomic rewrite); returns the number dropped."""
        path = self.experiment.metrics_file_path
        if not os.path.isfile(path):
            return 0
        with open(path, newline="") as f:
            header, *rows = list(csv.reader(f))
        if len(rows) <= n:
            return 0
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows[:n]])
        os.replace(tmp, path)
        return len(rows) - n


class TrimMetricsOnResume(pl.Callback):
    """Every checkpoint records how many rows metrics.csv had when it was written; a fit resumed from it
    drops the rows logged after that (by the killed run, between its checkpoint and its death), so every
    metric appears once per step. (By step alone this cannot be told: Lightning logs the validation of step
    s and the training loss of the step after it both under ``step = s``.)"""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._restored_rows: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _csv_loggers(self) -> list[RunCSVLogger]:
        return [lg for lg in (self._trainer.loggers if self._trainer else []) if isinstance(lg, RunCSVLogger)]

    def state_dict(self) -> dict[str, int]:
        counts = [lg.flushed_row_count() for lg in self._csv_loggers()]  # None on ranks other than zero
        return {"metrics_csv_rows": counts[0]} if counts and counts[0] is not None else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._restored_rows = state_dict.get("metrics_csv_rows")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restored_rows is None:
            return
        for logger in self._csv_loggers():
            logger.keep_first_rows(self._restored_rows)
        self._restored_rows = None
