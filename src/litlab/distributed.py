"""DDP under Hydra: start the other ranks inside this job's run directory.

Lightning starts ranks 1..N-1 by re-running the command line with ``hydra.run.dir`` set to
``hydra.run.dir`` of the parent. In a multirun that is wrong twice: the parent's command
line holds the whole sweep (``-m seed=1,2,3``: each child would start a sweep of its own)
and ``hydra.run.dir`` is not the job's directory (each child would make a stray
``runs/<timestamp>`` directory). A child here gets this job's own overrides and directory.
"""

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path


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
        "hydra.output_subdir=null",  # .hydra/ is the parent's to write
        "hydra.job_logging.root.handlers=[console]",  # the log file too
        "print_config=false",
    ]
    return command, get_original_cwd()


def start_children_in_job_dir() -> None:
    """Make Lightning's subprocess launcher use ``child_command``."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = child_command
