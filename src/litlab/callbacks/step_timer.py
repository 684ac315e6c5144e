"""Wall-clock timestamps of a run's training, for benchmarks: first step, epochs, per-step losses."""

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from litlab.runs import write_json_atomic


class StepTimer(L.Callback):
    """Writes ``{"first_step", "epoch_starts", "fit_end", "steps", "losses", "gpu_peak_mb"}`` to ``path`` at train end.

    Times are ``time.time()`` so another process (the benchmark that started this one) can
    subtract its own clock; ``epoch_cpu``/``fit_end_cpu`` are this process's CPU time, which
    other processes on a shared machine disturb less than the wall clock. ``record_losses``
    keeps each training step's loss (a device sync per step: for parity checks, not timing).
    On a GPU each mark first waits for the queued work, so an epoch's time is the GPU's too.
    """

    def __init__(self, path: str, record_losses: bool = False) -> None:
        self.path, self.record_losses = Path(path), record_losses
        self.first_step: float | None = None
        self.epoch_starts: list[float] = []
        self.epoch_cpu: list[float] = []
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wait_for(pl_module.device)
        self.epoch_starts.append(time.time())
        self.epoch_cpu.append(time.process_time())

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if self.first_step is None:
            self.first_step = time.time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.record_losses:
            self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here, not at fit end: the last epoch's time is then its steps, validation and checkpoint,
        # like the others', without the logger's closing and Lightning's teardown, which has also
        # moved the net off the GPU by fit end (its peak memory would read as None).
        if not trainer.is_global_zero:
            return
        wait_for(pl_module.device)
        summary = {
            "first_step": self.first_step,
            "epoch_starts": self.epoch_starts,
            "fit_end": time.time(),
            "epoch_cpu": self.epoch_cpu,
            "fit_end_cpu": time.process_time(),
            "steps": trainer.global_step,
            "losses": self.losses,
            "gpu_peak_mb": gpu_peak_mb(pl_module.device),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, summary)


def wait_for(device: torch.device | str) -> None:
    """Wait for the work queued on a GPU, so that a wall-clock mark means it is done; no-op elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_peak_mb(device: torch.device | str) -> float | None:
    """The most memory torch's allocator held on a GPU since the process started, in MiB; None elsewhere."""
    device = torch.device(device)
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
