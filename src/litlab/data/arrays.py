"""In-memory arrays: an ``.npz``, a ``.pt`` dict, a folder of ``<key>.npy`` files, or arrays passed in code.

Keys are ``x, y`` (split here, seeded) or ``x_train, y_train`` with optional ``x_val, y_val``
and ``x_test, y_test`` (a split not given is carved from the training arrays). Token ids
(``data.vocab_size``) may come with a padding ``mask`` of their shape (``mask_train``, ...;
True for real tokens, as ``pad_collate`` makes it); without one every token is real.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from litlab.data.base import DataModule, split_tensors
from litlab.data.collate import checked_mask
from litlab.data.files import numeric, read_npy, read_npz
from litlab.tasks import task_class

SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
KEYS = ("x", "y", *SPLIT_KEYS, "mask", "mask_train", "mask_val", "mask_test")


def read_arrays(path: str | Path) -> dict[str, Tensor]:
    """The arrays stored at ``path`` (``.npz``, ``.pt`` or a folder of ``.npy``), by key."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data.path={path}: no such file or folder")
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise FileNotFoundError(f"data.path={path} holds no .npy files (expected x.npy, y.npy or x_train.npy, ...)")
        return {f.stem: numeric(read_npy(f), str(f)) for f in files}
    if path.suffix == ".npz":
        return {k: numeric(v, f"{path}: {k}") for k, v in read_npz(path).items()}
    if path.suffix == ".pt":
        from litlab.checkpoint import load_weights_only

        obj = load_weights_only(path, ".pt file", map_location="cpu")
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} must hold a dict of tensors keyed {KEYS}, not a {type(obj).__name__}")
        return {k: torch.as_tensor(v) for k, v in obj.items()}
    if path.suffix == ".npy":
        raise ValueError(
            f"data.path={path}: give the folder holding x.npy and y.npy (or x_train.npy, ...), not one file"
        )
    raise ValueError(f"data.path={path}: expected a .npz or .pt file or a folder of .npy files")


class ArraysDataModule(DataModule):
    """Arrays held in memory (the fast path); ``input_shape`` and ``num_classes`` are checked against them.

    ``val_split``/``test_split`` are fractions (``0.1``) or counts (``5000``) of the training arrays.
    """

    def __init__(
        self,
        path: str | None = None,
        arrays: Mapping[str, Any] | None = None,
        val_split: float = 0.1,
        test_split: float = 0.1,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if (path is None) == (arrays is None):
            raise ValueError("data=arrays needs exactly one of data.path=<.npz|.pt|folder of .npy> or arrays=")
        self.task_cls = task_class(self.task)
        key = self.task_cls.size_key
        # How many classes or labels there are is not in the arrays (a class may have no sample).
        if self.task_cls.classes and getattr(self, key) is None:
            raise ValueError(
                f"data=arrays with data.task={self.task} needs data.{key}=<number of {key.removeprefix('num_')}>"
            )
        self.path, self.arrays = path, arrays
        self.sizes, self.split_seed = (val_split, test_split), split_seed

    def read(self) -> dict[str, Tensor]:
        if self.arrays is not None:
            return {
                k: numeric(v, f"arrays[{k!r}]") if isinstance(v, np.ndarray) else torch.as_tensor(v)
                for k, v in self.arrays.items()
            }
        return read_arrays(self.path)

    def load(self) -> list[TensorDataset]:
        arrays, source = self.read(), self.path or "arrays"
        unknown = set(arrays) - set(KEYS)
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; allowed: {list(KEYS)}")
        if {"x", "x_train"} <= set(arrays) or {"y", "y_train"} <= set(arrays):
            raise ValueError(f"{source} holds both x/y and x_train/y_train: which is the training data? keep one pair")
        prefix = "" if "x" in arrays else "_train"
        for key in (f"x{prefix}", f"y{prefix}"):
            if key not in arrays:
                raise ValueError(
                    f"{source} has keys {sorted(arrays)} but needs 'x' and 'y', or 'x_train' and 'y_train'"
                )
        given = {}
        for split in ("val", "test"):
            if f"x_{split}" in arrays or f"y_{split}" in arrays:
                given[split] = self.pair(arrays, f"_{split}", source)
        pool = self.pair(arrays, prefix, source)
        orphans = [k for k in arrays if k.startswith("mask") and f"x{k[4:]}" not in arrays]
        if orphans:
            raise ValueError(f"{source}: {orphans[0]} is the mask of x{orphans[0][4:]}, which it does not hold")
        if any(k.startswith("mask") for k in arrays):  # every split's batches are (x, y, mask) then
            pool, *rest = (_with_mask(p) for p in (pool, *given.values()))
            given = dict(zip(given, rest, strict=True))
        sizes = [0 if split in given else size for split, size in zip(("val", "test"), self.sizes, strict=True)]
        train, val, test = split_tensors(pool, sizes, self.split_seed)
        return [
            train,
            TensorDataset(*given["val"]) if "val" in given else val,
            TensorDataset(*given["test"]) if "test" in given else test,
        ]

    def pair(self, arrays: Mapping[str, Tensor], suffix: str, source: str) -> tuple[Tensor, ...]:
        """``(x, y)`` of one split (``(x, y, mask)`` with a mask), typed for the task and checked against the config."""
        xk, yk, mk = f"x{suffix}", f"y{suffix}", f"mask{suffix}"
        if xk not in arrays or yk not in arrays:
            raise ValueError(f"{source}: {xk!r} and {yk!r} must be given together")
        x, y = arrays[xk], arrays[yk]
        mask = _mask(arrays[mk], x, self.vocab_size, f"{source}: {mk}") if mk in arrays else None
        if len(x) != len(y):
            raise ValueError(f"{source}: {xk} has {len(x)} samples but {yk} has {len(y)}: lengths must agree")
        if list(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{source}: {xk} samples have shape {list(x.shape[1:])} but data.input_shape={self.input_shape}"
            )
        if self.vocab_size is not None:
            x = _token_ids(x, self.vocab_size, f"{source}: {xk}")
        else:
            x = x.float()
            check_finite(x, f"{source}: {xk}")
        y = self.task_cls.checked_targets(y, f"{source}: {yk}", getattr(self, self.task_cls.size_key))
        return (x, y) if mask is None else (x, y, mask)


def non_finite_samples(t: Tensor, rows: int = 4096) -> Tensor:
    """Indices of the samples (rows of the first dimension) holding a NaN or an inf.

    A NaN or an inf makes the sum non-finite, so one reduction clears most data; ``isfinite``
    over the whole tensor would make full-size temporaries (+280 MB of peak memory for
    MNIST-sized data). Only a non-finite sum (or one that overflowed) is looked at row by row.
    """
    none = torch.empty(0, dtype=torch.long)
    if not t.is_floating_point() or not len(t) or torch.isfinite(t.sum()):
        return none
    flat = t.reshape(len(t), -1)
    bad = [i + (~torch.isfinite(flat[i : i + rows])).any(1).nonzero().flatten() for i in range(0, len(flat), rows)]
    return torch.cat([none, *bad])


def _token_ids(x: Tensor, vocab_size: int, where: str) -> Tensor:
    """``x`` as token ids: whole numbers in ``[0, vocab_size)`` (others fail in the embedding mid-training)."""
    if x.is_floating_point() and not torch.equal(x, x.round()):  # NaN fails this too
        raise ValueError(f"{where} holds non-integer values: token ids are whole numbers")
    x = x.long()
    if len(x) and (x.min() < 0 or x.max() >= vocab_size):
        raise ValueError(
            f"{where} token ids span [{int(x.min())}, {int(x.max())}], the vocabulary is [0, {vocab_size})"
            " (data.vocab_size)"
        )
    return x


def _mask(mask: Tensor, x: Tensor, vocab_size: int | None, where: str) -> Tensor:
    """A padding mask as a bool tensor of ``x``'s shape (``checked_mask``), for token ids only."""
    if vocab_size is None:
        raise ValueError(f"{where}: a padding mask goes with token ids; set data.vocab_size or drop the mask")
    return checked_mask(mask, x, where)


def _with_mask(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``(x, y, mask)``: a split given without a mask, beside one with, has every token real."""
    return tensors if len(tensors) == 3 else (*tensors, torch.ones_like(tensors[0], dtype=torch.bool))


def check_finite(t: Tensor, where: str) -> None:
    """A NaN or inf in the data would surface only as a NaN loss, blamed on training."""
    bad = non_finite_samples(t)
    if len(bad):
        raise ValueError(f"{where} has NaN or inf values in {len(bad)} samples (the first is sample {int(bad[0])})")
