"""Batching: a rank-aware sampler, and loaders that resume mid-epoch (the fast path for tensors too)."""

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's order: distinct for every (seed, epoch), so that runs of seeds 1 and
    2 never share an order one epoch apart (as ``seed + epoch`` would)."""
    return (seed << 20) + epoch


class ShardSampler(Sampler[int]):
    """This rank's share of a (seeded, per-epoch) permutation of ``range(n)``.

    Training shards are padded by repeating the first indices so every rank runs the same
    number of steps (a rank with fewer would hang the gradient all-reduce); evaluation shards
    are exact, so no sample is counted twice in the reduced metrics.
    """

    def __init__(
        self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = False
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch, self.skip = 0, 0  # skip: indices already seen this epoch (a resumed loader's)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.pad and self.n % self.world_size:
            order = torch.cat([order, order[: self.world_size - self.n % self.world_size]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip :].tolist())

    def __len__(self) -> int:
        if self.pad:
            return -(-self.n // self.world_size)
        return len(range(self.rank, self.n, self.world_size))


class _ResumesMidEpoch:
    """How far a loader got into its epoch (``state_dict``), which Lightning keeps in checkpoints.

    The order is a function of (seed, epoch), so resuming is skipping the batches already seen.
    """

    sampler: Any
    _yielded, _resume_at = 0, None

    @property
    def _epoch(self) -> int:
        # Lightning swaps in a SequentialSampler under debug=overfit: no epochs, nothing to skip.
        return self.sampler.epoch if isinstance(self.sampler, ShardSampler) else 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (state["epoch"], state["batches"])

    def _batches_seen(self) -> int:
        """The batches of this epoch a resumed run has trained already (once: the resume is used up)."""
        resume, self._resume_at = self._resume_at, None
        return resume[1] if resume and resume[0] == self._epoch else 0


class TensorLoader(_ResumesMidEpoch):
    """Yields batches of in-memory tensors with one gather per tensor per batch.

    A drop-in for ``DataLoader`` where samples are rows of tensors: no per-sample
    ``__getitem__``, no collate, no worker processes, so the loop runs at the speed of
    indexing (the "fast path"). Lightning sets the epoch through ``sampler.set_epoch``.
    ``pin_memory`` gathers host tensors into page-locked memory, for training on a GPU.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        sampler: ShardSampler,
        batch_size: int,
        drop_last: bool = False,
        pin_memory: bool = False,
    ) -> None:
        self.tensors, self.sampler, self.pin_memory = tuple(tensors), sampler, pin_memory
        self.batch_sampler = None  # DataLoader's attributes, which Lightning inspects
        self.batch_size, self.drop_last = batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        index = self.sampler.indices().to(self.tensors[0].device)
        for i in range(self._batches_seen(), len(self)):
            self._yielded = i + 1
            batch = index[i * self.batch_size : (i + 1) * self.batch_size]
            yield tuple(self._gather(t, batch) for t in self.tensors)

    def _gather(self, t: Tensor, rows: Tensor) -> Tensor:
        if not self.pin_memory:
            return t[rows]
        # Straight into page-locked memory: a copy to the GPU from pageable memory would first
        # wait for the queued kernels. The caching host allocator keeps these buffers, and
        # reuses one only after the copy out of it has finished.
        out = torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
        return torch.index_select(t, 0, rows, out=out)


class ResumableDataLoader(_ResumesMidEpoch, DataLoader):
    """torch's ``DataLoader`` over a ``ShardSampler``, resumable mid-epoch as ``TensorLoader`` is.

    Random per-sample transforms in worker processes draw from the workers' own seeds, which a
    resumed epoch does not continue: such a run resumes, not exactly.
    """

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        # Each epoch's iterator draws its workers' base seed from this generator: drawn from the
        # global RNG, it would shift the dropout masks after a resume (the RNG is restored mid-epoch).
        super().__init__(*args, generator=torch.Generator().manual_seed(seed), **kwargs)

    def __iter__(self) -> Iterator[Any]:
        self._yielded = self._batches_seen()
        if isinstance(self.sampler, ShardSampler):
            self.sampler.skip = self._yielded * self.batch_size  # read once, as the epoch's order is drawn
        for batch in super().__iter__():
            self._yielded += 1
            yield batch
