"""The seed of a run: the one given, the one a resumed run drew, or one every process of a job agrees on."""

import logging
import os
import random
import zlib

from litlab.rules import ConfigError

log = logging.getLogger(__name__)


def shared_job_id() -> str | None:
    """An id that every process of this multi-process job shares (and no other job has), if any.

    ``ConfigError`` for processes of one job that have none to agree on: torchrun without
    ``--rdzv-id`` names every run ``none``.
    """
    env = os.environ
    if "SLURM_PROCID" in env and int(env.get("SLURM_STEP_NUM_TASKS", 1)) > 1:  # one task of an srun step
        return f"slurm {env.get('SLURM_JOB_ID')}.{env.get('SLURM_STEP_ID')}"
    if int(env.get("WORLD_SIZE", 1)) > 1:  # torchrun and other launchers that set the world size
        run = env.get("TORCHELASTIC_RUN_ID", "none")
        if run == "none":
            raise ConfigError(
                "seed=null: this job's processes share no id to agree on a seed (torchrun: give --rdzv-id); "
                "give seed=<integer>"
            )
        return f"torchrun {run}"
    return None


def run_seed(seed: int | None, checkpoint: str | None = None) -> int:
    """``seed``; for ``seed=null`` the seed a resumed run drew, or a fresh one (logged, to repeat the run).

    Every process of a run must draw the same one, or their data shards would overlap: DDP ranks
    that Lightning starts inherit it (``PL_GLOBAL_SEED``); processes that SLURM or torchrun start
    derive it from the id of the job step they share.
    """
    if seed is not None:
        return seed
    if checkpoint:
        from litlab.checkpoint import load_checkpoint

        held = (load_checkpoint(checkpoint, mmap=True).get("config") or {}).get("seed")
        if held is not None:
            return int(held)
    if "PL_GLOBAL_SEED" in os.environ and os.environ.get("LOCAL_RANK", "0") != "0":
        return int(os.environ["PL_GLOBAL_SEED"])
    shared = shared_job_id()
    seed = zlib.crc32(shared.encode()) % 2**31 if shared else random.SystemRandom().randrange(2**31)
    how = f"from the id of the job step its processes share ({shared})" if shared else "drawn"
    log.info(f"seed=null: seed {seed}, {how} (seed={seed} repeats this run)")
    return seed
