"""Peak memory per epoch in TensorBoard: the GPU's (allocated and reserved by torch) and the host's."""

import sys
from typing import Any

import lightning as L
import torch

try:
    import resource
except ImportError:  # Windows: no getrusage
    resource = None  # type: ignore[assignment]


class MemoryMonitor(L.Callback):
    """Logs ``memory/*`` in MB at each training epoch end, read once an epoch (no per-step cost).

    ``gpu_peak`` is the most torch allocated on this rank's GPU during the epoch (the number to
    watch when raising the batch size); ``gpu_reserved`` what its caching allocator holds;
    ``host_peak_rss`` the process's largest resident set so far. Rank 0's values are logged.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.loggers or not trainer.is_global_zero:
            return
        mb = 2**20
        values: dict[str, Any] = {}
        if pl_module.device.type == "cuda":
            values["memory/gpu_peak_mb"] = torch.cuda.max_memory_allocated(pl_module.device) / mb
            values["memory/gpu_reserved_mb"] = torch.cuda.memory_reserved(pl_module.device) / mb
        if resource is not None:
            # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
            values["memory/host_peak_rss_mb"] = peak / mb
        for logger in trainer.loggers:  # straight to the loggers: not a metric of the run's results
            logger.log_metrics(values, step=trainer.global_step)
