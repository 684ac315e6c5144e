"""Optimizers and learning-rate schedules, built from plain config dicts."""

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR, ReduceLROnPlateau

log = logging.getLogger(__name__)

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def build_optimizer(
    net: nn.Module, name: str, lr: float, weight_decay: float = 0.0, fused: bool | None = None, **kwargs: Any
) -> Optimizer:
    """Optimizer ``name`` over ``net``; weight decay skips biases and norm weights.

    ``fused=True`` takes torch's fused kernel (one launch for all parameters) when they are on
    CUDA; elsewhere it is ignored, so one config runs on a laptop and on the GPU.

    Decaying a bias or a LayerNorm/BatchNorm gain only fights the normalisation, so (as in
    nanoGPT) only tensors with two or more dimensions (weights of linear, conv and embedding
    layers) are decayed.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"model.optimizer.name={name!r} is not an optimizer; choose one of {sorted(OPTIMIZERS)}")
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused and all(p.is_cuda for p in params):
        kwargs["fused"] = True
    return OPTIMIZERS[name]([g for g in groups if g["params"]], lr=lr, **kwargs)


class _Resizable:
    """A schedule over a run's total steps that a resumed run may lengthen or shorten.

    Lightning restores a schedule's state on resume, and that state holds the total the
    checkpointed run planned. A run resumed with another ``trainer.max_epochs`` plans its own
    total, so the attributes in ``kept`` come from this run's config: the rest of the schedule
    follows the new length from the step reached (OneCycleLR would otherwise fail one step
    past the old end).
    """

    kept: tuple[str, ...] = ("total_steps",)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        planned = {k: self.__dict__[k] for k in self.kept}
        super().load_state_dict(state_dict)
        old, new = state_dict.get("total_steps", planned["total_steps"]), planned["total_steps"]
        if old != new:
            log.warning(
                f"model.scheduler: the checkpoint's {type(self).__name__} schedule ran over {old} steps, "
                f"this run has {new}; from step {self.last_epoch} on it follows the {new}-step schedule"
            )
        self.__dict__.update(planned)


class WarmupCosine(_Resizable, LRScheduler):
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to ``min_lr_ratio`` x lr."""

    kept = ("total_steps", "warmup_ratio", "min_lr_ratio")

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.0):
        self.total_steps, self.warmup_ratio, self.min_lr_ratio = total_steps, warmup_ratio, min_lr_ratio
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        warmup = int(self.warmup_ratio * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


class OneCycle(_Resizable, OneCycleLR):
    """torch's OneCycleLR; its phase boundaries are derived from the total, so they are kept too."""

    kept = ("total_steps", "_schedule_phases")


def _cosine(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.0) -> dict:
    return {"scheduler": WarmupCosine(optimizer, total_steps, warmup_ratio, min_lr_ratio), "interval": "step"}


def _onecycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.3, **kwargs: Any) -> dict:
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return {
        "scheduler": OneCycle(optimizer, max_lr, total_steps=total_steps, pct_start=pct_start, **kwargs),
        "interval": "step",
    }


def _plateau(
    optimizer: Optimizer,
    total_steps: int,
    monitor: str = "val/loss",
    mode: str = "min",
    factor: float = 0.5,
    patience: int = 2,
) -> dict:
    scheduler = ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)
    return {"scheduler": scheduler, "interval": "epoch", "monitor": monitor}


_onecycle.forwards_to = OneCycleLR  # type: ignore[attr-defined]  # where its **kwargs go (config checks read it)

SCHEDULERS: dict[str, Callable[..., dict]] = {"cosine": _cosine, "onecycle": _onecycle, "plateau": _plateau}
#: The settings of a schedule that a resumed run takes from its config (``_Resizable.kept``: the
#: shape of the schedule over the new total); the rest come back with the saved state.
FOLLOWED_ON_RESUME = {"cosine": ("warmup_ratio", "min_lr_ratio"), "onecycle": ("pct_start",)}


def build_scheduler(optimizer: Optimizer, total_steps: int, name: str, **kwargs: Any) -> dict:
    """A Lightning ``lr_scheduler`` config for schedule ``name``; steps run over ``total_steps``."""
    if name not in SCHEDULERS:
        raise ValueError(f"model.scheduler.name={name!r} is not a schedule; choose one of {sorted(SCHEDULERS)} or null")
    return SCHEDULERS[name](optimizer, total_steps, **kwargs)
