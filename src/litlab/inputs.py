"""Inputs for inference: a checkpoint's data split, or a folder or array file named on the command line.

Every source yields the same thing: ``Inputs`` batches of ``x`` (model-ready, normalized),
an optional padding ``mask`` (True = real token), optional labels, and a name per row
(its index in the split or array, or its file name in the folder).
"""

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from litlab.data.arrays import non_finite_samples
from litlab.data.files import IMAGE_SUFFIXES, SUFFIXES, numeric, read_npy, read_npz, read_sample

ARRAY_SUFFIXES = (".npy", ".npz", ".pt")


@dataclass
class Inputs:
    """One batch of model inputs with the names of its rows."""

    x: Tensor
    mask: Tensor | None
    names: list[str] | list[int]
    y: Tensor | None = None

    def args(self) -> tuple[Tensor, ...]:
        return (self.x,) if self.mask is None else (self.x, self.mask)


@dataclass
class InputSpec:
    """What the model takes: from the checkpoint (shape, vocabulary) and the data (normalization)."""

    input_shape: list[int]
    vocab_size: int | None = None
    normalization: dict[str, list[float]] | None = None

    @property
    def tokens(self) -> bool:
        return self.vocab_size is not None

    def normalize(self, x: Tensor, source: str = "the inputs") -> Tensor:
        """``(x - mean) / std`` per channel for inputs scaled to [0, 1]; token ids pass through.

        Inputs outside [0, 1] are normalized all the same (a warning names them): raw pixel values
        (0-16, 0-255) gave confident predictions far worse than the same images scaled.
        """
        if self.tokens or not self.normalization:
            return x
        low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if low < -1e-3 or high > 1 + 1e-3:
            logging.getLogger(__name__).warning(
                f"{source}: values span [{low:g}, {high:g}], but the training data's normalization is for inputs "
                "scaled to [0, 1] (images divided by their maximum, 255 for 8 bits); give normalize=false for "
                "inputs already normalized"
            )
        shape = (-1,) + (1,) * (len(self.input_shape) - 1)
        mean = torch.tensor(self.normalization["mean"]).view(shape)
        std = torch.tensor(self.normalization["std"]).view(shape)
        return (x - mean) / std


def split_batches(datamodule: Any, split: str, batch_size: int) -> Iterator[Inputs]:
    """The rows of ``split`` in their stored order, in batches, as testing reads them (even train: no augmentation)."""
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset

    if split not in datamodule.splits:
        raise ValueError(
            f"split={split!r} is not a split of {type(datamodule).__name__}; choose one of {sorted(datamodule.splits)}"
        )
    dataset = datamodule.evaluation_dataset(split, batch_size)
    if isinstance(dataset, IterableDataset):  # a stream yields whole batches
        batches = iter(DataLoader(dataset, batch_size=None))
    elif isinstance(dataset, TensorDataset) and datamodule.collate_fn is None:
        tensors = dataset.tensors
        batches = (tuple(t[i : i + batch_size] for t in tensors) for i in range(0, len(dataset), batch_size))
    else:
        batches = iter(DataLoader(dataset, batch_size, shuffle=False, collate_fn=datamodule.collate_fn))
    # A folder's samples are named by their files (a transform wraps the folder's dataset), others by their row.
    files = getattr(dataset, "files", None) or getattr(getattr(dataset, "dataset", None), "files", None)
    start = 0
    for x, y, *mask in batches:
        # As the model sees them in testing: after the data's batch transforms (CIFAR's scale and normalize).
        x = datamodule.batch_transform(x, train=False)
        names = files[start : start + len(x)] if files else list(range(start, start + len(x)))
        yield Inputs(x, mask[0] if mask else None, names, y)
        start += len(x)


def _read_array_file(path: Path) -> tuple[Tensor, Tensor | None]:
    """``x`` (and ``mask``) from ``.npy``, ``.npz`` (keys ``x``, optional ``mask``) or ``.pt``."""
    if path.suffix == ".npy":
        return numeric(read_npy(path), f"input={path}: the array"), None
    if path.suffix == ".npz":
        arrays = read_npz(path)
        if "x" not in arrays:
            raise ValueError(
                f"input={path}: an .npz needs an array named 'x' (and optionally 'mask'), found {sorted(arrays)}"
            )
        mask = numeric(arrays["mask"], f"input={path}: mask") if "mask" in arrays else None
        return numeric(arrays["x"], f"input={path}: x"), mask
    from litlab.checkpoint import load_weights_only

    data = load_weights_only(path, ".pt file", map_location="cpu")
    if isinstance(data, Tensor):
        return data, None
    if isinstance(data, dict) and isinstance(data.get("x"), Tensor):
        return data["x"], data.get("mask")
    raise ValueError(f"input={path}: a .pt file must hold a tensor or a dict with a tensor 'x' (and optionally 'mask')")


def _check(x: Tensor, mask: Tensor | None, spec: InputSpec, source: str) -> tuple[Tensor, Tensor | None]:
    """Cast to the model's dtype and reject shapes the model cannot take, naming the source."""
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"{source}: holds no samples")
    if spec.tokens:
        if x.dim() != 2 or x.is_floating_point():
            raise ValueError(f"{source}: token ids must be an integer array (N, T), got {tuple(x.shape)} {x.dtype}")
        if mask is not None:
            from litlab.data.collate import checked_mask

            mask = checked_mask(mask, x, f"{source}: mask")
        if len(x) and (x.min() < 0 or x.max() >= spec.vocab_size):
            raise ValueError(
                f"{source}: token ids span [{int(x.min())}, {int(x.max())}], the vocabulary is [0, {spec.vocab_size})"
            )
        return x.long(), mask
    _refuse_8bit(x, source)
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        expected = ", ".join(map(str, ["N", *spec.input_shape]))
        raise ValueError(f"{source}: inputs of shape {tuple(x.shape)} do not fit the model, which takes ({expected})")
    bad = non_finite_samples(x)
    if len(bad):  # would come out as NaN "predictions" of class 0
        raise ValueError(f"{source}: NaN or inf in {len(bad)} inputs (the first is row {int(bad[0])})")
    return x.float(), None


def _refuse_8bit(x: Tensor, source: str) -> None:
    """uint8 inputs have no scale litlab can know: 0-255 pixels go to [0, 1], raw bytes stay as they are.

    Training does not guess either (``data=arrays`` casts them as they are, CIFAR-10 scales them with
    its own transform), and the checkpoint records neither: taken as they were, 0-255 pixels gave
    saturated probabilities.
    """
    if x.dtype == torch.uint8:
        raise ValueError(
            f"{source}: holds uint8 values, whose scale litlab does not guess; give float32 inputs: 8-bit "
            "images divided by 255 (in [0, 1], as image files are read), or x.astype(float32) for a model "
            "trained on the raw values"
        )


def path_inputs(path: str | Path, spec: InputSpec, normalize: bool = True) -> Inputs:
    """All samples of a folder (one file each, sorted by name) or of one array file, as one batch."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise FileNotFoundError(f"input={path}: no {'/'.join(SUFFIXES)} files in this folder")
        if spec.tokens and any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
            raise ValueError(f"input={path}: a token model reads .npy or .pt files of token ids, not images")
        # Images are resized to the model's [C, H, W] (scaled to [0, 1], not yet normalized).
        size = spec.input_shape[1:] if len(spec.input_shape) == 3 else None
        try:
            samples = [read_sample(p, spec.input_shape[0], size) for p in files]
        except ValueError as e:  # names the file
            raise ValueError(f"input={path}: {e}") from None
        if spec.tokens:
            return _padded(samples, spec, [str(p.relative_to(path)) for p in files], str(path))
        for sample, file in zip(samples, files, strict=True):  # by name: stacked with floats, it would pass
            _refuse_8bit(sample, f"input={file}")
        shapes = {tuple(s.shape): p.name for s, p in zip(samples, files, strict=True)}
        if len(shapes) > 1:
            raise ValueError(f"input={path}: samples differ in shape (shape: an example file): {shapes}")
        x, _ = _check(torch.stack(samples), None, spec, f"input={path}")
        x = spec.normalize(x, f"input={path}") if normalize else x
        return Inputs(x, None, [str(p.relative_to(path)) for p in files])
    if not path.is_file():
        raise FileNotFoundError(f"input={path}: no such folder or file")
    if path.suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"input={path}: an input file must be one of {ARRAY_SUFFIXES}, or give a folder of images")
    x, mask = _check(*_read_array_file(path), spec, f"input={path}")
    if normalize:
        x = spec.normalize(x, f"input={path}")
    return Inputs(x, mask, list(range(len(x))))


def _padded(samples: list[Tensor], spec: InputSpec, names: list[str], source: str) -> Inputs:
    """Token sequences of different lengths, right-padded with 0 and masked."""
    from litlab.data.collate import pad_sequences

    dtype = functools.reduce(torch.promote_types, (s.dtype for s in samples))  # a file of floats is refused
    x, mask = pad_sequences([s.reshape(-1).to(dtype) for s in samples])
    x, mask = _check(x, mask, spec, f"input={source}")
    return Inputs(x, mask, names)


def batched(inputs: Inputs, batch_size: int) -> Iterator[Inputs]:
    """``inputs`` cut into batches of at most ``batch_size`` rows."""
    for i in range(0, len(inputs.x), batch_size):
        mask = None if inputs.mask is None else inputs.mask[i : i + batch_size]
        y = None if inputs.y is None else inputs.y[i : i + batch_size]
        yield Inputs(inputs.x[i : i + batch_size], mask, inputs.names[i : i + batch_size], y)
