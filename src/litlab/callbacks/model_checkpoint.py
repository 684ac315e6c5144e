"""Lightning's ModelCheckpoint, with ``last.ckpt`` kept at the newest epoch end."""

import lightning as L
from lightning.pytorch import callbacks


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Writes ``last.ckpt`` at every epoch end and validation, improved or not; none under ``fast_dev_run``.

    Lightning 2.6 writes ``last.ckpt`` at an epoch end only when a top-k file is saved there
    too, so once the monitored metric stops improving ``last.ckpt`` falls behind, and
    ``ckpt_path=last`` would silently train those epochs again.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning 2.6 writes last.ckpt here even under fast_dev_run, which promises no checkpoint.
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def _save_last_if_behind(self, trainer: L.Trainer) -> None:
        # Skipped when anything was saved at this step already (Lightning's last.ckpt included).
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
