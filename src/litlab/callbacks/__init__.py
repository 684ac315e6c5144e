"""Lightning callbacks that litlab adds to the ones Lightning ships."""

from litlab.callbacks.step_timer import StepTimer
from litlab.callbacks.store_config import StoreConfig

__all__ = ["StepTimer", "StoreConfig"]
