"""A grid of misclassified test images in TensorBoard."""

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from litlab.callbacks.images import font
from litlab.tensorboard import tensorboard_loggers


def draw_grid(images: Tensor, labels: Sequence[str], size: int = 64, columns: int = 8) -> np.ndarray:
    """``(N, C, H, W)`` images, each scaled to its own range, in a grid with a caption under each."""
    from PIL import Image, ImageDraw

    rows = -(-len(images) // columns)
    caption = 16
    grid = Image.new("RGB", (columns * size, rows * (size + caption)), "white")
    draw, small = ImageDraw.Draw(grid), font(12)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        image = image.float()
        image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-8)
        pixels = (image.permute(1, 2, 0).expand(-1, -1, 3) * 255).byte().numpy()
        tile = Image.fromarray(np.ascontiguousarray(pixels)).resize((size - 4, size - 4), Image.NEAREST)
        x, y = (k % columns) * size, (k // columns) * (size + caption)
        grid.paste(tile, (x + 2, y + 2))
        draw.text((x + size / 2, y + size + 1), label, fill="black", font=small, anchor="mt")
    return np.asarray(grid)


def is_image_batch(x: Tensor) -> bool:
    return x.ndim == 4 and x.is_floating_point() and x.shape[1] in (1, 3)


class MisclassifiedImages(L.Callback):
    """Logs ``test/misclassified``: up to ``max_samples`` wrongly classified test images.

    Each is captioned ``true->predicted``. Only for image data (``(B, C, H, W)`` with 1 or 3
    channels) and classifiers; other runs are left alone. The predictions are recomputed
    per test batch until enough are found (the test step returns none).
    """

    def __init__(self, max_samples: int = 32) -> None:
        self.max_samples = max_samples
        self.found: list[tuple[Tensor, int, int]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.found = []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if len(self.found) >= self.max_samples or getattr(pl_module, "classes", None) != "one":
            return
        x, y, *mask = batch
        if not is_image_batch(x):
            return
        with torch.no_grad():
            pred = pl_module(x, *mask).argmax(dim=-1)
        for i in (pred != y).nonzero().flatten()[: self.max_samples - len(self.found)].tolist():
            self.found.append((x[i].cpu(), int(y[i]), int(pred[i])))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in tensorboard_loggers(trainer) if self.found and trainer.is_global_zero else []:
            images = torch.stack([x for x, _, _ in self.found])
            labels = [f"{t}->{p}" for _, t, p in self.found]
            grid = draw_grid(images, labels)
            logger.experiment.add_image("test/misclassified", grid, trainer.global_step, dataformats="HWC")
        self.found = []
