"""MNIST and Fashion-MNIST from the four IDX files (``.gz`` or not), downloaded when missing."""

import gzip
import math
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch.utils.data import TensorDataset

from litlab.data.base import DataModule, split_tensors
from litlab.data.download import download
from litlab.data.transforms import Normalize

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def parse_idx(data: bytes) -> np.ndarray:
    """The array of an IDX file of unsigned bytes; a ``ValueError`` says what the data "is" otherwise."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError("not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError("truncated: its header is incomplete")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = memoryview(data)[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise ValueError(
            f"truncated or corrupt: its header says {list(dims)} ({math.prod(dims)} bytes), found {len(body)}"
        )
    return np.frombuffer(body, np.uint8).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes as an array; corrupt or truncated files are named in the error."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            return parse_idx(f.read())
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path} is corrupt or truncated: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path} is {e}") from None


def check_idx_gz(f: BinaryIO) -> None:
    """What ``read_idx`` will read of a download: a gzip stream to its end, holding a whole IDX file."""
    try:
        parse_idx(gzip.GzipFile(fileobj=f).read())
    except (OSError, EOFError, zlib.error) as e:  # not gzip (an HTML page), or cut short
        raise ValueError(f"corrupt or truncated: {e}") from None


def find_idx(data_dir: Path, name: str) -> dict[str, Path] | None:
    """The four files in ``data_dir`` or ``data_dir/<name>/raw``, each ``.gz`` or not; None when incomplete."""
    for folder in (data_dir, data_dir / name / "raw"):
        found = {}
        for key, stem in FILES.items():
            for candidate in (folder / stem, folder / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


class MNISTDataModule(DataModule):
    """MNIST-format data (``name`` MNIST or FashionMNIST): 60k train split into train/val (``val_split``), 10k test.

    Pixels are scaled to [0, 1] and standardised with the training split's mean and std.
    """

    tasks = ("classification",)

    def __init__(
        self,
        name: str = "MNIST",
        url: str | None = None,
        md5: Mapping[str, str] | None = None,
        download: bool = True,
        val_split: int | float = 5000,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.url, self.md5, self.download = name, url, dict(md5 or {}), download
        self.val_split, self.split_seed = val_split, split_seed

    def files(self) -> dict[str, Path]:
        data_dir = Path(self.data_dir)
        found = find_idx(data_dir, self.name)
        if found is not None:
            return found
        raw = data_dir / self.name / "raw"
        if not self.download or not self.url:
            raise FileNotFoundError(
                f"{self.name} files {[f'{s}[.gz]' for s in FILES.values()]} are not in {data_dir} nor {raw}; "
                "put them there or set data.download=true"
            )
        for stem in FILES.values():
            file = f"{stem}.gz"
            if not (raw / file).is_file():
                download(self.url.rstrip("/") + "/" + file, raw / file, md5=self.md5.get(file), check=check_idx_gz)
        return {key: raw / f"{stem}.gz" for key, stem in FILES.items()}

    def load(self) -> list[TensorDataset]:
        files = self.files()
        arrays = {key: torch.from_numpy(read_idx(path).copy()) for key, path in files.items()}
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if len(x) != len(y):
                raise ValueError(
                    f"{files[f'{split}_x']} has {len(x)} images but {files[f'{split}_y']} has {len(y)} labels"
                )
        train, val, _ = split_tensors(
            (arrays["train_x"].float().div_(255), arrays["train_y"].long()), (self.val_split, 0), self.split_seed
        )
        # The training split's statistics only: the validation images stay unseen.
        x_train = train.tensors[0]
        self.normalize = Normalize([float(x_train.mean())], [float(x_train.std())])
        splits = [(arrays["test_x"].float().div_(255), arrays["test_y"].long())]
        return [TensorDataset(x.unsqueeze(1), y) for x, y in [*(d.tensors for d in (train, val)), *splits]]
