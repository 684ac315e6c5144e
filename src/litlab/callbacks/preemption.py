"""SIGTERM / SIGUSR1 (what SLURM sends before preempting a job): checkpoint, say how to resume, exit."""

import logging
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litlab.jobs import tell
from litlab.runs import LAST_CHECKPOINT

log = logging.getLogger(__name__)


class Preemption(L.Callback):
    """Saves ``last.ckpt`` at the end of the batch during which the signal came, then lets Lightning stop.

    With gradient accumulation, at the end of the accumulation window instead.

    Lightning itself only notes SIGTERM and stops after the batch; SIGUSR1 is routed to the
    same path unless a SLURM auto-requeue handler already owns it. The checkpoint is taken
    in ``on_train_batch_end``, the point Lightning's own step checkpoints resume from exactly.
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.saved: str | None = None
        self.interrupted = False  # by Ctrl-C, which Lightning turns into exit(1)
        self._deferred = False  # a signal held until the end of a gradient accumulation window
        self._previous: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._previous = None
        if sys.platform == "win32" or stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):  # SIGUSR1's default action kills
            self._previous = signal.signal(signal.SIGUSR1, self._as_sigterm)

    @staticmethod
    def _as_sigterm(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGTERM)  # Lightning's, while fitting
        if callable(handler):
            handler(signum, frame)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def _path(self, trainer: L.Trainer) -> Path:
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        return Path(dirpath, Path(LAST_CHECKPOINT).name) if dirpath else Path(self.run_dir, LAST_CHECKPOINT)

    def _save(self, trainer: L.Trainer) -> None:
        if self.saved is None:
            self.saved = str(self._path(trainer))
            trainer.save_checkpoint(self.saved, weights_only=False)  # a full checkpoint, to resume from
            # ModelCheckpoint must not later delete or re-version it on resume.
            if trainer.checkpoint_callback is not None:
                trainer.checkpoint_callback.last_model_path = self.saved

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Under DDP Lightning stops all ranks together at the next batch start; see on_exception.
        if trainer.world_size != 1 or not (trainer.received_sigterm or self._deferred):
            return
        # Lightning stops after this batch. Mid-way through a gradient accumulation window the
        # gradients gathered so far would be in no checkpoint, and the resumed step would see
        # only the window's later batches: its flag waits for the window's optimizer step.
        self._deferred = trainer.fit_loop.epoch_loop._should_accumulate()
        trainer._signal_connector.received_sigterm = not self._deferred
        if not self._deferred:
            self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            # No checkpoint now: Ctrl-C may land mid-step. The newest one resumes exactly.
            self.interrupted = True
            if trainer.testing:
                self._tell_test_interrupted(trainer)
                return
            newest = getattr(trainer.checkpoint_callback, "last_model_path", "")
            if newest:
                self._tell(trainer, f"Interrupted at step {trainer.global_step}; newest checkpoint: {newest}.")
            elif trainer.is_global_zero:
                tell(log, f"Interrupted at step {trainer.global_step}, before any checkpoint: nothing to resume.")
        elif isinstance(exception, SIGTERMException):
            self._save(trainer)  # all ranks raise together, so the collective save is safe
            self._tell(
                trainer,
                f"Stopped by a termination signal at step {trainer.global_step}; checkpoint saved to {self.saved}.",
            )

    def _tell_test_interrupted(self, trainer: L.Trainer) -> None:
        """Ctrl-C in the test after training: the checkpoints stand; a resume has nothing left to train, and tests.

        (The checkpoint callback's ``last_model_path`` is empty by then: the file is looked for.)
        """
        trained = f", after training to step {trainer.global_step}" if trainer.global_step else ""
        what = f"Interrupted during the test{trained}"
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if self._path(trainer).is_file():
            kept = f"best: {best}" if best else f"newest: {self._path(trainer)}"
            self._tell(trainer, f"{what}; the checkpoints are kept ({kept}).", then=" (it runs the test)")
        elif trainer.is_global_zero:
            # No last.ckpt to resume from (train=false, or save_last off): test the best checkpoint by itself.
            hint = f" Test it with: litlab-eval ckpt_path={as_argument(best)}" if best else ""
            tell(log, f"{what}; best checkpoint: {best}.{hint}" if best else f"{what}: nothing to resume.")

    def _tell(self, trainer: L.Trainer, what: str, then: str = "") -> None:
        """What happened and how to resume, on stderr and in the log (rank 0 only)."""
        if trainer.is_global_zero:
            resume = f"litlab-train {config_dir_flag()}ckpt_path={as_argument(self.run_dir)}"
            tell(log, f"{what} Resume with: {resume}{then}")


def config_dir_flag() -> str:
    """``--config-dir DIR `` when the run was started with one: its options compose only with it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    sources = HydraConfig.get().runtime.config_sources
    return "".join(f"--config-dir {as_argument(s.path)} " for s in sources if s.provider == "command-line")


def as_argument(value: str) -> str:
    """``value`` as a shell word that Hydra reads back whole: sweep job directories hold ``=`` and ``,``."""
    return value if re.fullmatch(r"[\w./:-]+", value) else f"\"'{value}'\""
