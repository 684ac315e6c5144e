"""An exponential moving average of the weights, which validation, checkpoints and the test use."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, tested with the average that validation chose.

    Validation swaps the average in, and a checkpoint's ``state_dict`` holds the average (the raw
    weights go under ``current_model_state``, for resuming). Two things differ from Lightning's:

    - Lightning's callback loads the raw weights back whenever a checkpoint is read, so
      ``trainer.test(ckpt_path="best")`` after training would test them; outside fitting the
      checkpoint's average is left in place.
    - A run stopped during validation (preemption saves a checkpoint then) has the average
      swapped in: it is swapped back first, so the checkpoint does not trade the two.
    """

    swapped = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self.swapped = self._average_model is not None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.swapped:
            super().on_validation_epoch_end(trainer, pl_module)
            self.swapped = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Runs before litlab's Preemption callback saves: the callbacks group comes first.
        if self.swapped:
            self._swap_models(pl_module)
            self.swapped = False

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
