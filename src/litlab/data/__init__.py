"""Datasets and LightningDataModules."""

from litlab.data.base import DataModule, split_tensors
from litlab.data.digits import DigitsDataModule
from litlab.data.loader import ShardSampler, TensorLoader

__all__ = ["DataModule", "DigitsDataModule", "ShardSampler", "TensorLoader", "split_tensors"]
