"""Multi-label classification: any number of ``num_labels`` labels per sample, one sigmoid each."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from litlab.tasks.base import Task
from litlab.tasks.metrics import MultiLabelMetrics


class MultiLabelClassifier(Task):
    """Targets are ``(B, num_labels)`` of 0/1 (or soft labels in [0, 1]); binary cross-entropy per label."""

    name = "multilabel"
    size_key = "num_labels"
    data_keys = (*Task.data_keys, size_key)
    output = ("logits", "label logits: a sigmoid gives each label's probability")
    classes = "any"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_labels: int,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        compile: bool = False,
        freeze: Sequence[str] = (),
        pos_weight: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(input_shape, num_labels, net, optimizer, scheduler, vocab_size, compile, freeze)
        if isinstance(pos_weight, Sequence) and len(pos_weight) != num_labels:
            raise ValueError(f"model.pos_weight has {len(pos_weight)} weights but data.num_labels={num_labels}")
        self.pos_weight = pos_weight
        self.save_hyperparameters(logger=False)

    @staticmethod
    def make_metrics(num_outputs: int) -> nn.Module:
        return MultiLabelMetrics(num_outputs)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        # pos_weight > 1 weighs the rare positives up (the usual fix for sparse labels).
        weight = None if self.pos_weight is None else output.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(output, target.to(output.dtype), pos_weight=weight)

    def readout(self, output: Tensor) -> Tensor:
        return output.sigmoid()

    @staticmethod
    def checked_targets(y: Tensor, where: str, size: int | None) -> Tensor:
        from litlab.data.arrays import check_finite

        y = y.float()
        check_finite(y, where)
        if y.dim() != 2 or y.shape[1] != size:
            raise ValueError(
                f"{where} must be one 0/1 entry per label and sample (shape [N, {size}] "
                f"for data.num_labels={size}), got {list(y.shape)}"
            )
        if len(y) and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"{where} holds values in [{y.min():g}, {y.max():g}]; labels lie in [0, 1]")
        return y

    @staticmethod
    def teacher_targets(scores: Tensor, noise: Tensor) -> Tensor:
        return (scores > 0).float()  # the noise is for values: a label stays the teacher's

    @staticmethod
    def prediction_columns(outputs: np.ndarray, classes: list[str] | None) -> tuple[dict, dict]:
        on = outputs >= 0.5
        labels = [";".join(c for c, o in zip(classes, row, strict=True) if o) for row in on]
        probs = {f"prob_{c}": outputs[:, i] for i, c in enumerate(classes)}
        return {"labels": on, "probs": outputs}, {"labels": labels, **probs}
