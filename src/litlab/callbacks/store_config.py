"""Store the resolved run config inside every checkpoint."""

from typing import Any

import lightning as L


class StoreConfig(L.Callback):
    """Puts ``config`` (plain dicts and lists) under ``checkpoint["config"]``.

    With it a checkpoint alone says how it was made: ``litlab-eval`` rebuilds the data
    from it, and a reader needs no run directory.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["config"] = self.config
