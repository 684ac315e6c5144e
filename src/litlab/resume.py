"""Resume a run in its own directory: same config, same TensorBoard run, no repeated steps.

``ckpt_path=last`` or ``ckpt_path=<run dir>`` on the command line becomes, before Hydra
starts, the original run's overrides plus ``hydra.run.dir=<that run>``: the run continues
where it was, with the config it had (new overrides on the command line still win).
"""

import logging
from pathlib import Path
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

#: Overrides that say where a run is, not what it is: never carried over from the old run.
NOT_CARRIED = ("ckpt_path", "hydra.run.dir")


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The litlab run directory holding ``checkpoint`` (``<run>/checkpoints/x.ckpt``), if any."""
    path = Path(checkpoint).resolve()
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "overrides.yaml").is_file():
        return run
    return None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_overrides(args: list[str], checkpoint: str | Path) -> list[str]:
    """``args`` completed to resume ``checkpoint`` in its run directory; unchanged for other files."""
    from omegaconf import OmegaConf

    run = run_dir_of(checkpoint)
    if run is None:
        return args
    given = {_key(a) for a in args}
    stored = [o for o in OmegaConf.load(run / ".hydra" / "overrides.yaml") if _key(o) not in {*given, *NOT_CARRIED}]
    rest = [a for a in args if _key(a) != "ckpt_path"]
    return [*stored, *rest, f"ckpt_path='{Path(checkpoint).resolve()}'", f"hydra.run.dir='{run}'"]


def requeued_checkpoint(run_dir: str | Path) -> str | None:
    """``last.ckpt`` of a run directory that already has one: a requeued job (submitit, SLURM) resumes it."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


class PurgeRepeatedSteps(L.Callback):
    """Make TensorBoard drop what the dead run logged after its checkpoint; the resumed run logs it again.

    At the first training batch after the restore, each TensorBoard file gets the marker that
    ``SummaryWriter(purge_step=s)`` writes: readers then discard earlier events at steps >= s.
    The step is only known then: Lightning adjusts its logging step while restarting the loop.
    """

    def __init__(self) -> None:
        self.pending = True

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.pending:
            return
        self.pending = False
        from lightning.pytorch.loggers import TensorBoardLogger
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment._get_file_writer()
                writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
                writer.flush()
        log.info(f"Resumed at step {step}; TensorBoard hides what the interrupted run logged from there on")


def prepare_resume(checkpoint: str | Path) -> None:
    """Clear what a crash left beside ``checkpoint``; a resumed run expects its own files there."""
    import warnings

    for stale in Path(checkpoint).parent.glob(".*.tmp"):  # writes cut short (litlab.checkpoint)
        stale.unlink(missing_ok=True)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
