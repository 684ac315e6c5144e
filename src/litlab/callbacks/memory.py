"""Peak memory per epoch in TensorBoard: the GPU's (allocated and reserved by torch) and the host's."""

import sys
from typing import Any

import lightning as L
import torch

from litlab.tensorboard import logged_step

try:
    import resource
except ImportError:  # Windows: no getrusage
    resource = None  # type: ignore[assignment]


class MemoryMonitor(L.Callback):
    """Logs ``memory/*`` in MB at each training epoch end, read once an epoch (no per-step cost).

    ``gpu_peak`` is the most torch has allocated on this rank's GPU so far (the number to watch
    when raising the batch size); ``gpu_reserved`` what its caching allocator holds now;
    ``host_peak_rss`` the process's largest resident set so far. Rank 0's values are logged.
    The peaks are never reset: other readers of them (the benchmark) see the whole run's.
    """

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
            logger.log_metrics(values, step=logged_step(trainer, epoch_end=True))
