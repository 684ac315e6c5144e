"""Stop (or skip the step) on a NaN/inf loss before it reaches the weights; log gradient norms."""

import logging
import math
from typing import Any

import lightning as L
import torch

from litlab.callbacks.metric_states import States, load_metric_states, metric_states

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
    the backward pass is queued behind it.

    Under manual optimization any number of backward passes may come before each optimizer's
    step, so each loss is read at its backward pass (a sync on a GPU). ``stop`` raises there;
    with ``skip``, each optimizer's next step is dropped if its gradients are not finite, and
    the batch's metric updates are taken back at its end.
    """

    def __init__(self, action: str = "stop", log_grad_norm: bool = True) -> None:
        if action not in ACTIONS:
            raise ValueError(f"callbacks.nan_guard.action={action!r}: choose one of {', '.join(ACTIONS)}")
        self.action, self.log_grad_norm = action, log_grad_norm
        self.skipped = 0  # optimizer steps dropped
        self._meters: States = {}
        self._in_step = False  # between the first batch of an optimizer step and its end
        self._losses: list[tuple[int, torch.Tensor]] = []  # this optimizer step's (batch index, loss)s
        self._ok: torch.Tensor | None = None  # on the device: all of this step's losses finite (every rank)
        self._host: torch.Tensor | None = None  # ... and its pinned host copy, ready at ``_copied``
        self._copied: torch.cuda.Event | None = None
        self._fault = ""  # the last non-finite loss, for the messages
        self._to_check: set[int] = set()  # manual optimization: optimizers whose next step checks its gradients
        self._take_back = False  # manual optimization: restore the metrics at this batch's end

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_step, self._to_check, self._take_back = False, set(), False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        # A step's first batch; after a resume, the first batch this process sees.
        if idx % trainer.accumulate_grad_batches and self._in_step:
            return
        self._in_step = True
        self._losses, self._ok, self._copied = [], None, None
        if self.action == "skip":  # to take a skipped step's batches back out of the epoch metrics
            self._meters = metric_states(pl_module)

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._losses.append((trainer.fit_loop.batch_idx, loss))
        if not pl_module.automatic_optimization:
            if not self._all_ranks(trainer, torch.isfinite(loss)).item():
                self._fault = self._describe(trainer)
                self._stop(trainer)
                self._to_check = {id(o) for o in trainer.optimizers}
                self._take_back = True
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

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._take_back:
            load_metric_states(pl_module, self._meters)
            self._take_back = False

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

    def _describe(self, trainer: L.Trainer) -> str:
        bad = [(i, v) for i, v in ((i, loss.item()) for i, loss in self._losses) if not math.isfinite(v)]
        batch, value = bad[0] if bad else (trainer.fit_loop.batch_idx, "non-finite on another rank")
        return f"training loss is {value} at step {trainer.global_step} (epoch {trainer.current_epoch}, batch {batch})"

    def _stop(self, trainer: L.Trainer) -> None:
        if self.action == "stop":
            last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise NonFiniteLossError(
                f"{self._fault}; stopped before the weights were updated. Last good checkpoint: {last}. "
                f"The grad/norm curve in TensorBoard shows how it built up; "
                f"callbacks.nan_guard.action=skip skips such steps instead."
            )

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if pl_module.automatic_optimization:
            skipping = not self._finite()
            if skipping:
                self._fault = self._describe(trainer)
                self._stop(trainer)
                load_metric_states(pl_module, self._meters)
        else:  # only after a non-finite loss: is it in this optimizer's gradients (or zeroed since)?
            skipping = id(optimizer) in self._to_check and not _finite_grads(optimizer)
            self._to_check.discard(id(optimizer))
        self._in_step = False
        if skipping:
            self.skipped += 1
            log.warning(f"{self._fault}: step skipped ({self.skipped} so far)")
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


def _finite_grads(optimizer: torch.optim.Optimizer) -> bool:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
