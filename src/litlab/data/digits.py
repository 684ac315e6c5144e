"""scikit-learn's handwritten digits (8x8, 1797 images): the offline default dataset."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from litlab.data.base import DataModule, split_tensors
from litlab.data.transforms import Normalize


def digits_file() -> Path:
    """Path of ``digits.csv.gz`` inside the installed scikit-learn wheel.

    Found through the import system without importing scikit-learn, which would add
    about a second of start-up for a 60 kB file.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("data=digits needs scikit-learn installed: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-learn's digits data is missing: {path}")
    return path


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images as ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels as int64."""
    with gzip.open(digits_file()) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(table[:, :-1] / 16.0).view(-1, 1, 8, 8)
    return x, torch.from_numpy(table[:, -1]).long()


class DigitsDataModule(DataModule):
    """Digits standardised by the training split's mean and std; ``val_split``/``test_split``: fractions or counts."""

    tasks = ("classification",)

    def __init__(self, val_split: float = 0.1, test_split: float = 0.2, split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes, self.split_seed = (val_split, test_split), split_seed

    def load(self) -> list[TensorDataset]:
        splits = split_tensors(load_digits(), self.sizes, self.split_seed)
        x_train = splits[0].tensors[0]
        self.normalize = Normalize([float(x_train.mean())], [float(x_train.std())])
        return splits
