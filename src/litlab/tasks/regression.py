"""Regression: mean squared error loss, MSE and MAE metrics."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from litlab.tasks.base import Task
from litlab.tasks.metrics import RegressionMetrics


class Regressor(Task):
    """Predicts ``num_targets`` real values per sample; targets are ``(B, num_targets)`` floats."""

    name = "regression"
    size_key = "num_targets"
    data_keys = (*Task.data_keys, size_key)

    def __init__(
        self,
        input_shape: Sequence[int],
        num_targets: int,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        compile: bool = False,
        freeze: Sequence[str] = (),
    ) -> None:
        super().__init__(input_shape, num_targets, net, optimizer, scheduler, vocab_size, compile, freeze)
        self.save_hyperparameters(logger=False)

    @staticmethod
    def make_metrics(num_outputs: int) -> nn.Module:
        return RegressionMetrics()

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(output, target.view_as(output))

    @staticmethod
    def checked_targets(y: Tensor, where: str, size: int | None) -> Tensor:
        from litlab.data.arrays import check_finite

        y = y.float()
        check_finite(y, where)
        width = y[0].numel() if len(y) else 1
        if size is not None and width != size:
            raise ValueError(f"{where} has {width} targets per sample but data.num_targets={size}")
        return y

    @staticmethod
    def teacher_targets(scores: Tensor, noise: Tensor) -> Tensor:
        return scores + noise

    @staticmethod
    def prediction_columns(outputs: np.ndarray, classes: list[str] | None) -> tuple[dict, dict]:
        return {"outputs": outputs}, {f"output_{i}": outputs[:, i] for i in range(outputs.shape[1])}
