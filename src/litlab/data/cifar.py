"""CIFAR-10 from its python-pickle batches, downloaded (verified, atomically) when missing.

Images stay uint8 in memory (4x smaller, 4x less to move); the config's ``batch_transforms``
scale and normalize them on the device, per batch.
"""

import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch.utils.data import TensorDataset

from litlab.data.base import DataModule, split_tensors
from litlab.data.download import download

FOLDER = "cifar-10-batches-py"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]

#: the only globals a CIFAR batch needs: never unpickle arbitrary code
SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one pickled batch; a bad file is named."""
    try:
        with open(path, "rb") as f:
            batch = SafeUnpickler(f, encoding="latin1").load()
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64)
    except Exception as e:  # truncated pickles raise EOFError, UnpicklingError, ValueError, AttributeError...
        raise ValueError(f"{path} is not a readable CIFAR batch (corrupt or truncated?): {e}") from None
    if len(x) != len(y):
        raise ValueError(f"{path} has {len(x)} images but {len(y)} labels")
    return x, y


def check_archive(f: BinaryIO) -> None:
    """What ``extract`` will unpack from a download: a tar archive read to its end, holding every batch."""
    try:
        with tarfile.open(fileobj=f) as tar:  # reading every header decompresses it all: a cut one fails
            names = {name.removeprefix("./") for name in tar.getnames()}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"not a readable tar archive: {str(e).splitlines()[0]}") from None
    missing = [name for name in TRAIN + TEST if f"{FOLDER}/{name}" not in names]
    if missing:
        raise ValueError(f"an archive without {FOLDER}/{missing[0]} (truncated?)")


def extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` next to ``dest`` and move its ``FOLDER`` into place in one rename."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python < 3.10.12: refuse links and paths that leave the folder ourselves
                    for m in tar.getmembers():
                        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                            raise ValueError(f"{archive} holds an unsafe member {m.name!r}")
                    tar.extractall(tmp)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{archive} is not a readable tar archive: {e}") from None
        if not (Path(tmp) / FOLDER).is_dir():
            raise ValueError(f"{archive} holds no {FOLDER}/ folder")
        os.replace(Path(tmp) / FOLDER, dest)


class CIFAR10DataModule(DataModule):
    """CIFAR-10: 50k training images split into train/val (``val_split``), the 10k test set as published."""

    tasks = ("classification",)

    def __init__(
        self,
        url: str | None = None,
        md5: str | None = None,
        download: bool = True,
        val_split: int | float = 5000,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.url, self.md5, self.download, self.val_split, self.split_seed = url, md5, download, val_split, split_seed

    def folder(self) -> Path:
        data_dir = Path(self.data_dir)
        for folder in (data_dir / FOLDER, data_dir):
            if all((folder / name).is_file() for name in TRAIN + TEST):
                return folder
        if not self.download or not self.url:
            raise FileNotFoundError(
                f"CIFAR-10 batches {TRAIN + TEST} are not in {data_dir / FOLDER} nor {data_dir}; "
                "put them there or set data.download=true"
            )
        archive = data_dir / Path(self.url).name
        if not archive.is_file():
            download(self.url, archive, md5=self.md5, check=check_archive)
        if (data_dir / FOLDER).exists():  # an incomplete earlier folder: keep it, under another name
            shutil.move(data_dir / FOLDER, data_dir / f"{FOLDER}.incomplete-{os.getpid()}")
        extract(archive, data_dir / FOLDER)
        return data_dir / FOLDER

    def load(self) -> list[TensorDataset]:
        folder = self.folder()

        def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [read_batch(folder / name) for name in names]
            return torch.from_numpy(np.concatenate([x for x, _ in parts])), torch.from_numpy(
                np.concatenate([y for _, y in parts])
            )

        train, val, _ = split_tensors(read(TRAIN), (self.val_split, 0), self.split_seed)
        return [train, val, TensorDataset(*read(TEST))]
