"""Synthetic data with a fixed seed: a random teacher's labels or targets, and token-sequence tasks.

Sample ``i`` depends only on ``(data_seed, i)``, so the in-memory and the streaming variants
read the same samples, and a stream sharded any way yields each sample exactly once.
Train, val and test are consecutive index ranges of that one sequence of samples.
"""

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from litlab.data.base import DataModule
from litlab.data.collate import pad_collate
from litlab.data.streaming import StreamDataset
from litlab.tasks import task_class

log = logging.getLogger(__name__)


def sample_generator(seed: int, i: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + i)


class Teacher:
    """A fixed random two-layer tanh network: the target it computes is learnable, not noise.

    The task reads its targets off the outputs (``Task.teacher_targets``): classification takes
    their argmax, multi-label the sign of each, regression the outputs plus optional gaussian
    ``noise``. A classifier's outputs are centred per class, so the classes come out roughly
    balanced (each label on for about half the samples).
    """

    def __init__(
        self, input_shape: Sequence[int], num_outputs: int, task: str, seed: int, hidden: int = 32, noise: float = 0.0
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        d = math.prod(input_shape)
        self.input_shape, self.task_cls, self.seed, self.noise = list(input_shape), task_class(task), seed, noise
        self.w1 = torch.randn(d, hidden, generator=g) / math.sqrt(d)
        self.w2 = torch.randn(hidden, num_outputs, generator=g) / math.sqrt(hidden)
        self.bias = torch.zeros(num_outputs)
        if self.task_cls.classes:
            self.bias = -self.net(torch.randn(4096, d, generator=g)).mean(0)

    def net(self, x: Tensor) -> Tensor:
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2 + self.bias

    def __call__(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        gens = [sample_generator(self.seed, int(i)) for i in indices]
        x = torch.stack([torch.randn(self.input_shape, generator=g) for g in gens])
        out = self.net(x)
        noise = torch.zeros_like(out)
        if self.noise and len(gens):  # after each x, from its own generator: skipping it changes no input
            noise = self.noise * torch.stack([torch.randn(out.shape[1], generator=g) for g in gens])
        return x, self.task_cls.teacher_targets(out, noise)

    def dataset(self, indices: Tensor) -> Dataset:
        return TensorDataset(*self(indices))


def _parity(tokens: Tensor, num_classes: int) -> int:
    return int((tokens == 1).sum()) % 2


def _count(tokens: Tensor, num_classes: int) -> int:
    return min(int((tokens == 1).sum()), num_classes - 1)


def _majority(tokens: Tensor, num_classes: int) -> int:
    return int(2 * (tokens == 1).sum() > len(tokens))


#: label of a token sequence (symbols ``1..vocab_size-1``; 0 is padding)
SEQUENCE_TASKS = {"parity": _parity, "count": _count, "majority": _majority}


class SequenceDataset(Dataset):
    """Variable-length ``(tokens, label)`` samples; batch them with ``pad_collate``."""

    def __init__(self, samples: list[tuple[Tensor, Tensor]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> Tensor:
        return torch.stack([label for _, label in self.samples])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.samples[i]


class Sequences:
    """Token sequences of random length in ``[min_len, max_len]``, labelled by a ``SEQUENCE_TASKS`` rule."""

    def __init__(self, kind: str, vocab_size: int, num_classes: int, min_len: int, max_len: int, seed: int) -> None:
        if kind not in SEQUENCE_TASKS:
            raise ValueError(f"data.kind={kind!r} is not a sequence task; choose one of {sorted(SEQUENCE_TASKS)}")
        if not 1 <= min_len <= max_len:
            raise ValueError(f"data.min_len={min_len} and data.max_len={max_len} must satisfy 1 <= min_len <= max_len")
        if vocab_size < 2:
            raise ValueError(f"data.vocab_size={vocab_size} must be >= 2 (token 0 is padding)")
        self.label, self.kind, self.num_classes = SEQUENCE_TASKS[kind], kind, num_classes
        self.vocab_size, self.min_len, self.max_len, self.seed = vocab_size, min_len, max_len, seed

    def samples(self, indices: Tensor) -> list[tuple[Tensor, Tensor]]:
        out = []
        for i in indices:
            g = sample_generator(self.seed, int(i))
            length = int(torch.randint(self.min_len, self.max_len + 1, (), generator=g))
            tokens = torch.randint(1, self.vocab_size, (length,), generator=g)
            out.append((tokens, torch.tensor(self.label(tokens, self.num_classes))))
        return out

    def __call__(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return pad_collate(self.samples(indices))

    def dataset(self, indices: Tensor) -> Dataset:
        return SequenceDataset(self.samples(indices))


class SyntheticDataModule(DataModule):
    """Teacher data in memory, or as a sharded stream (``streaming``): classification, multilabel or regression."""

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 500,
        num_test: int = 500,
        data_seed: int = 0,
        hidden: int = 32,
        noise: float = 0.0,
        streaming: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if streaming and self.shuffle:  # not silently: the config asked for it
            log.info("data.shuffle=true does not apply to a stream (data.streaming=true): it is read in its own order")
        sizes = {"num_train": num_train, "num_val": num_val, "num_test": num_test}
        for key, n in sizes.items():
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"data.{key}={n!r} must be a positive integer")
        self.sizes, self.data_seed, self.streaming = list(sizes.values()), data_seed, streaming
        self.hidden, self.noise = hidden, noise

    def source(self) -> Teacher | Sequences:
        key = task_class(self.task).size_key
        outputs = getattr(self, key)
        if not outputs:
            raise ValueError(f"data.task={self.task} needs data.{key}")
        return Teacher(self.input_shape, outputs, self.task, self.data_seed, self.hidden, self.noise)

    def load(self) -> list[Dataset]:
        source, start, splits = self.source(), 0, []
        for n in self.sizes:
            if self.streaming:
                splits.append(StreamDataset(source, n, self.batch_size, offset=start))
            else:
                splits.append(source.dataset(torch.arange(start, start + n)))
            start += n
        return splits


class SequenceDataModule(SyntheticDataModule):
    """Variable-length token sequences for the RNN and the Transformer; batches are ``(x, y, mask)``."""

    tasks = ("classification",)

    collate_fn = staticmethod(pad_collate)

    def __init__(self, kind: str = "parity", min_len: int = 4, max_len: int = 32, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind, self.min_len, self.max_len = kind, min_len, max_len

    def source(self) -> Sequences:
        if self.vocab_size is None or self.num_classes is None:
            raise ValueError("data=sequences needs data.vocab_size and data.num_classes")
        return Sequences(self.kind, self.vocab_size, self.num_classes, self.min_len, self.max_len, self.data_seed)
