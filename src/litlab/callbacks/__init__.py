"""Lightning callbacks that litlab adds to the ones Lightning ships."""

from litlab.callbacks.confusion_matrix import ConfusionMatrixImage
from litlab.callbacks.misclassified import MisclassifiedImages
from litlab.callbacks.store_config import StoreConfig

__all__ = ["ConfusionMatrixImage", "MisclassifiedImages", "StoreConfig"]
