"""Lightning's CSVLogger, with a resumed run's earlier rows kept in ``metrics.csv``."""

import csv
import os

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from litlab.runs import atomic_file


class _KeepingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep the file Lightning would delete (with a warning); its header is the keys logged so far."""
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class CSVLogger(LightningCSVLogger):
    """Appends to the run's ``metrics.csv`` instead of starting it again: a resume keeps the curves.

    What the interrupted run logged past its checkpoint is dropped at the resumed run's first
    step (``drop_rows_from``, called by ``PurgeRepeatedSteps``), as TensorBoard hides it.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment

    def drop_rows_from(self, step: int) -> None:
        """Remove the rows logged at ``step`` or later (and written to the file)."""
        path = self.experiment.metrics_file_path
        if not os.path.isfile(path):
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = reader.fieldnames or [], [r for r in reader if int(float(r["step"] or 0)) < step]
        with atomic_file(path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
