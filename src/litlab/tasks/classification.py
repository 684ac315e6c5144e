"""Classification: cross-entropy, accuracy and macro-F1."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from litlab.tasks.base import Task
from litlab.tasks.metrics import ClassificationMetrics


def checked_weights(weights: Sequence[float] | str, num_classes: int) -> list[float]:
    """``model.class_weights`` as a list of ``num_classes`` non-negative floats; ``ValueError`` otherwise."""
    numbers = not isinstance(weights, str) and all(
        isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in weights
    )
    if not numbers:
        raise ValueError(f"model.class_weights={weights}: give 'balanced' or one non-negative number per class")
    if len(weights) != num_classes:
        raise ValueError(f"model.class_weights has {len(weights)} weights but data.num_classes={num_classes}")
    if not any(weights):
        raise ValueError("model.class_weights are all 0: no sample would count in the loss")
    return [float(w) for w in weights]


def balanced_weights(datamodule: Any, num_classes: int) -> list[float]:
    """``n / (num_classes * count)`` per class of the training split: each class weighs the same in the loss."""
    from litlab.data.base import dataset_labels

    labels = None
    if datamodule is not None and "train" in getattr(datamodule, "splits", {}):
        labels = dataset_labels(datamodule.splits["train"])
    if labels is None:
        raise ValueError(
            "model.class_weights=balanced needs the training labels, which this data does not list "
            "(a stream, or a custom dataset without .labels); give the weights as a list"
        )
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes)
    if (counts == 0).any():
        missing = counts.eq(0).nonzero().flatten().tolist()
        raise ValueError(f"model.class_weights=balanced: class(es) {missing} have no training samples")
    return (len(labels) / (num_classes * counts.double())).tolist()


class Classifier(Task):
    """Predicts one of ``num_classes`` classes; ``predict_step`` returns their probabilities."""

    name = "classification"
    size_key = "num_classes"
    data_keys = (*Task.data_keys, size_key)
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
        class_weights: Sequence[float] | str | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes, net, optimizer, scheduler, vocab_size, compile, freeze)
        self.label_smoothing = label_smoothing
        self.save_hyperparameters(logger=False)
        if class_weights is not None and class_weights != "balanced":
            class_weights = checked_weights(class_weights, num_classes)
        # A plain tensor, not a buffer: the weights live in the hyperparameters (state_dict keys
        # stay net.*), and weight averaging (EMA) must neither average nor swap them.
        self.loss_weight = torch.tensor(class_weights) if isinstance(class_weights, list) else None

    def setup(self, stage: str) -> None:
        # class_weights=balanced: from the training labels, then recorded as numbers, so the
        # checkpoint's test, eval and predict use the same weights without the data.
        if stage == "fit" and self.hparams.class_weights == "balanced":
            weights = balanced_weights(self.trainer.datamodule, self.num_outputs)
            self.hparams.class_weights = weights
            self.loss_weight = torch.tensor(weights)

    @staticmethod
    def make_metrics(num_outputs: int) -> nn.Module:
        return ClassificationMetrics(num_outputs)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        weight = self.loss_weight
        if weight is not None:
            if weight.device != output.device:
                weight = self.loss_weight = weight.to(output.device)  # once: then it stays there
            # float32 under autocast, which computes the loss in float32 (in float16 a weight
            # above 65504 would be inf); the output's own type otherwise (64-true, bf16-true).
            if not torch.is_autocast_enabled(output.device.type):
                weight = weight.to(output.dtype)
        return F.cross_entropy(output, target, weight=weight, label_smoothing=self.label_smoothing)

    def readout(self, output: Tensor) -> Tensor:
        return output.softmax(dim=-1)

    @staticmethod
    def checked_targets(y: Tensor, where: str, size: int | None) -> Tensor:
        # Their range, [0, num_classes), is DataModule.check's: it sees every dataset's labels.
        if y.dim() != 1:
            raise ValueError(f"{where} must be one class label per sample (shape [N]), got {list(y.shape)}")
        if y.is_floating_point() and not torch.equal(y, y.round()):  # NaN fails this too
            bad = y[y != y.round()][0].item()
            raise ValueError(f"{where} holds {bad} among its class labels; labels are whole numbers")
        return y.long()

    @staticmethod
    def teacher_targets(scores: Tensor, noise: Tensor) -> Tensor:
        return scores.argmax(1)  # the noise is for values: a label stays the teacher's

    @staticmethod
    def prediction_columns(outputs: np.ndarray, classes: list[str] | None) -> tuple[dict, dict]:
        k = outputs.argmax(1)
        probs = {f"prob_{c}": outputs[:, i] for i, c in enumerate(classes)}
        return {"class": k, "probs": outputs}, {"class": k, "label": [classes[i] for i in k], **probs}
