"""Datasets and LightningDataModules."""

from litlab.data.arrays import ArraysDataModule, read_arrays
from litlab.data.base import DataModule, split_sizes, split_tensors
from litlab.data.digits import DigitsDataModule
from litlab.data.download import DownloadError, download
from litlab.data.loader import ShardSampler, TensorLoader
from litlab.data.mnist import MNISTDataModule, read_idx

__all__ = [
    "ArraysDataModule",
    "DataModule",
    "DigitsDataModule",
    "DownloadError",
    "MNISTDataModule",
    "ShardSampler",
    "TensorLoader",
    "download",
    "read_arrays",
    "read_idx",
    "split_sizes",
    "split_tensors",
]
