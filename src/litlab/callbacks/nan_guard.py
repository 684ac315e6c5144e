"""Stop (or skip the step) on a NaN/inf loss before it reaches the weights; log gradient norms."""

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
    """Checks each optimizer step's losses before the step; logs ``grad/norm`` every ``log_every_n_steps``.

    ``action=stop`` raises before the optimizer step, so the weights and every checkpoint on
    disk stay finite: the last good checkpoint is the newest one. ``action=skip`` drops the
    step instead (its gradients and its batches' share of the epoch metrics). Under DDP a
    non-finite loss on any rank counts on every rank, since the gradient all-reduce has spread
    it to all of them.

    On a CPU the check reads the loss (no sync there). On a GPU, reading it would empty the
    queue every step: instead the flag is copied to the host right after the forward pass,
    without blocking, and read before the optimizer step, waiting only for that copy while
    the backward pass is queued behind it. Under manual optimization, where any number of
    backward passes may come before each optimizer's step, each loss is read at its backward
    pass, and a non-finite one skips the next step of every optimizer.
    """

    def __init__(self, action: str = "stop", log_grad_norm: bool = True) -> None:
        if action not in ACTIONS:
            raise ValueError(f"callbacks.nan_guard.action={action!r}: choose one of {', '.join(ACTIONS)}")
        self.action, self.log_grad_norm = action, log_grad_norm
        self.skipped = 0
        self._meters: dict[str, dict[str, torch.Tensor]] = {}
        self._losses: list[tuple[int, torch.Tensor]] = []  # this optimizer step's (batch index, loss)s
        self._ok: torch.Tensor | None = None  # on the device: all of this step's losses finite (every rank)
        self._host: torch.Tensor | None = None  # ... and its pinned host copy, ready at ``_copied``
        self._copied: torch.cuda.Event | None = None
        self._to_skip: set[int] = set()  # manual optimization: the optimizers whose next step is dropped

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        # Mid-step (accumulating), unless this process has not seen the step's start (a resume).
        if idx % trainer.accumulate_grad_batches and self._losses:
            return
        self._losses, self._ok, self._copied = [], None, None
        if self.action == "skip":  # to take a skipped step's batches back out of the epoch metrics
            self._meters = {
                n: {k: getattr(m, k).clone() for k in m._defaults}
                for n, m in pl_module.named_modules()
                if isinstance(m, Metric)
            }

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._losses.append((trainer.fit_loop.batch_idx, loss))
        if not pl_module.automatic_optimization:
            self._ok = self._all_ranks(trainer, torch.isfinite(loss))
            if not self._ok.item():
                self._fault(trainer)  # before this backward pass: raises for action=stop
                self._to_skip = {id(o) for o in trainer.optimizers}
            return
        if not loss.is_cuda and trainer.world_size == 1:
            return  # read in on_before_optimizer_step: on a CPU .item() is no sync
        finite = self._all_ranks(trainer, torch.isfinite(loss))
        self._ok = finite if self._ok is None else self._ok & finite
        if loss.is_cuda:
            if self._host is None or self._host.dtype != self._ok.dtype:
                self._host = torch.empty((), dtype=self._ok.dtype, pin_memory=True)
            self._host.copy_(self._ok, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()

    @staticmethod
    def _all_ranks(trainer: L.Trainer, finite: torch.Tensor) -> torch.Tensor:
        """``finite`` and that of every other rank (Lightning's strategy.reduce would add a blocking barrier)."""
        if trainer.world_size == 1:
            return finite
        finite = finite.to(torch.int32)
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return finite

    def _finite(self) -> bool:
        """Whether every loss of this optimizer step (on every rank) was finite."""
        if self._copied is not None:
            self._copied.synchronize()
            return bool(self._host)
        if self._ok is not None:
            return bool(self._ok)
        return all(math.isfinite(loss.item()) for _, loss in self._losses)

    def _fault(self, trainer: L.Trainer) -> None:
        """Stop, or drop this step: its gradients, and its batches from the epoch metrics."""
        bad = [(i, v) for i, v in ((i, loss.item()) for i, loss in self._losses) if not math.isfinite(v)]
        batch, value = bad[0] if bad else (trainer.fit_loop.batch_idx, "non-finite on another rank")
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch})"
        if self.action == "stop":
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise NonFiniteLossError(
                f"training loss is {value} at {where}; stopped before the weights were updated. "
                f"Last good checkpoint: {last}. The grad/norm curve in TensorBoard shows how it built up; "
                f"callbacks.nan_guard.action=skip skips such steps instead."
            )
        self.skipped += 1
        log.warning(f"training loss is {value} at {where}: step skipped ({self.skipped} so far)")
        modules = dict(trainer.lightning_module.named_modules())
        for name, states in self._meters.items():
            for k, v in states.items():
                setattr(modules[name], k, v)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if pl_module.automatic_optimization:
            skipping = not self._finite()
            if skipping:
                self._fault(trainer)  # raises for action=stop
        else:
            skipping = id(optimizer) in self._to_skip
            self._to_skip.discard(id(optimizer))
        log_norm = self.log_grad_norm and (trainer.global_step + 1) % trainer.log_every_n_steps == 0
        if not (skipping or log_norm):
            return
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        # 16-mixed: Lightning has unscaled the gradients by now, except for a fused optimizer,
        # which unscales them (and checks them for inf) inside its own step.
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        still_scaled = scaler is not None and optimizer.defaults.get("fused")
        if skipping:
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
