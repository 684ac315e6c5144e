"""Resume a run in its own directory: same config, same TensorBoard run, no repeated steps.

``ckpt_path=last`` or ``ckpt_path=<run dir>`` on the command line becomes, before Hydra
starts, the original run's overrides plus ``hydra.run.dir=<that run>``: the run continues
where it was, with the config it had (new overrides on the command line still win).
"""

import logging
from pathlib import Path
from typing import Any

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


def batches_that_stepped(checkpoint: dict[str, Any]) -> int:
    """The logging step a checkpoint was saved at (what Lightning's loggers count in)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    return int(loop.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", checkpoint.get("global_step", 0)))


def prepare_resume(loggers: list[Any], checkpoint: str) -> None:
    """Make TensorBoard drop the steps logged after ``checkpoint`` by the run that died.

    A ``SummaryWriter(purge_step=s)`` marks its file so that readers discard earlier events at
    steps >= s; the resumed run logs those steps again, so each step shows once.
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    from litlab.checkpoint import load_checkpoint

    step = batches_that_stepped(load_checkpoint(checkpoint))
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger._kwargs["purge_step"] = step  # passed on to SummaryWriter, which is created lazily
    for stale in Path(checkpoint).parent.glob(".*.tmp"):  # partial writes of the run that died
        stale.unlink(missing_ok=True)
    log.info(f"Resuming from {checkpoint} (step {step})")
