"""Lazy files: ``root/<class>/<file>`` read only when a sample is asked for.

``.npy``, ``.pt`` and images (``.png``, ``.jpg``, ... via Pillow: ``litlab/data/files.py``). Splits come from
``root/train``, ``root/val``, ``root/test`` when those folders exist, else from a seeded split
of ``root``. The index (files and classes) is built once and cached in ``root/.litlab_index.json``
until a class folder changes; with ``verify`` every file is read once when the index is
built, so a corrupt file fails before training, by name, and a file rewritten in place
rebuilds it too.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from litlab.data.base import DataModule, split_indices
from litlab.data.files import SUFFIXES, read_sample
from litlab.runs import write_json_atomic

log = logging.getLogger(__name__)
INDEX_FILE = ".litlab_index.json"


def read_checked(path: Path, input_shape: list[int]) -> Tensor:
    """One file as a float tensor of ``input_shape``; any failure names the file."""
    x = read_sample(path, input_shape[0] if input_shape else 1)
    if list(x.shape) != list(input_shape):
        raise ValueError(f"{path} has shape {list(x.shape)} but data.input_shape={list(input_shape)}")
    return x.float()


def scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and ``(file relative to folder, class index)`` pairs of a class-per-subfolder tree."""
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(f"{folder} has no class folders: expected {folder}/<class>/<file>")
    if classes is not None and set(found) - set(classes):
        raise ValueError(f"{folder} has classes {sorted(set(found) - set(classes))} that the training split lacks")
    classes = classes or found
    samples = []
    for name in found:
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"class folder {folder / name} is empty: no {'/'.join(SUFFIXES)} files")
        samples += [(str(p.relative_to(folder)), classes.index(name)) for p in files]
    return classes, samples


def signature(root: Path, files: bool = False) -> str:
    """Changes when a file is added to or removed from any folder under ``root`` (their mtimes change).

    With ``files``, also when a file is rewritten in place (its size or mtime), which leaves its
    folder's mtime as it was: a verified index must see that. It costs a ``stat`` per file.
    """
    # The root's own mtime is left out: writing the cache there changes it. Its entries stand in.
    entries = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    stamps = [*entries]
    for folder, _, names in sorted(os.walk(root))[1:]:
        stamps.append(f"{folder}:{os.stat(folder).st_mtime_ns}")
        if files:
            for name in sorted(names):
                st = os.stat(os.path.join(folder, name))
                stamps.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(stamps).encode()).hexdigest()


class FolderDataset(Dataset):
    """Samples ``(x, label)`` read from ``root/<file>`` on demand; holds only paths, so it is worker-safe."""

    def __init__(self, root: Path, samples: list[tuple[str, int]], input_shape: list[int]) -> None:
        self.root, self.samples, self.input_shape = Path(root), samples, list(input_shape)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> Tensor:
        return torch.tensor([label for _, label in self.samples])

    @property
    def files(self) -> list[str]:
        """Each sample's file, relative to ``root``: what predictions on the split are named by."""
        return [file for file, _ in self.samples]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        file, label = self.samples[i]
        return read_checked(self.root / file, self.input_shape), torch.tensor(label)


class FolderDataModule(DataModule):
    """A class-per-subfolder tree of files, read lazily; ``val_split``/``test_split`` as fractions or counts."""

    tasks = ("classification",)

    def __init__(
        self,
        root: str,
        val_split: float = 0.1,
        test_split: float = 0.1,
        split_seed: int = 0,
        verify: bool = True,
        cache_index: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.sizes, self.split_seed = Path(root), (val_split, test_split), split_seed
        self.verify, self.cache_index = verify, cache_index

    def index(self) -> dict:
        """``{classes, splits: {train: [...], val: [...], test: [...]}}``, from the cache when it is current."""
        cache = self.root / INDEX_FILE
        if not self.root.is_dir():
            what = "is a file: give the folder holding <class>/<file>" if self.root.exists() else "does not exist"
            raise FileNotFoundError(f"data.root={self.root} {what}")
        sig = signature(self.root, files=self.verify)
        # Every setting the index depends on: verify checked each file against input_shape.
        key = {"signature": sig, "sizes": list(self.sizes), "split_seed": self.split_seed, "verify": self.verify}
        key["input_shape"] = list(self.input_shape)
        if self.cache_index and cache.is_file():
            try:
                cached = json.loads(cache.read_text())
                if isinstance(cached, dict) and cached.get("key") == key:
                    return cached
            except (OSError, ValueError):
                pass  # an unreadable cache (or one of another shape) is rebuilt
        index = {"key": key, **self.build()}
        if self.cache_index:
            try:
                write_json_atomic(cache, index)
            except OSError as e:  # a read-only data folder still works, just without the cache
                log.info("not caching the index of %s: %s", self.root, e)
        return index

    def build(self) -> dict:
        if (self.root / "train").is_dir():
            classes, train = scan(self.root / "train")
            splits = {"train": [(f"train/{f}", c) for f, c in train]}
            for split in ("val", "test"):
                if (self.root / split).is_dir():
                    splits[split] = [(f"{split}/{f}", c) for f, c in scan(self.root / split, classes)[1]]
            missing = [s for s in ("val", "test") if s not in splits]
            if missing:  # carve the missing ones from train
                sizes = [size if s in missing else 0 for s, size in zip(("val", "test"), self.sizes, strict=True)]
                parts = self.split(splits["train"], sizes)
                splits["train"] = parts[0]
                splits.update({s: parts[i + 1] for i, s in enumerate(("val", "test")) if s in missing})
        else:
            classes, samples = scan(self.root)
            splits = dict(zip(("train", "val", "test"), self.split(samples, self.sizes), strict=True))
        if self.verify:
            for file, _ in (s for split in splits.values() for s in split):
                read_checked(self.root / file, self.input_shape)
        return {"classes": classes, "splits": splits}

    def split(self, samples: list, sizes: tuple) -> list[list]:
        return [[samples[i] for i in part.tolist()] for part in split_indices(len(samples), sizes, self.split_seed)]

    def load(self) -> list[FolderDataset]:
        index = self.index()
        classes = index["classes"]
        if self.num_classes is not None and len(classes) != self.num_classes:
            raise ValueError(
                f"{self.root} has {len(classes)} class folders {classes} but data.num_classes={self.num_classes}"
            )
        if self.classes is not None and self.classes != classes:
            raise ValueError(
                f"data.classes={self.classes}: a folder's classes are its class folders, {classes}; drop data.classes"
            )
        self.classes = classes
        return [
            FolderDataset(self.root, [tuple(s) for s in index["splits"][k]], self.input_shape)
            for k in ("train", "val", "test")
        ]
