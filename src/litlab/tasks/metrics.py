"""Epoch metrics accumulated on the device: one cheap update per step, one sync per epoch.

States are float32 so they also live on MPS (no float64 there), and stay float32 when the
task is cast (``Meters``); torchmetrics does the device placement, the reset and the
cross-rank sum under DDP.
"""

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric


def keeping_dtype(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``fn`` of a module's ``_apply`` (``.to``, ``.cuda``...) that moves a tensor but never changes its dtype."""

    def apply(t: Tensor) -> Tensor:
        out = fn(t)
        return out if out.dtype == t.dtype else t.to(out.device)

    return apply


class Meters(nn.ModuleDict):
    """The task's metrics: their states follow the task to a device, but not to another dtype.

    Lightning's ``16-true`` and ``bf16-true`` cast the whole module with ``.to(dtype)``, which
    torchmetrics passes on to the states (it stops only ``.half()``, ``.float()``, ``.type()``...);
    in bfloat16 a count stops at 256 (256 + 1 rounds to 256), and the test metrics were wrong.
    """

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> "Meters":
        return super()._apply(keeping_dtype(fn), recurse)


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
    #: Which way each metric improves: the mode a callback monitoring it needs.
    modes: ClassVar[dict[str, str]] = {"acc": "max", "f1": "max"}

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
    modes: ClassVar[dict[str, str]] = {"mse": "min", "mae": "min"}

    def __init__(self) -> None:
        super().__init__()
        for name in ("se", "ae", "n"):
            self.add_state(name, torch.zeros(()), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        diff = pred.detach().float() - target.view_as(pred)  # targets of one value may come as [B]
        self.se.add_(diff.square().sum())
        self.ae.add_(diff.abs().sum())
        self.n.add_(diff.numel())

    def compute(self) -> dict[str, Tensor]:
        return {"mse": self.se / self.n, "mae": self.ae / self.n}


class MultiLabelMetrics(Metric):
    """Label accuracy, exact-match (subset) accuracy and macro-F1 over labels; a label is on at p >= 0.5."""

    full_state_update = False
    modes: ClassVar[dict[str, str]] = {"acc": "max", "exact": "max", "f1": "max"}

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        for name in ("tp", "fp", "fn", "tn"):
            self.add_state(name, torch.zeros(num_labels), dist_reduce_fx="sum")
        self.add_state("exact", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("n", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        pred, true = logits.detach() >= 0, target >= 0.5  # logit 0 is probability 0.5
        for name, cells in (("tp", pred & true), ("fp", pred & ~true), ("fn", ~pred & true), ("tn", ~pred & ~true)):
            getattr(self, name).add_(cells.sum(0))
        self.exact.add_((pred == true).all(1).sum())
        self.n.add_(len(true))

    def compute(self) -> dict[str, Tensor]:
        support = 2 * self.tp + self.fp + self.fn
        f1 = 2 * self.tp / support.clamp(min=1)
        return {
            "acc": (self.tp + self.tn).sum() / (self.n * len(self.tp)).clamp(min=1),
            "exact": self.exact / self.n.clamp(min=1),
            # Over the labels that occur in the targets or the predictions, as the classifier's macro-F1.
            "f1": f1[support > 0].mean() if bool((support > 0).any()) else f1.new_zeros(()),
        }
