"""Small data files in the real formats, written by the tests that read them."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    return (
        b"\x00\x00\x08"
        + bytes([array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def write_mnist(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict[str, Path]:
    """The four MNIST IDX files with random 28x28 images; labels cycle 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    paths = {}
    for stem, array in arrays.items():
        path = folder / (f"{stem}.gz" if gz else stem)
        data = idx_bytes(array)
        path.write_bytes(gzip.compress(data) if gz else data)
        paths[stem] = path
    return paths


def write_cifar(folder: Path, n_per_batch: int = 10, seed: int = 0) -> Path:
    """``cifar-10-batches-py`` with five training batches and a test batch of random images."""
    rng = np.random.default_rng(seed)
    out = folder / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
        }
        with open(out / name, "wb") as f:
            pickle.dump(batch, f)
    return out


def write_tree(root, fmt: str, per_class: int = 6, classes=("cat", "dog"), shape=(1, 8, 8)) -> None:
    """``root/<class>/<i>.<fmt>``; each class a step brighter than the last, so they are learnable."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x = rng.integers(0, 100, shape).astype(np.uint8) + np.uint8(150 * k // max(1, len(classes) - 1))
            path = root / name / f"{i}.{fmt}"
            if fmt == "npy":
                np.save(path, x.astype(np.float32) / 255)
            elif fmt == "pt":
                torch.save(torch.from_numpy(x).float() / 255, path)
            else:
                img = x[0] if shape[0] == 1 else x.transpose(1, 2, 0)
                Image.fromarray(img).save(path)
