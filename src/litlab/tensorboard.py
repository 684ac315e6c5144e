"""The run's TensorBoard loggers: where litlab writes what Lightning's scalars do not cover."""

from typing import Any


def tensorboard_loggers(trainer: Any) -> list[Any]:
    """The trainer's ``TensorBoardLogger``s (none with ``logger=none`` or ``logger=csv``)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
