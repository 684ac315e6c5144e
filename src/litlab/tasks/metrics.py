"""Epoch metrics accumulated on the device: one cheap update per step, one sync per epoch.

States are float32 so they also live on MPS (no float64 there); torchmetrics does the
device placement, the reset and the cross-rank sum under DDP.
"""

import torch
from torch import Tensor
from torchmetrics import Metric


class MeanMetric(Metric):
    """Weighted mean of per-batch values, without torchmetrics' per-call input checks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, value: Tensor, weight: int) -> None:
        # In place: `self.total += ...` would also re-assign the attribute through torchmetrics'
        # and nn.Module's __setattr__ (~2 us each, per step); add_ keeps the state's float32.
        self.total.add_(value.detach(), alpha=weight)
        self.count.add_(weight)

    def compute(self) -> Tensor:
        return self.total / self.count


class ClassificationMetrics(Metric):
    """Accuracy and macro-F1 from one confusion matrix (rows: true class, columns: predicted)."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        # One accumulating scatter into the flattened matrix, cell (true, pred): a third of the
        # cost of a one-hot product, and deterministic on CUDA, where bincount is not.
        cell = logits.argmax(dim=-1).add_(target, alpha=self.num_classes)
        one = torch.ones((), dtype=self.confusion.dtype, device=cell.device)
        self.confusion.view(-1).index_put_((cell,), one.expand(cell.shape), accumulate=True)

    def compute(self) -> dict[str, Tensor]:
        cm = self.confusion
        tp = cm.diag()
        support = cm.sum(0) + cm.sum(1)
        f1 = 2 * tp / support.clamp(min=1)
        # Macro-F1 over the classes that occur in the targets or the predictions.
        return {"acc": tp.sum() / cm.sum().clamp(min=1), "f1": f1[support > 0].mean()}


class RegressionMetrics(Metric):
    """Mean squared and mean absolute error over all targets."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("se", "ae", "n"):
            self.add_state(name, torch.zeros(()), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        diff = pred.detach().float() - target
        self.se.add_(diff.square().sum())
        self.ae.add_(diff.abs().sum())
        self.n.add_(diff.numel())

    def compute(self) -> dict[str, Tensor]:
        return {"mse": self.se / self.n, "mae": self.ae / self.n}
