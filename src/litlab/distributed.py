"""DDP under Hydra: start the other ranks inside this job's run directory.

Lightning starts ranks 1..N-1 by re-running the command line with ``hydra.run.dir`` set to
``hydra.run.dir`` of the parent. In a multirun that is wrong twice: the parent's command
line holds the whole sweep (``-m seed=1,2,3``: each child would start a sweep of its own)
and ``hydra.run.dir`` is not the job's directory (each child would make a stray
``runs/<timestamp>`` directory). A child here gets this job's own overrides and directory.
"""

import json
import os
import sys
from datetime import timedelta
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path
from omegaconf import DictConfig, OmegaConf


def other_rank() -> str | None:
    """This process's rank when it is not a job's first process, else None.

    Lightning's DDP children (``LOCAL_RANK``), another node (``NODE_RANK``), torchrun's and SLURM's
    other ranks (``RANK``, ``SLURM_PROCID``): the first process alone checks, records and locks.
    """
    keys = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
    return next((os.environ[k] for k in keys if os.environ.get(k, "0") not in ("", "0")), None)


def child_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory for DDP rank ``local_rank`` of the current Hydra job."""
    import __main__

    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += [
        *hydra.overrides.task,
        f"hydra.run.dir='{hydra.runtime.output_dir}'",
        f"hydra.job.name=train_ddp_process_{local_rank}",
        *other_rank_overrides(hydra),
    ]
    return command, get_original_cwd()


def other_rank_overrides(hydra: DictConfig) -> list[str]:
    """What a rank other than the first adds to the first's overrides: the run's record is the first's to write."""
    overrides = ["hydra.output_subdir=null", "print_config=false"]  # .hydra/ is the first's
    # The first's logging choice (hydra/job_logging=stdout, ...): Hydra keeps it apart from the task's.
    chosen = ("hydra/job_logging=", "hydra.job_logging.")
    overrides += [o for o in hydra.overrides.hydra if o.lstrip("+~").startswith(chosen)]
    # The log file is the first's to write; the other ranks keep the other handlers.
    handlers = OmegaConf.select(hydra.job_logging, "root.handlers")
    if handlers and "file" in handlers:
        overrides.append(f"hydra.job_logging.root.handlers=[{','.join(h for h in handlers if h != 'file')}]")
    return overrides


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1


def _torchrun_store() -> Any:
    """torchrun's store (a ``TCPStore``), which its processes share before DDP starts; None outside torchrun."""
    env = os.environ
    if not _under_torchrun() or env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from torch.distributed import TCPStore

    # A rank waits for the first's checks, which may read a large checkpoint.
    return TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=timedelta(minutes=10))


def _check_run_dir_given(args: list[str], multirun: bool) -> None:
    """Without torchrun's store each rank composes its own ``${now:...}``: one directory must be given."""
    from litlab.resume import override_key
    from litlab.rules import ConfigError

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if _under_torchrun() and not any(override_key(a) == key for a in args):
        raise ConfigError(
            f"under torchrun without its agent store (TORCHELASTIC_USE_AGENT_STORE) each rank would make a "
            f"directory of its own: give {key}=<dir>, the same for every rank"
        )


def _shared_key() -> str:
    return f"litlab/argv/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def share_command_line(cfg: DictConfig, multirun: bool) -> None:
    """Under torchrun: fix the run's directory in ``sys.argv`` and hand the command line to the other ranks.

    torchrun starts every rank with the same command. Composed apart, ``${now:...}`` would give
    each rank a run directory of its own, and only the first has completed the command line
    (a resume's overrides) and checked it.
    """
    from litlab.resume import override_key

    store = _torchrun_store()
    if store is None:
        return _check_run_dir_given(sys.argv[1:], multirun)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if not any(override_key(a) == key for a in sys.argv[1:]):
        sys.argv.append(f"{key}='{OmegaConf.select(cfg, key)}'")
    store.set(_shared_key(), json.dumps([*sys.argv[1:], *other_rank_overrides(cfg.hydra)]))


def first_rank_command_line(multirun: bool) -> bool:
    """On a rank other than the first: the command line the first checked and shared, under torchrun.

    False where nothing was shared: Lightning's DDP children are started with the first's line already;
    other launchers' ranks (srun) must complete it themselves.
    """
    store = _torchrun_store()
    if store is None:
        _check_run_dir_given(sys.argv[1:], multirun)
        return False
    sys.argv[1:] = json.loads(store.get(_shared_key()))
    return True


def lightning_child() -> bool:
    """A DDP rank that Lightning's launcher started (it sets ``LOCAL_RANK``; torchrun sets ``RANK`` too)."""
    return "LOCAL_RANK" in os.environ and "RANK" not in os.environ


#: What Lightning's launcher writes into the parent's environment.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_env_before_first_job: dict[str, str | None] | None = None


def start_children_in_job_dir() -> None:
    """Make Lightning's subprocess launcher use ``child_command``; undo what a previous job left.

    The jobs of a multirun share one process. After a DDP job its process group is still up
    and ``LOCAL_RANK`` is still set, so the next job would reuse a group whose other ranks
    are gone, or wait for ranks started "externally" that never come.
    """
    global _env_before_first_job
    import torch.distributed as dist
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = child_command
    if _env_before_first_job is None:
        _env_before_first_job = {k: os.environ.get(k) for k in LAUNCHER_ENV}
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in _env_before_first_job.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
