"""A job's share of the machine: CPU cores and torch threads, its allocator, CUDA matmul precision."""

import logging
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


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
