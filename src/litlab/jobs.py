"""One job of a run or a sweep: its share of the CPU, its allocator, and a record of how it ended.

A failed job leaves ``error.txt`` (the traceback) and a ``metrics.json`` saying
``"status": "failed"`` in its own directory, then re-raises: a single run exits non-zero,
and Hydra's launchers catch the error per job, so the sweep's other jobs still run.
"""

import json
import logging
import os
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from litlab.runs import METRICS_FILE, write_json_atomic

log = logging.getLogger(__name__)

ERROR_FILE = "error.txt"

# conf/hydra/launcher/*.yaml extend the launcher plugins' configs of the same name on purpose
# (Hydra merges them: "automatic schema matching"); its deprecation notice would print on every sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """Default ``n_jobs`` of ``hydra/launcher=joblib``: one job per core, at most 4.

    Small models scale poorly past a few threads, so a few jobs side by side use the cores
    better than one job with all of them; more than 4 mostly adds memory (each job holds
    its own torch).
    """
    return min(4, usable_cores())


def threads_per_job() -> int | None:
    """Torch threads for one job of a parallel local sweep: the cores split evenly; None elsewhere."""
    hydra = HydraConfig.get()
    n_jobs = hydra.launcher.get("n_jobs") if hydra.mode == RunMode.MULTIRUN else None
    if not n_jobs:
        return None
    cores = usable_cores()
    if n_jobs < 0:  # joblib's convention: -1 is all cores, -2 all but one
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // n_jobs)


def _is_rank_zero() -> bool:
    # Under DDP every rank runs the job; one record is enough. Lightning's rank variables.
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def record_failure(run_dir: Path, error: BaseException) -> None:
    """Write the error into the run directory, keeping any metrics already written."""
    if not _is_rank_zero() or not run_dir.is_dir():
        return
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    (run_dir / ERROR_FILE).write_text("".join(traceback.format_exception(error)))
    path = run_dir / METRICS_FILE
    try:
        summary = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        summary = {}
    summary.update(run_dir=str(run_dir), status=status, error=f"{type(error).__name__}: {error}".strip())
    write_json_atomic(path, summary)
    log.error("Job %s: %s (traceback in %s)", status, summary["error"], run_dir / ERROR_FILE)


def use_resources(cfg: DictConfig) -> None:
    """This job's allocator setting, torch threads and CUDA matmul precision, as ``cfg`` or a parallel sweep asks."""
    import torch

    if cfg.get("reuse_freed_memory"):
        from litlab.allocator import reuse_freed_memory

        reuse_freed_memory()
    threads = cfg.get("threads") or threads_per_job()
    if threads:
        torch.set_num_threads(threads)
        log.info("%d torch thread(s) for this job", threads)
    # Only for a job on a CUDA GPU: on CPUs the setting can change oneDNN's arithmetic too.
    on_gpu = OmegaConf.select(cfg, "trainer.accelerator", default="auto") in ("auto", "gpu", "cuda")
    if cfg.get("float32_matmul_precision") and on_gpu and torch.cuda.is_available():
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)


def run_job(train: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Call ``train(cfg)`` as one job; returns ``cfg.optimized_metric`` for a sweeper."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train(cfg)
    except SystemExit as error:
        # A clean exit (preemption: checkpoint saved, resume hint printed) is no failure.
        if error.code not in (None, 0):
            record_failure(run_dir, error)
        raise
    except BaseException as error:
        record_failure(run_dir, error)
        raise
    return metrics.get(cfg.optimized_metric)
