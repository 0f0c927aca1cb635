"""A CSV logger that continues ``metrics.csv`` when a run is resumed (Lightning's deletes it)."""
from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
