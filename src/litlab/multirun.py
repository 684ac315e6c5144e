"""Hydra callback that lets a sweep's own config resolve ``${hydra:...}``."""

from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepHydraConfig(Callback):
    """Set ``HydraConfig`` in the process that starts a sweep, as Hydra does for a single run.

    ``hydra.sweep.dir`` is ``${paths.log_dir}/...`` and ``paths.root_dir`` is
    ``${hydra:runtime.cwd}``; Hydra resolves the sweep directory before any job has set
    ``HydraConfig``, so without this every multirun fails with "HydraConfig was not set".
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
