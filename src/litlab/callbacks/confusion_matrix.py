"""The validation confusion matrix as an image in TensorBoard."""

from typing import Any

import lightning as L
import numpy as np

from litlab.callbacks.images import font
from litlab.tensorboard import logged_step, tensorboard_loggers


def draw_confusion_matrix(cm: np.ndarray, cell: int = 28) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 heat map: rows true class, columns predicted, counts in the cells.

    Each row is shaded by its share of the row (the per-class recall), so a class with few
    samples is as visible as a large one.
    """
    from PIL import Image, ImageDraw

    n = len(cm)
    margin = 40
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    img = Image.new("RGB", (margin + n * cell + 4, margin + n * cell + 4), "white")
    draw, small = ImageDraw.Draw(img), font(max(8, cell // 3))
    for i in range(n):
        for j in range(n):
            x, y = margin + j * cell, margin + i * cell
            shade = int(255 * (1 - share[i, j]))
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255))
            if n <= 30:  # past that the numbers no longer fit
                ink = "white" if share[i, j] > 0.5 else "black"
                draw.text((x + cell / 2, y + cell / 2), str(int(cm[i, j])), fill=ink, font=small, anchor="mm")
        draw.text((margin - 4, margin + i * cell + cell / 2), str(i), fill="black", font=small, anchor="rm")
        draw.text((margin + i * cell + cell / 2, margin - 4), str(i), fill="black", font=small, anchor="mb")
    draw.text((2, 2), "rows: true\ncols: predicted", fill="black", font=font(10))
    return np.asarray(img)


class ConfusionMatrixImage(L.Callback):
    """Logs ``val/confusion_matrix`` at the end of every ``every_n_epochs``-th validation.

    Reads the classifier's epoch confusion matrix (``meters["val_metrics"].confusion``):
    Lightning runs callbacks' epoch-end hooks before the module's, which resets it. Tasks
    without one (regression) are skipped.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric: Any = getattr(getattr(pl_module, "meters", None), "val_metrics", None)
        if trainer.sanity_checking or not hasattr(metric, "confusion"):
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        # Summed over ranks under DDP: every rank must take part in the sync.
        with metric.sync_context(should_sync=trainer.world_size > 1):
            cm = metric.confusion.detach().cpu().numpy().copy()  # float32 under any precision (Meters)
        for logger in tensorboard_loggers(trainer) if trainer.is_global_zero else []:
            image = draw_confusion_matrix(cm)
            logger.experiment.add_image("val/confusion_matrix", image, logged_step(trainer), dataformats="HWC")
