"""Find the lines that read tensor values back to the host during training batches (GPU syncs)."""

import logging
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from torch.overrides import TorchFunctionMode

from litlab.runs import write_json_atomic

log = logging.getLogger(__name__)

#: Tensor methods that hand a value to Python: on a GPU each waits for every kernel queued before it.
READS = frozenset(
    {
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.numpy,
        torch.Tensor.__array__,
        torch.Tensor.__bool__,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
        torch.Tensor.__index__,
        torch.Tensor.__format__,
        torch.Tensor.__repr__,
    }
)
#: ... and copies between host and GPU. A blocking copy waits for the queue; a non-blocking one
#: does not when its host side is pinned (from pageable memory CUDA may stage it synchronously).
COPIES = frozenset({torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.to, torch.Tensor.copy_})
TORCH = Path(torch.__file__).parent
TORCH_DIR = str(TORCH) + os.sep
#: torch's Python-level Tensor methods and the dispatch to a mode: the read's line is above them.
DISPATCH = (str(TORCH / "overrides.py"), str(TORCH / "_tensor.py"))
#: What torch warns at each sync it makes under ``torch.cuda.set_sync_debug_mode("warn")``: the
#: syncs inside torch's own functions (a boolean mask's ``nonzero``, a scaler's ``found_inf``).
SYNC_WARNING = "called a synchronizing CUDA operation"
#: Frames between such a warning and the line whose call made it: the warnings machinery (its
#: Python half is ``_py_warnings`` from Python 3.14), this file's mode, torch's dispatch.
BETWEEN_MODULES = ("warnings", "_py_warnings", __name__)


def _target(func: Any, args: tuple, kwargs: dict) -> torch.device | None:
    """Where a copy goes; None when it stays on its device (``.to(dtype)``)."""
    if func is torch.Tensor.cpu:
        return torch.device("cpu")
    if func is torch.Tensor.cuda:
        return torch.device("cuda")
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    if isinstance(target, torch.Tensor):
        return target.device
    if isinstance(target, bool):
        return None
    return torch.device(target) if isinstance(target, str | int | torch.device) else None


def _waits(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether a copy between host and GPU makes the host wait."""
    # In every overload (.to, .cuda, .copy_) the first positional bool is non_blocking.
    non_blocking = kwargs.get("non_blocking", next((a for a in args[1:] if isinstance(a, bool)), False))
    if func is torch.Tensor.copy_:  # dst.copy_(src)
        dst, src = args[0], args[1]
        to = dst.device
    else:
        src, to, dst = args[0], _target(func, args, kwargs), None
    if to is None or to.type == src.device.type:
        return False
    if not non_blocking:
        return True
    if to.type == "cpu":  # a non-blocking .to("cpu") allocates pinned memory itself
        return dst is not None and not dst.is_pinned()
    return src.device.type == "cpu" and not src.is_pinned()


class _Recorder(TorchFunctionMode):
    def __init__(self, on_read: Any, host_values_too: bool) -> None:
        super().__init__()
        self.on_read, self.host_values_too = on_read, host_values_too
        self.pid = os.getpid()  # DataLoader workers forked meanwhile inherit the mode: not theirs
        self.counted = False  # while a counted read runs: torch's sync warning for it is the same read

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if torch.compiler.is_compiling() or os.getpid() != self.pid:
            return func(*args, **kwargs)  # inside a compiled graph reads are the compiler's business
        if func in READS:
            waits = self.host_values_too or args[0].device.type != "cpu"
        else:
            waits = func in COPIES and _waits(func, args, kwargs)
        # The caller: Tensor methods are C, with no frame of their own.
        if not (waits and self.on_read(sys._getframe(1))):
            return func(*args, **kwargs)
        self.counted = True
        try:
            return func(*args, **kwargs)
        finally:
            self.counted = False


class HostReads(L.Callback):
    """Counts, per line of code, the reads of tensor values to the host during training batches.

    On a GPU each read (``.item()``, ``if t:``, ``.cpu()``, ...) waits for the queued kernels.
    The window is each training batch and what Lightning does between batches; validation and
    compiled graphs are left out. On a GPU torch's own syncs count too (sync debug mode "warn"),
    named with the line outside torch that led to them; on a CPU every read outside torch
    counts. Logs a table at the end of training and writes ``{"batches", "sites": [{"site",
    "reads", "batches"}]}`` to ``path``. What the counts mean: docs/performance.md, "Host reads".
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._mode: _Recorder | None = None
        self._warnings: warnings.catch_warnings | None = None
        self._shown: Any = None  # the showwarning that ours replaces in the window
        self._sync_debug_mode: int | None = None  # torch's, to restore; None off CUDA
        # Import roots, longest first, to name files as modules do (litlab/..., lightning/...).
        self._roots = sorted((os.path.join(p, "") for p in sys.path if p), key=len, reverse=True)
        self._reset()

    def _reset(self) -> None:
        self.batches = 0
        self.reads: Counter[str] = Counter()
        self.read_batches: Counter[str] = Counter()  # batches with at least one read at the site
        self._last: dict[str, int] = {}
        self._trainer: L.Trainer | None = None

    def _site(self, frame: FrameType) -> str:
        file = frame.f_code.co_filename
        file = next((file[len(r) :] for r in self._roots if file.startswith(r)), file)
        return f"{file}:{frame.f_lineno} ({frame.f_code.co_name})"

    def _count(self, site: str) -> bool:
        if self._trainer is not None and self._trainer.validating:
            return False  # a validation loop setting up before on_validation_start
        self.reads[site] += 1
        if self._last.get(site) != self.batches:
            self._last[site] = self.batches
            self.read_batches[site] += 1
        return True

    def _record(self, frame: FrameType) -> bool:
        """Counts a read the recorder saw at ``frame``, unless torch's own; whether it counted."""
        while frame.f_back is not None and frame.f_code.co_filename in DISPATCH:
            frame = frame.f_back  # f"{t}" and repr(t) go through torch's Python methods first
        return not frame.f_code.co_filename.startswith(TORCH_DIR) and self._count(self._site(frame))

    def _show(self, message: Any, category: Any, filename: str, lineno: int, *rest: Any) -> None:
        """``warnings.showwarning`` in the window: counts torch's sync warnings, shows the others."""
        if not str(message).startswith(SYNC_WARNING):
            return self._shown(message, category, filename, lineno, *rest)
        if self._mode is not None and self._mode.counted:
            return None  # the read the recorder is counting
        frame = sys._getframe(1)
        while frame.f_back is not None and (
            frame.f_globals.get("__name__") in BETWEEN_MODULES or frame.f_code.co_filename in DISPATCH
        ):
            frame = frame.f_back
        site, outer = self._site(frame), frame
        while outer.f_back is not None and outer.f_code.co_filename.startswith(TORCH_DIR):
            outer = outer.f_back
        self._count(site if outer is frame else f"{site} via {self._site(outer)}")
        return None

    def _open(self, pl_module: L.LightningModule) -> None:
        self._mode = _Recorder(self._record, host_values_too=pl_module.device.type == "cpu")
        self._mode.__enter__()
        self._warnings = warnings.catch_warnings()  # restores the filters and showwarning on close
        self._warnings.__enter__()
        warnings.filterwarnings("always", message=SYNC_WARNING)  # each one, not once per line
        self._shown, warnings.showwarning = warnings.showwarning, self._show
        if pl_module.device.type == "cuda":
            self._sync_debug_mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")

    def _close(self) -> None:
        if self._sync_debug_mode is not None:
            torch.cuda.set_sync_debug_mode(self._sync_debug_mode)
            self._sync_debug_mode = None
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None
        if self._mode is None:
            return
        if torch.overrides._get_current_function_mode() is self._mode:
            self._mode.__exit__(None, None, None)
        else:  # another mode was entered after ours and is still open: leave the stack to its owner
            log.warning("host_reads: another torch function mode is active; the count may go on past this point")
        self._mode = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self._trainer = trainer

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.batches += 1
        if self._mode is None:
            self._open(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()
        self._report(trainer)  # what was counted up to the failure

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()
        self._report(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        sites = [{"site": s, "reads": n, "batches": self.read_batches[s]} for s, n in self.reads.most_common()]
        lines = [f"  {d['reads']:>7} reads in {d['batches']:>6} of {self.batches} batches  {d['site']}" for d in sites]
        log.info(
            f"Host reads during {self.batches} training batches (on a GPU each waits for the queued kernels):\n"
            + ("\n".join(lines) or "  none")
        )
        if self.path is not None:
            write_json_atomic(self.path, {"batches": self.batches, "sites": sites})
