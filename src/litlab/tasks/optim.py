"""Optimizers and learning-rate schedules, built from plain config dicts."""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau

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


def _cosine(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05, min_lr_ratio: float = 0.0) -> dict:
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}


def _onecycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.3, **kwargs: Any) -> dict:
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return {
        "scheduler": OneCycleLR(optimizer, max_lr, total_steps=total_steps, pct_start=pct_start, **kwargs),
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


SCHEDULERS: dict[str, Callable[..., dict]] = {"cosine": _cosine, "onecycle": _onecycle, "plateau": _plateau}


def build_scheduler(optimizer: Optimizer, total_steps: int, name: str, **kwargs: Any) -> dict:
    """A Lightning ``lr_scheduler`` config for schedule ``name``; steps run over ``total_steps``."""
    if name not in SCHEDULERS:
        raise ValueError(f"model.scheduler.name={name!r} is not a schedule; choose one of {sorted(SCHEDULERS)} or null")
    return SCHEDULERS[name](optimizer, total_steps, **kwargs)
