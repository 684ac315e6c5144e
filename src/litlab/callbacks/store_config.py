"""Store the resolved run config, and what inference needs of the data, inside every checkpoint."""

from typing import Any

import lightning as L


class StoreConfig(L.Callback):
    """Puts ``config`` (plain dicts and lists) under ``checkpoint["config"]``, and the data's input
    normalization and class names under ``checkpoint["data_info"]``.

    With them a checkpoint alone says how it was made: ``litlab-eval`` rebuilds the data from
    it, a reader needs no run directory, and predicting on files needs no training data.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        from litlab.checkpoint_data import data_info

        checkpoint["config"] = self.config
        if trainer.datamodule is not None:
            checkpoint["data_info"] = data_info(trainer.datamodule)
