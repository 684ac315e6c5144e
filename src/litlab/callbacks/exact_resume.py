"""Save what Lightning's checkpoint leaves out, so a resumed run continues bit for bit."""

import random
from typing import Any

import lightning as L
import numpy as np
import torch

from litlab.callbacks.metric_states import load_metric_states, metric_states


def rng_states() -> dict[str, Any]:
    """Every RNG a training step draws from, as tensors and plain containers (``weights_only`` loads them)."""
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


class ExactResume(L.Callback):
    """Puts the RNG states and the running epoch metrics under ``checkpoint["litlab_resume"]``.

    Lightning restores weights, optimizer, scheduler and loop counters but not the RNGs
    (dropout, augmentation) nor torchmetrics' accumulated states, which are not part of the
    ``state_dict``: without them a run resumed mid-epoch would draw other dropout masks and
    report that epoch's train metrics over the second half only. Nor the last validation's
    metrics: until the next validation a resumed run's ``every_n_train_steps`` checkpoints had
    no ``val/loss`` to rank by and were skipped (a run could end with no best checkpoint).
    """

    def __init__(self) -> None:
        self.callback_metrics: dict[str, torch.Tensor] = {}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        meters = metric_states(pl_module)
        held = {k: v.detach().cpu().clone() for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)}
        checkpoint["litlab_resume"] = {"rng": rng_states(), "meters": meters, "callback_metrics": held}
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each rank's meters hold its own share of the epoch so far: keep them all, each rank
            # takes its own back. Every rank saves together (Lightning checkpoints on all of them).
            by_rank: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(by_rank, _on_cpu(meters))
            checkpoint["litlab_resume"]["meters_by_rank"] = by_rank

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning hands the saved train-loader state (mid-epoch position) to the loader only if
        # the loader is first built after the restore; a scheduler that asks for
        # trainer.estimated_stepping_batches builds it before, and the state would be dropped.
        load = getattr(trainer.fit_loop, "_load_combined_loader_states", None)
        if load is not None:
            load()
        # Here, not on load: Lightning clears the metrics after the restore and after a sanity check.
        held = {k: v.to(pl_module.device) for k, v in self.callback_metrics.items()}
        trainer.callback_metrics.update({k: v for k, v in held.items() if k not in trainer.callback_metrics})

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("litlab_resume")
        if state is None:
            return
        set_rng_states(state["rng"])
        self.callback_metrics = state.get("callback_metrics", {})
        by_rank = state.get("meters_by_rank")
        own = by_rank is not None and len(by_rank) == trainer.world_size
        meters = by_rank[trainer.global_rank] if own else state["meters"]
        for metric in load_metric_states(pl_module, meters, pl_module.device):
            metric._update_count = max(metric._update_count, 1)


def _on_cpu(states: dict[str, Any]) -> dict[str, Any]:
    """Metric states with every tensor on the CPU (to gather them as objects, whatever the device)."""
    return {
        name: {k: [t.cpu() for t in v] if isinstance(v, list) else v.cpu() for k, v in values.items()}
        for name, values in states.items()
    }
