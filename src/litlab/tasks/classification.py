"""Classification: cross-entropy, accuracy and macro-F1."""

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from litlab.tasks.base import Task
from litlab.tasks.metrics import ClassificationMetrics


class Classifier(Task):
    """Predicts one of ``num_classes`` classes; ``predict_step`` returns their probabilities."""

    name = "classification"
    data_keys = (*Task.data_keys, "num_classes")
    output = ("logits", "class logits: softmax gives probabilities")
    classes = "one"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        compile: bool = False,
        label_smoothing: float = 0.0,
        freeze: Sequence[str] = (),
    ) -> None:
        super().__init__(input_shape, num_classes, net, optimizer, scheduler, vocab_size, compile, freeze)
        self.label_smoothing = label_smoothing
        self.save_hyperparameters(logger=False)

    def make_metrics(self, num_outputs: int) -> nn.Module:
        return ClassificationMetrics(num_outputs)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def readout(self, output: Tensor) -> Tensor:
        return output.softmax(dim=-1)
