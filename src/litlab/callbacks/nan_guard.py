"""Stop (or skip the batch) on a NaN/inf loss before it reaches the weights; log gradient norms."""

import logging
import math
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric

log = logging.getLogger(__name__)

ACTIONS = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NanGuard(L.Callback):
    """Checks the loss before each backward pass; logs ``grad/norm`` every ``log_every_n_steps``.

    ``action=stop`` raises before the optimizer step, so the weights and every checkpoint on
    disk stay finite: the last good checkpoint is the newest one. ``action=skip`` drops the
    batch instead (its gradients and its share of the epoch metrics). The check costs one
    device-to-host sync per step.
    """

    def __init__(self, action: str = "stop", log_grad_norm: bool = True) -> None:
        if action not in ACTIONS:
            raise ValueError(f"callbacks.nan_guard.action={action!r}: choose one of {', '.join(ACTIONS)}")
        self.action, self.log_grad_norm = action, log_grad_norm
        self.skipping, self.skipped = False, 0
        self._meters: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.skipping = False
        if self.action == "skip":  # to take a skipped batch back out of the epoch metrics
            self._meters = {
                n: {k: getattr(m, k).clone() for k in m._defaults}
                for n, m in pl_module.named_modules()
                if isinstance(m, Metric)
            }

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if math.isfinite(loss.item()):  # Lightning's losses are scalars; .item() is the cheapest sync
            return
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {trainer.fit_loop.batch_idx})"
        if self.action == "stop":
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at {where}; stopped before the weights were updated. "
                f"Last good checkpoint: {last}. The grad/norm curve in TensorBoard shows how it built up; "
                f"callbacks.nan_guard.action=skip skips such batches instead."
            )
        self.skipping, self.skipped = True, self.skipped + 1
        log.warning(f"training loss is {loss.item()} at {where}: batch skipped ({self.skipped} so far)")
        modules = dict(pl_module.named_modules())
        for name, values in self._meters.items():
            for k, v in values.items():
                setattr(modules[name], k, v)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        log_norm = self.log_grad_norm and (trainer.global_step + 1) % trainer.log_every_n_steps == 0
        if not (self.skipping or log_norm):
            return
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        # 16-mixed: Lightning has unscaled the gradients by now, except for a fused optimizer,
        # which unscales them (and checks them for inf) inside its own step.
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        still_scaled = scaler is not None and optimizer.defaults.get("fused")
        if self.skipping:
            if still_scaled:  # its inf check skips the step (parameters without gradients would fail it)
                for g in grads:
                    g.fill_(math.nan)
            else:  # parameters without a gradient are left as they are
                optimizer.zero_grad(set_to_none=True)
        elif grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            pl_module.log(
                "grad/norm", norm / scaler.get_scale() if still_scaled else norm, on_step=True, on_epoch=False
            )
