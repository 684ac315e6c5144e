"""A streaming ``IterableDataset`` that shards by rank, then by DataLoader worker, batch by batch.

Samples are numbered ``0..num_samples-1`` and cut into batches; batch ``b`` goes to rank
``b % world_size``, and within a rank its batches are dealt to the workers in turn. So no
sample is read twice and none is dropped. For training (``pad``), ranks that would run one
batch short repeat an early batch instead: under DDP every rank must take the same number of
steps or the gradient all-reduce hangs.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info


class StreamDataset(IterableDataset):
    """Yields ``source(indices)`` for this rank's and this worker's batches of sample indices.

    ``source`` makes a whole batch from a 1-D tensor of sample indices, deterministically, so a
    stream is reproducible however it is sharded.
    """

    def __init__(
        self, source: Callable[[Tensor], Any], num_samples: int, batch_size: int = 64, offset: int = 0
    ) -> None:
        self.source, self.num_samples, self.offset = source, num_samples, offset
        self.transform: Callable[[Tensor], Tensor] | None = None
        self.batch_size = batch_size
        self.shard()

    def shard(
        self,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
        pad: bool = False,
    ) -> None:
        """Set this copy's rank, world size, worker count and batching (the DataModule calls this)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        self.rank, self.world_size, self.num_workers = rank, world_size, max(num_workers, 1)
        self.batch_size = batch_size or self.batch_size
        self.drop_last, self.pad = drop_last, pad

    @property
    def num_batches(self) -> int:
        """Batches in the whole stream, over all ranks."""
        div = self.num_samples // self.batch_size
        return div if self.drop_last else math.ceil(self.num_samples / self.batch_size)

    def rank_batches(self) -> range:
        """Batch numbers of this rank; with ``pad`` past ``num_batches`` (they wrap around)."""
        stop = math.ceil(self.num_batches / self.world_size) * self.world_size if self.pad else self.num_batches
        return range(self.rank, stop, self.world_size)

    def worker_batches(self, worker: int) -> range:
        return self.rank_batches()[worker :: self.num_workers]

    def __len__(self) -> int:
        """Batches this rank yields (the DataLoader's length, as it batches nothing itself)."""
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(f"stream sharded for {self.num_workers} workers but the loader has {info.num_workers}")
        for b in self.worker_batches(worker):
            b %= self.num_batches
            stop = min((b + 1) * self.batch_size, self.num_samples)
            batch = self.source(torch.arange(b * self.batch_size, stop) + self.offset)
            if self.transform is not None:  # set by the DataModule from data.transforms
                batch = (self.transform(batch[0]), *batch[1:])
            yield batch
