"""Datasets and LightningDataModules."""

from litlab.data.arrays import ArraysDataModule, read_arrays
from litlab.data.base import DataModule, split_sizes, split_tensors
from litlab.data.cifar import CIFAR10DataModule
from litlab.data.collate import pad_collate
from litlab.data.digits import DigitsDataModule
from litlab.data.download import DownloadError, download
from litlab.data.folder import FolderDataModule, FolderDataset
from litlab.data.loader import ShardSampler, TensorLoader
from litlab.data.mnist import MNISTDataModule, read_idx
from litlab.data.streaming import StreamDataset
from litlab.data.synthetic import SequenceDataModule, SyntheticDataModule
from litlab.data.transforms import TRANSFORMS

__all__ = [
    "TRANSFORMS",
    "ArraysDataModule",
    "CIFAR10DataModule",
    "DataModule",
    "DigitsDataModule",
    "DownloadError",
    "FolderDataModule",
    "FolderDataset",
    "MNISTDataModule",
    "SequenceDataModule",
    "ShardSampler",
    "StreamDataset",
    "SyntheticDataModule",
    "TensorLoader",
    "download",
    "pad_collate",
    "read_arrays",
    "read_idx",
    "split_sizes",
    "split_tensors",
]
