"""One job of a run or a sweep: a record of how it ended, and its errors as one line.

A failed job leaves ``error.txt`` (the traceback) and a ``metrics.json`` saying
``"status": "failed"`` in its own directory, then re-raises: a single run exits non-zero,
and Hydra's launchers catch the error per job, so the sweep's other jobs still run.
"""

import functools
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from litlab.distributed import other_rank
from litlab.runs import CHECKPOINTS, METRICS_FILE, finished, read_summary, write_json_atomic

log = logging.getLogger(__name__)

ERROR_FILE = "error.txt"
#: A sweep stopped by SIGTERM or SIGUSR1 exits as a process killed by SIGTERM would (128 + 15).
STOPPED_BY_SIGNAL = 143

# conf/hydra/launcher/*.yaml extend the launcher plugins' configs of the same name on purpose
# (Hydra merges them: "automatic schema matching"); its deprecation notice would print on every sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def error_file(run_dir: Path) -> Path:
    """Where this process writes its traceback: ``error.txt``, or ``error-rank<N>.txt`` on another DDP rank."""
    rank = other_rank()
    return run_dir / (ERROR_FILE if rank is None else f"error-rank{rank}.txt")


def _is_rank_zero() -> bool:
    # Under DDP every rank runs the job; one record is enough.
    return other_rank() is None


class NotEchoed(logging.Filter):
    """On the console handler (conf/hydra/job_logging/litlab.yaml): drops records already printed on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "echoed", False)


def tell(logger: logging.Logger, message: str) -> None:
    """``message`` on stderr, and in the run's log file; a terminal shows it once."""
    print(message, file=sys.stderr, flush=True)
    if logger.hasHandlers():  # else logging's last resort would print it on stderr again
        logger.warning(message, extra={"echoed": True})


def record_failure(run_dir: Path, error: BaseException, announce: bool = True) -> None:
    """Write the error into the run directory, keeping any metrics already written.

    A finished run's ``metrics.json`` keeps its status when a later attempt on it (a resume for
    more epochs) fails before replacing its best checkpoint: the failure goes under
    ``last_attempt``, the traceback into ``error.txt``.

    ``announce`` logs one line about it (a sweep's jobs); a single run prints its own (``one_line_errors``).
    """
    if not run_dir.is_dir():
        return
    if not _is_rank_zero():
        # Rank 0 records the run, often with only the symptom (its peer hung up): keep the cause beside it.
        error_file(run_dir).write_text("".join(traceback.format_exception(error)))
        return
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    (run_dir / ERROR_FILE).write_text("".join(traceback.format_exception(error)))
    summary = read_summary(run_dir)
    attempt = {"status": status, "error": f"{type(error).__name__}: {error}".strip()}
    best = summary.get("best_checkpoint")
    if best and not (run_dir / CHECKPOINTS / Path(best).name).is_file():
        summary["best_checkpoint"] = None  # the attempt trained on and replaced it: the run is not as it finished
    elif finished(summary):
        summary["last_attempt"] = attempt  # a finished run resumed again, failing before it changed: its results stand
        attempt = {}
    summary.update(run_dir=str(run_dir), **attempt)
    write_json_atomic(run_dir / METRICS_FILE, summary)
    if announce:
        what = f"{type(error).__name__}: {headline(error)}".rstrip(": ")
        log.error("Job %s: %s (traceback in %s)", status, what, run_dir / ERROR_FILE)


class JobFailed(CompactHydraException):
    """A sweep's job failed: Hydra prints this line at the end of the sweep, not a traceback."""


def headline(error: BaseException) -> str:
    """The line of ``error``'s message that says what went wrong (``...`` when more follow).

    An error raised in a DataLoader worker arrives as "Caught ValueError in DataLoader worker
    process 0." followed by the worker's traceback: its last line is the worker's own message.
    """
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if re.match(r"Caught \w+ in DataLoader worker process \d+\.", lines[0]):
        last = lines[-1]
        return f"{last.split(': ', 1)[1] if ': ' in last else last} (in DataLoader worker {lines[0].split()[-1][:-1]})"
    return lines[0] + (" ..." if len(lines) > 1 else "")


def one_line_errors(task_function: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a Hydra task function: a failed single run ends with one line on stderr, not a traceback.

    A ``ConfigError`` prints its message and exits 2; Ctrl-C exits 130; anything else prints its
    first line and where its traceback is (``error.txt`` in the run directory) and exits 1. A
    sweep's job raises ``JobFailed`` with that line for the launcher to record (the sweep goes
    on), and ``HYDRA_FULL_ERROR=1`` shows the traceback as Hydra would.
    """
    from litlab.rules import ConfigError, missing_value

    @functools.wraps(task_function)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return task_function(cfg)
        except (Exception, KeyboardInterrupt) as error:
            hydra = HydraConfig.get()
            sweep = hydra.mode == RunMode.MULTIRUN
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or (sweep and isinstance(error, KeyboardInterrupt)):
                raise
            if isinstance(error, KeyboardInterrupt):
                raise SystemExit(130) from None  # the shell's code for Ctrl-C; what to do next is printed
            cause, built = error, ""
            # Hydra's "Error in call to target 'X':" hides the cause on its second line: name the cause.
            while isinstance(cause, InstantiationException) and isinstance(cause.__cause__, Exception):
                target = re.search(r"target '([^']+)'", str(cause))
                built = f" (building {target.group(1)})" if target else built
                cause = cause.__cause__
            if isinstance(cause, MissingMandatoryValue):  # a ??? in the config that nothing filled in
                cause = missing_value(cause.full_key)
            run_dir = Path(hydra.runtime.output_dir)
            if isinstance(cause, ConfigError):
                line, status = f"{cause}{built}", 2
            else:
                if not error_file(run_dir).is_file():  # litlab-train's run_job has recorded it already
                    record_failure(run_dir, cause, announce=False)
                what = headline(cause)
                if not isinstance(cause, ValueError | OSError) or not what:  # input errors speak for themselves
                    what = f"{type(cause).__name__}: {what}".rstrip(": ")
                line, status = f"{what}{built} (traceback in {error_file(run_dir)})", 1
            if sweep:
                raise JobFailed(f"litlab: error: job {run_dir.name} failed: {line}") from error
            print(f"litlab: error: {line}", file=sys.stderr)
            raise SystemExit(status) from None

    return wrapper


def run_job(train: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Call ``train(cfg)`` as one job; returns ``cfg.optimized_metric`` for a sweeper."""
    from litlab.run_dirs import holding_run_dir

    hydra = HydraConfig.get()
    run_dir, sweep = Path(hydra.runtime.output_dir), hydra.mode == RunMode.MULTIRUN
    try:
        with holding_run_dir(run_dir):
            metrics = train(cfg)
    except SystemExit as error:
        # A clean exit (preemption: checkpoint saved, resume hint printed) is no failure.
        if error.code not in (None, 0):
            record_failure(run_dir, error, announce=sweep)
        elif sweep:  # but the sweep is not done: a scheduler must not take exit 0 for "finished"
            tell(log, f"A signal stopped the sweep at job {run_dir.name}: the jobs after it did not run.")
            raise SystemExit(STOPPED_BY_SIGNAL) from None
        raise
    except BaseException as error:
        record_failure(run_dir, error, announce=sweep)
        raise
    return metrics.get(cfg.optimized_metric)
