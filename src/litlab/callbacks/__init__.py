"""Lightning callbacks that litlab adds to the ones Lightning ships."""

from litlab.callbacks.confusion_matrix import ConfusionMatrixImage
from litlab.callbacks.ema import EMA
from litlab.callbacks.exact_resume import ExactResume
from litlab.callbacks.host_reads import HostReads
from litlab.callbacks.memory import MemoryMonitor
from litlab.callbacks.misclassified import MisclassifiedImages
from litlab.callbacks.model_checkpoint import ModelCheckpoint
from litlab.callbacks.nan_guard import NanGuard, NonFiniteLossError
from litlab.callbacks.preemption import Preemption
from litlab.callbacks.progress_bar import ProgressBar
from litlab.callbacks.purge_repeated_steps import PurgeRepeatedSteps
from litlab.callbacks.step_timer import StepTimer
from litlab.callbacks.store_config import StoreConfig

__all__ = [
    "EMA",
    "ConfusionMatrixImage",
    "ExactResume",
    "HostReads",
    "MemoryMonitor",
    "MisclassifiedImages",
    "ModelCheckpoint",
    "NanGuard",
    "NonFiniteLossError",
    "Preemption",
    "ProgressBar",
    "PurgeRepeatedSteps",
    "StepTimer",
    "StoreConfig",
]
