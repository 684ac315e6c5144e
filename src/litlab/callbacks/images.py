"""Drawing helpers for the image callbacks: PIL only, imported when first drawn."""

from typing import Any

import lightning as L


def tensorboard(trainer: L.Trainer) -> Any:
    """The run's TensorBoard ``SummaryWriter``, or None without a TensorBoard logger."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def font(size: int = 12) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
