"""Lightning callbacks that litlab adds to the ones Lightning ships."""

from litlab.callbacks.exact_resume import ExactResume
from litlab.callbacks.nan_guard import NanGuard, NonFiniteLossError
from litlab.callbacks.preemption import Preemption
from litlab.callbacks.store_config import StoreConfig

__all__ = ["ExactResume", "NanGuard", "NonFiniteLossError", "Preemption", "StoreConfig"]
