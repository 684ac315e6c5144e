"""The run's TensorBoard loggers: where litlab writes what Lightning's scalars do not cover."""

from typing import Any


def tensorboard_loggers(trainer: Any) -> list[Any]:
    """The trainer's ``TensorBoardLogger``s (none with ``logger=none`` or ``logger=csv``)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def logged_step(trainer: Any, epoch_end: bool = False) -> int:
    """The step Lightning logs the metrics of now at: a validation's, or (``epoch_end``) the training epoch's.

    Events of litlab's own at these steps sit beside the scalars they belong to, and before the
    step a resumed run purges from (``PurgeRepeatedSteps``): at ``global_step`` an epoch-end
    checkpoint's validation images were dropped on resume and never logged again.
    """
    step = trainer.fit_loop.epoch_loop._batches_that_stepped  # as Lightning's own LearningRateMonitor reads it
    return step - 1 if epoch_end else step
