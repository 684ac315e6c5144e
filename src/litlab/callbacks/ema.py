"""An exponential moving average of the weights, which validation, checkpoints and the test use."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, tested with the average that validation chose.

    Validation swaps the average in, and a checkpoint's ``state_dict`` holds the average (the raw
    weights go under ``current_model_state``, for resuming). Lightning's callback also loads those
    raw weights back whenever a checkpoint is read, so ``trainer.test(ckpt_path="best")`` after
    training would test them instead; outside fitting the checkpoint's average is left in place.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
