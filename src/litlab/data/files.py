"""One sample per file: how ``.npy``, ``.pt`` and image files become tensors.

Shared by training (``data=folder``) and inference (``litlab-predict input=<folder>``), so a
model is given files of the same kinds, read the same way, as it was trained on. A file that
cannot be read is a ``ValueError`` that names it and says why; nothing is unpickled.
"""

import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: Read through Pillow, as [C, H, W] floats in [0, 1] (C: 1 grey, 3 RGB).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Read as stored: a tensor of any shape and dtype.
TENSOR_SUFFIXES = (".npy", ".pt")
SUFFIXES = (*TENSOR_SUFFIXES, *IMAGE_SUFFIXES)


def read_image(path: Path, channels: int, size: Sequence[int] | None = None) -> Tensor:
    """An image as ``[channels, H, W]`` floats in [0, 1], resized (bilinear) to ``size = (H, W)`` if given."""
    from PIL import Image  # imported where used: start-up stays short

    try:
        with Image.open(path) as image:
            # 16-bit grayscale (I;16, or I as older Pillows open it): convert("L") clips every value above 255.
            wide = image.mode.startswith("I")
            image = image.convert("F") if wide else image.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32 if wide else np.uint8)
    except (OSError, ValueError) as e:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(f"{path} is not a readable image: corrupt or truncated? ({e})") from None
    if wide and (array.min() < 0 or array.max() > 65535):
        raise ValueError(f"{path}: a {image.mode} image with values beyond 16 bits, which litlab does not scale")
    x = torch.from_numpy(array.copy()).float().div_(65535 if wide else 255)
    if wide and channels == 3:
        return x.repeat(3, 1, 1)  # as convert("RGB") repeats a grayscale image
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)


def read_npy(path: Path) -> np.ndarray:
    """The array in an ``.npy`` file; an object array (pickled Python objects) is refused."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npy file: {numpy_refusal(e)}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays in an ``.npz`` file, by key; a file that is no readable archive of arrays is named."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    # zipfile.BadZipFile: truncated (no central directory) or a bad CRC; zlib.error: a corrupt compressed member.
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path} is not a readable .npz file: {numpy_refusal(e)}") from None


def numeric(array: np.ndarray, where: str) -> Tensor:
    """``array`` as a tensor; strings, dates or complex numbers are refused, naming ``where`` (torch names nothing)."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where} holds {array.dtype} values; litlab reads numbers")
    if any(stride < 0 for stride in array.strides):  # a reversed view (a[::-1]): torch takes none
        array = array.copy()
    return torch.from_numpy(array)


def numpy_refusal(error: Exception) -> str:
    """Why ``np.load(allow_pickle=False)`` refused a file, in words (numpy's own suggest allow_pickle=True)."""
    if "Object arrays cannot be loaded" in str(error):  # strings of different lengths, mixed types
        return "it holds Python objects (an object array), which litlab does not unpickle; store numbers"
    if "pickled" in str(error):  # no numpy header: numpy took it for a pickle
        return "not written by numpy (no .npy/.npz header)"
    return f"corrupt or truncated? ({error})"


def read_tensor(path: Path) -> Tensor:
    """The tensor in an ``.npy`` file or a ``.pt`` file (weights_only)."""
    if path.suffix.lower() == ".npy":
        return numeric(read_npy(path), str(path))
    from litlab.checkpoint import load_weights_only

    x = load_weights_only(path, ".pt file", map_location="cpu")
    if not isinstance(x, Tensor):
        raise ValueError(f"{path} holds a {type(x).__name__}, not a tensor")
    return x


def read_sample(path: Path, channels: int, size: Sequence[int] | None = None) -> Tensor:
    """The sample in ``path`` (one of ``SUFFIXES``); only images are converted to ``channels`` and ``size``."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path, channels, size)
    return read_tensor(path)
