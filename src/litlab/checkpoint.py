"""Checkpoint files: written atomically, read without unpickling code, onto the CPU by default."""

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from litlab.runs import atomic_file


class UnsafeCheckpointError(ValueError):
    """A checkpoint that holds pickled objects beyond tensors and plain containers."""


class UnreadableCheckpointError(ValueError):
    """A file that torch cannot read as a checkpoint: truncated, empty, or not a torch file at all."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)``, onto ``map_location`` (a GPU checkpoint loads on a CPU-only machine).

    Unpickling arbitrary objects can run arbitrary code, so a checkpoint holding any is refused.
    ``mmap=True`` reads the tensors' bytes only when they are used (a look at the keys and shapes).
    """
    loaded = load_weights_only(path, "checkpoint", map_location=map_location, mmap=mmap)
    if not isinstance(loaded, dict):
        raise UnreadableCheckpointError(f"{path} holds a {type(loaded).__name__}, not a checkpoint (a dict of states)")
    return loaded


def load_weights_only(path: str | Path, what: str = "torch file", **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True, **kwargs)``; a file it refuses is named with the likely cause."""
    try:
        loaded = torch.load(path, weights_only=True, **kwargs)
    except (RuntimeError, EOFError, KeyError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        if isinstance(e, PermissionError):  # not a zip archive to zipfile either: not "truncated"
            raise UnreadableCheckpointError(f"{path} cannot be read: permission denied") from None
        # torch's messages name neither the file nor the likely cause (a write cut short, another format).
        reason = "no zip archive" if not zipfile.is_zipfile(path) else str(e).strip().splitlines()[0]
        raise UnreadableCheckpointError(
            f"{path} is not a readable {what}: truncated, empty, or not written by torch.save ({reason})"
        ) from None
    except pickle.UnpicklingError as e:
        # torch's message runs to a page; one line of it names what the file wanted to import.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found and not zipfile.is_zipfile(path):  # not a pickle at all: text, another format
            raise UnreadableCheckpointError(
                f"{path} is not a readable {what}: not written by torch.save (no zip archive)"
            ) from None
        last = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[-1]  # torch colours parts of it
        reason = f"it imports {found.group(1)}" if found else last
        raise UnsafeCheckpointError(
            f"{path} holds pickled Python objects, which could run code when loaded; litlab loads only tensors "
            f"and plain containers (weights_only=True) and refuses it ({reason})"
        ) from None
    return loaded


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, fsync, then ``os.replace``.

    A crash (even SIGKILL or a power cut) during the write leaves the previous file intact,
    never a truncated ``last.ckpt``; the temporary ``.<name>.*.tmp`` is removed on resume.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: Lightning's way
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_file(path, "wb") as f:
                torch.save(checkpoint, f)
        except (OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and "inline_container" not in str(e):
                raise  # not a failed write: torch reports those from its zip writer
            # torch's own words for a full disk: "[enforce fail at inline_container.cc:672] . unexpected pos"
            raise OSError(
                f"could not write the checkpoint {path} (disk full, or over a file size limit?); "
                f"the checkpoints written before are intact ({str(e).strip().splitlines()[0]})"
            ) from e

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        # Storages stay on the CPU; Lightning moves the restored states to the run's device.
        return load_checkpoint(path, map_location=map_location or "cpu")
