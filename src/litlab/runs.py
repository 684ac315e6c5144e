"""A run directory's files: its checkpoints, its metrics.json, and writing them whole (``atomic_file``)."""

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINTS}/last.ckpt"  # in a run directory: what a resume goes on from


def _umask() -> int:
    mask = os.umask(0)  # os.umask can only be read by setting it
    os.umask(mask)
    return mask


_UMASK = _umask()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """A temporary file beside ``path`` that replaces it only once fully written and fsynced.

    A crash (even SIGKILL or a power cut) during the write leaves the previous file intact and
    at worst a ``.<name>.*.tmp`` beside it, never a truncated file under the final name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make the file private to its writer
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk says "No space left on device" without naming the file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one.

    A NaN or infinite float (a diverged run's loss) is written as null: JSON has no such numbers,
    and strict readers (jq, JavaScript) refuse Python's ``NaN``.
    """
    with atomic_file(path) as f:
        json.dump(_finite(data), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


STAGE_PREFIXES = ("train/", "val/", "test/")


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Epoch-level train/val/test metrics as plain floats (per-step ``*_step`` values left out)."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(STAGE_PREFIXES) and not k.endswith("_step")}


def find_last_checkpoint(log_dir: str | Path) -> Path:
    """The newest ``last.ckpt`` under ``log_dir`` (what ``ckpt_path=last`` resumes)."""
    candidates = sorted(Path(log_dir).glob(f"**/{LAST_CHECKPOINT}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no {LAST_CHECKPOINT} under {log_dir}")
    return candidates[-1]


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``metrics.json``; empty when it has none yet, or one that is not litlab's summary object."""
    try:
        summary = json.loads(Path(run_dir, METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def finished(summary: Mapping[str, Any]) -> bool:
    """Whether a run's ``metrics.json`` is that of a run that finished (a failed attempt adds a ``status``)."""
    return bool(summary.get("metrics")) and "status" not in summary


def best_checkpoint(run_dir: Path) -> Path | None:
    """A run directory's best checkpoint (metrics.json's ``best_checkpoint``), else its ``last.ckpt``, else None."""
    best = read_summary(run_dir).get("best_checkpoint")
    # By name under this directory: metrics.json holds the absolute path where the run was written.
    for path in (run_dir / CHECKPOINTS / Path(best).name if best else None, run_dir / LAST_CHECKPOINT):
        if path and path.is_file():
            return path
    return None


def inference_checkpoint(cfg: Mapping[str, Any]) -> str:
    """The checkpoint eval, predict and export take: ``ckpt_path``, a run directory's best, or ``last``.

    ``last`` is the newest ``last.ckpt`` under ``paths.log_dir``, whichever ``task_name`` (an
    experiment's) trained it: these commands have task names of their own.
    """
    return resolve_checkpoint(cfg["ckpt_path"], cfg["paths"]["log_dir"], best=True)


def resolve_checkpoint(
    ckpt_path: str | Path | None, log_dir: str | Path | None, best: bool = False, key: str = "ckpt_path"
) -> str | None:
    """``ckpt_path`` as a checkpoint file: ``last`` (under ``log_dir``) and run directories are looked up.

    A run directory means its ``last.ckpt`` (what a resume goes on from), or with ``best`` its
    best checkpoint (what a run tests at its end: what eval, predict, export and init_from take).
    ``key`` names the setting in messages.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last" and log_dir is not None:
        return str(find_last_checkpoint(log_dir))
    path = Path(ckpt_path)
    if path.is_dir():
        found = best_checkpoint(path) if best else path / LAST_CHECKPOINT
        if found is None or not found.is_file():
            which = f"a best checkpoint or {LAST_CHECKPOINT}" if best else LAST_CHECKPOINT
            raise FileNotFoundError(f"{key}={ckpt_path}: a directory without {which}")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"{key}={ckpt_path}: no such checkpoint file")
    return str(path)
