"""The LightningDataModule every dataset shares: splits, loaders and the model's I/O shape."""

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from litlab.data.loader import ResumableDataLoader, ShardSampler, TensorLoader
from litlab.data.transforms import Compose, Normalize, TransformDataset, compose


class DataModule(L.LightningDataModule):
    """Subclasses implement ``load()`` returning the train, val and test datasets.

    ``task``, ``input_shape``, ``num_classes``/``num_labels``/``num_targets`` and ``vocab_size`` describe the
    data to the model; they live in the data config so a model config never repeats them.
    A split that is a ``TensorDataset`` takes the fast path (``TensorLoader``); any other
    dataset goes through a ``DataLoader``. Both shard by rank themselves, which is why the
    trainer configs set ``use_distributed_sampler: false``.
    """

    collate_fn: Callable[[list[Any]], Any] | None = None
    #: A ``Normalize`` that ``load()`` built from its training split (MNIST, digits): applied once to the
    #: in-memory splits, before ``transforms``; predict and export read it as they read a configured one.
    normalize: Normalize | None = None
    #: The ``data.task`` values this data has targets for; None: any (the subclass checks its targets).
    tasks: tuple[str, ...] | None = None

    def __init__(
        self,
        task: str = "classification",
        input_shape: Sequence[int] = (),
        num_classes: int | None = None,
        num_targets: int | None = None,
        num_labels: int | None = None,
        vocab_size: int | None = None,
        classes: Sequence[str] | None = None,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        drop_last: bool = False,
        shuffle: bool = True,
        seed: int | None = 0,
        on_device: bool = False,
        transforms: Sequence[Mapping[str, Any]] | None = None,
        batch_transforms: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be a positive integer")
        if self.tasks is not None and task not in self.tasks:
            raise ValueError(f"data.task={task}: {type(self).__name__} has targets for {', '.join(self.tasks)} only")
        self.task, self.input_shape = task, list(input_shape)
        self.num_classes, self.num_targets, self.vocab_size = num_classes, num_targets, vocab_size
        self.num_labels = num_labels
        # Per sample (in the loader's workers) and per batch (on the device, after transfer).
        self.transforms, self.batch_transforms = checked_transforms(
            classes, num_classes, num_labels, vocab_size, transforms, batch_transforms
        )
        #: Names of the classes (or labels), in output order; None: their numbers. Predictions and exports show them.
        self.classes = [str(c) for c in classes] if classes is not None else None
        self.data_dir = data_dir
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.loader_kwargs = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
            "prefetch_factor": prefetch_factor if num_workers > 0 else None,
        }
        self.drop_last, self.seed = drop_last, seed or 0
        self.shuffle = shuffle  # the training split's; evaluation is never shuffled
        self.splits: dict[str, Dataset] = {}
        self.on_device = on_device

    def load(self) -> tuple[Dataset, Dataset, Dataset]:
        """The train, val and test datasets."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        if not self.splits:
            self.splits = dict(zip(("train", "val", "test"), self.load(), strict=True))
            for split, dataset in self.splits.items():
                self.check(split, dataset)
            self.splits = {split: self.prepare(split, dataset) for split, dataset in self.splits.items()}

    def prepare(self, split: str, dataset: Dataset) -> Dataset:
        """Normalize (``normalize``) and move (``on_device``) in-memory tensors once, or wrap per-sample transforms."""
        if self.normalize is not None:
            if not isinstance(dataset, TensorDataset):
                raise TypeError(
                    f"{type(self).__name__}.normalize normalizes in-memory splits (TensorDataset), not a "
                    f"{type(dataset).__name__}: put the Normalize in data.transforms or data.batch_transforms instead"
                )
            x, *rest = dataset.tensors
            dataset = TensorDataset(self.normalize(x), *rest)
        transform = self.transforms and self.transforms.select(train=split == "train")
        if transform and isinstance(dataset, IterableDataset):
            dataset.transform = transform  # a stream yields batches: its worker transforms each whole
        elif transform:
            return TransformDataset(dataset, transform)
        if self.on_device and isinstance(dataset, TensorDataset) and self.trainer is not None:
            return TensorDataset(*(t.to(self.trainer.strategy.root_device) for t in dataset.tensors))
        return dataset

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Batches of the fast path on the CPU (or of data.on_device) are already there: skip
        # Lightning's walk over the collection, some 30 us a step.
        if isinstance(batch, tuple | list) and all(isinstance(t, Tensor) and t.device == device for t in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self.batch_transforms:
            return batch
        x, *rest = batch
        return (self.batch_transform(x, train=bool(self.trainer and self.trainer.training)), *rest)

    def batch_transform(self, x: Tensor, train: bool) -> Tensor:
        """``x`` after the batch transforms of training (augmentations too) or of evaluation."""
        transform = self.batch_transforms and self.batch_transforms.select(train=train)
        return transform(x) if transform else x

    def evaluation_dataset(self, split: str, batch_size: int) -> Dataset:
        """``split`` as evaluation reads it: no per-sample augmentation, the training split included.

        A stream comes as a copy that yields ``batch_size`` rows per batch, in order, on one process.
        """
        dataset = self.splits[split]
        if isinstance(dataset, IterableDataset):
            stream = copy.copy(dataset)
            stream.shard(batch_size=batch_size)
            stream.transform = self.transforms and self.transforms.select(train=False)
            return stream
        if split == "train" and isinstance(dataset, TransformDataset):
            transform = self.transforms.select(train=False)
            return TransformDataset(dataset.dataset, transform) if transform else dataset.dataset
        return dataset

    def input_normalization(self) -> dict[str, list[float]] | None:
        """The ``(x - mean) / std`` that inputs scaled to [0, 1] get: that of the one ``Normalize`` they pass.

        litlab-predict and -export read it for files (images in [0, 1]) that skip this data's pipeline.
        """
        configured = [t for c in (self.transforms, self.batch_transforms) if c for t in c.transforms]
        found = [t for t in (self.normalize, *configured) if isinstance(t, Normalize)]
        if len(found) != 1:  # none, or several in a row: not one mean and std
            return None
        return {"mean": _floats(found[0].mean), "std": _floats(found[0].std)}

    def check(self, split: str, dataset: Dataset) -> None:
        """Reject labels outside ``[0, num_classes)`` before training starts."""
        if self.num_classes is None or not isinstance(dataset, TensorDataset):
            return
        y = dataset.tensors[1]
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"{split} labels span [{int(y.min())}, {int(y.max())}] but data.num_classes={self.num_classes}: "
                f"labels must lie in [0, {self.num_classes})"
            )

    def _loader(self, split: str) -> TensorLoader | DataLoader:
        dataset, train = self.splits[split], split == "train"
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        batch_size = self.batch_size if train else self.eval_batch_size
        drop_last = self.drop_last and train
        # Host batches bound for a CUDA GPU are pinned unless data.pin_memory=false: a copy from
        # pageable memory may wait for the GPU's queue, and Lightning's copies wait for nothing else.
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        pin = on_cuda and self.loader_kwargs["pin_memory"] is not False
        kwargs = {**self.loader_kwargs, "pin_memory": pin}
        if isinstance(dataset, IterableDataset):
            # A stream shards itself across ranks and workers and yields whole batches: no sampler, no collate.
            dataset.shard(rank, world, self.loader_kwargs["num_workers"], batch_size, drop_last, pad=train)
            return DataLoader(dataset, batch_size=None, **kwargs)
        # Overfitting a few batches means the same batches every epoch (Lightning cannot unshuffle TensorLoader).
        shuffle = train and self.shuffle and not (self.trainer and self.trainer.overfit_batches)
        sampler = ShardSampler(len(dataset), shuffle=shuffle, seed=self.seed, rank=rank, world_size=world, pad=train)
        if isinstance(dataset, TensorDataset) and self.collate_fn is None:
            pin = pin and dataset.tensors[0].device.type == "cpu"  # not data.on_device
            return TensorLoader(dataset.tensors, sampler, batch_size, drop_last, pin_memory=pin)
        return ResumableDataLoader(
            dataset,
            batch_size,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=self.collate_fn,
            seed=self.seed,
            **kwargs,
        )

    def _batches_taken(self, total: int) -> int | None:
        """How many of an epoch's ``total`` training batches the trainer takes; None: all of them."""
        t = self.trainer
        limit = t.fast_dev_run or t.overfit_batches or t.limit_train_batches  # fast_dev_run=True: 1 batch
        taken = int(limit) if isinstance(limit, int) else int(total * limit)  # as Lightning counts them
        return None if taken >= total else taken

    def train_dataloader(self) -> TensorLoader | DataLoader:
        self._check_full_batch()
        self._check_last_batch()
        return self._loader("train")

    def _check_full_batch(self) -> None:
        """``ConfigError`` where ``drop_last`` drops every training batch: the run would train 0 steps, and pass."""
        from litlab.rules import ConfigError

        dataset, world = self.splits["train"], self.trainer.world_size if self.trainer else 1
        if not self.drop_last or isinstance(dataset, IterableDataset):
            return
        per_rank = math.ceil(len(dataset) / world)
        if per_rank < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} with data.drop_last=true: the {per_rank} training samples"
                f"{' of each rank' if world > 1 else ''} make no full batch, so nothing would train: "
                "give a smaller data.batch_size or data.drop_last=false"
            )

    def _check_last_batch(self) -> None:
        """``ConfigError`` for a last training batch of one sample where the model batch-normalizes.

        BatchNorm cannot normalize one sample in training; the run would fail at the end of its
        first epoch with torch's "Expected more than 1 value per channel".
        """
        from litlab.rules import ConfigError

        dataset, model = self.splits["train"], getattr(self.trainer, "lightning_module", None)
        if self.drop_last or model is None or isinstance(dataset, IterableDataset):
            return
        frozen = {id(m) for f in getattr(model, "frozen", []) for m in f.modules()}  # kept in eval mode
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in frozen]
        if not norms:
            return
        if self.batch_size == 1:
            raise ConfigError("data.batch_size=1: BatchNorm cannot normalize a batch of one sample in training")
        per_rank = math.ceil(len(dataset) / self.trainer.world_size)  # ShardSampler pads the ranks even
        if per_rank % self.batch_size == 1 and self._batches_taken(math.ceil(per_rank / self.batch_size)) is None:
            raise ConfigError(
                f"data.batch_size={self.batch_size}: the {per_rank} training samples"
                f"{' of each rank' if self.trainer.world_size > 1 else ''} end in a batch of 1, which BatchNorm "
                "cannot normalize: give data.drop_last=true or another data.batch_size"
            )

    def val_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> TensorLoader | DataLoader:
        return self._loader("test")


def checked_transforms(
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    num_labels: int | None = None,
    vocab_size: int | None = None,
    transforms: Sequence[Mapping[str, Any]] | None = None,
    batch_transforms: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Compose | None, Compose | None]:
    """The transforms, built; ``ValueError`` naming the data key that cannot work with the others.

    The config check calls it too, so a bad value is named before Hydra makes a run directory.
    """
    built = []
    for key, specs in (("transforms", transforms), ("batch_transforms", batch_transforms)):
        if specs and vocab_size is not None:
            raise ValueError(f"data.{key}: transforms act on features and images, not token ids")
        try:
            built.append(compose(specs))
        except ValueError as e:
            raise ValueError(f"data.{key}: {e}") from None
    count = num_classes or num_labels
    if classes is not None and count is not None and len(classes) != count:
        raise ValueError(f"data.classes: names {len(classes)} classes, the data has {count}")
    return built[0], built[1]


def dataset_labels(dataset: Dataset) -> Tensor | None:
    """The class labels of ``dataset``, read without loading its samples; None where it does not list them."""
    if isinstance(dataset, TransformDataset):
        return dataset_labels(dataset.dataset)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        return dataset.tensors[1]
    return getattr(dataset, "labels", None)


def split_sizes(
    n: int, sizes: Sequence[float], names: Sequence[str] = ("data.val_split", "data.test_split")
) -> list[int]:
    """Sample counts from sizes that are fractions (floats in ``[0, 1)``) or counts (integers)."""
    counts = []
    for name, size in zip(names, sizes, strict=True):
        if isinstance(size, bool) or not isinstance(size, Real) or size < 0:
            raise ValueError(f"{name}={size!r}: must be a fraction in [0, 1) or a count >= 0")
        if not isinstance(size, Integral) and size >= 1:
            raise ValueError(f"{name}={size!r}: must be a fraction in [0, 1); give a count as an integer")
        counts.append(int(size) if isinstance(size, Integral) else round(size * n))
        if size > 0 and counts[-1] == 0:  # the run would have no val metrics (or no test), and say nothing
            raise ValueError(f"{name}={size!r} of {n} samples is 0 samples: give more data, or a count (1 or more)")
    if sum(counts) >= n:
        asked = ", ".join(f"{name}={size!r}" for name, size in zip(names, sizes, strict=True))
        raise ValueError(f"the split ({asked}) takes {sum(counts)} of {n} samples and leaves no training samples")
    return counts


def split_indices(n: int, sizes: Sequence[float], seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded random ``(train, val, test)`` indices of ``n`` samples.

    ``sizes`` are the ``(val, test)`` sizes, each a fraction (float) or a count (int).
    The split uses its own seed (``data.split_seed``), not the run's, so runs of a seed sweep
    are all scored on the same test set.
    """
    n_val, n_test = split_sizes(n, sizes)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def split_tensors(tensors: Sequence[Tensor], sizes: Sequence[float], seed: int = 0) -> list[TensorDataset]:
    """Aligned tensors split into train, val, test ``TensorDataset``s (``split_indices``)."""
    n = len(tensors[0])
    if not any(split_sizes(n, sizes)):
        # Nothing to carve out (val and test given): no permuted copy of the training arrays.
        empty = [t[:0] for t in tensors]
        return [TensorDataset(*tensors), TensorDataset(*empty), TensorDataset(*empty)]
    return [TensorDataset(*(t[idx] for t in tensors)) for idx in split_indices(n, sizes, seed)]


def _floats(value: float | Sequence[float]) -> list[float]:
    return [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
