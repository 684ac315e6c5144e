"""Who may write in a run directory: the checks before Hydra makes or reuses one, and its lock.

A run directory holds a run's record (``.hydra/``, metrics.json, checkpoints). A command started
in one that holds another run's, or another command's, or its own earlier output, would write
over it: each check here refuses that with one line (``ConfigError``, exit 2) before anything is
written. A requeued job, or a resume, goes on in its own run's directory.
"""

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litlab.config import compose_as_job, config_dir
from litlab.distributed import other_rank
from litlab.rules import ConfigError
from litlab.train_checks import meta_task


def check_run_dir(cfg: DictConfig) -> None:
    """A ``hydra.run.dir`` holding a run's ``last.ckpt`` resumes it (a requeued job does): it must fit."""
    from litlab.checkpoint import load_checkpoint
    from litlab.resume import check_not_past, check_resumable, requeued_checkpoint

    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    last = run_dir and requeued_checkpoint(run_dir)
    if not last:
        return _check_no_record(cfg, run_dir) if run_dir else None
    where = f"hydra.run.dir={run_dir} holds a run, which a run started there resumes (as a requeued job does)"
    if cfg.get("train") is False:
        raise ConfigError(
            f"{where}; with train=false it would test the initial weights over that run's record: "
            "to test it use litlab-eval ckpt_path=<that run>"
        )
    try:
        checkpoint = load_checkpoint(last, mmap=True)
        check_resumable(checkpoint, meta_task(cfg), where, fix="choose another hydra.run.dir")
        check_not_past(checkpoint, cfg.get("trainer", {}), where)
    except ValueError as e:
        raise ConfigError(str(e) if str(e).startswith(where) else f"{where}, but {e}") from None


def check_checkpoint_dir(cfg: DictConfig) -> None:
    """A fresh run's ``callbacks.model_checkpoint.dirpath`` outside its run directory holds no checkpoints.

    Another run's would be overwritten (``last.ckpt``, the best one). A run directory with a record
    resumes the same run (``check_run_dir``): its checkpoints, wherever they are, are its own.
    """
    run_dir = Path(str(cfg.hydra.run.dir)).resolve()
    if OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath") is None or (run_dir / ".hydra").is_dir():
        return
    dirpath = _checkpoint_dir(cfg, run_dir)
    held = sorted(p.name for p in dirpath.glob("*.ckpt")) if dirpath.is_dir() else []
    if held and not dirpath.is_relative_to(run_dir):
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise ConfigError(
            f"callbacks.model_checkpoint.dirpath={dirpath} holds checkpoints of another run ({shown}), which this "
            "run would overwrite: choose an empty folder, or resume that run with ckpt_path=<its checkpoint or run>"
        )


def check_sweep_checkpoint_dir(cfg: DictConfig) -> None:
    """A sweep's ``callbacks.model_checkpoint.dirpath`` is a folder of each job's own.

    One folder for all would mix the jobs' checkpoints: each would test another's best.
    """
    if OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath") is None:
        return
    sweep_dir = Path(str(cfg.hydra.sweep.dir)).resolve()
    first, second = (_checkpoint_dir(cfg, sweep_dir / str(num), num) for num in (0, 1))
    if first == second:
        raise ConfigError(
            f"callbacks.model_checkpoint.dirpath={first} is one folder for every job of this sweep, whose "
            "checkpoints would overwrite each other's: keep ${paths.output_dir} in it (each job's own directory)"
        )


def _checkpoint_dir(cfg: DictConfig, output_dir: Path, num: int = 0) -> Path:
    """``callbacks.model_checkpoint.dirpath`` resolved as job ``num``, whose directory is ``output_dir``, resolves it.

    What tells a sweep's jobs apart is theirs too: ``${hydra:job.num}``, ``${hydra:job.override_dirname}``.
    """
    import copy

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    job = copy.deepcopy(cfg)
    with read_write(job.hydra), open_dict(job.hydra):
        job.hydra.runtime.output_dir = str(output_dir)
        job.hydra.job.num, job.hydra.job.id = num, f"job_{num}"
        job.hydra.job.override_dirname = f"{cfg.hydra.job.override_dirname},job={num}"
    HydraConfig.instance().set_config(job)
    try:
        return Path(str(job.callbacks.model_checkpoint.dirpath)).resolve()
    finally:
        HydraConfig.instance().set_config(cfg)


def check_sweep_dir(cfg: DictConfig) -> None:
    """A ``hydra.sweep.dir`` holding an earlier sweep is refused: its multirun.yaml and jobs would be overwritten."""
    sweep_dir = OmegaConf.select(cfg, "hydra.sweep.dir")
    if sweep_dir and Path(sweep_dir, "multirun.yaml").is_file():
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} holds an earlier sweep (multirun.yaml), whose record and jobs this one "
            "would overwrite: choose another hydra.sweep.dir (a job of it resumes with ckpt_path=<its directory>)"
        )


def _check_no_record(cfg: DictConfig, run_dir: str) -> None:
    """A run directory holding a record but no ``last.ckpt`` is taken only by the same run, unfinished.

    (A requeued job killed before its first checkpoint starts again there.) Any other run would
    write its config, metrics and TensorBoard events over and among that run's.
    """
    from litlab.resume import stored_overrides
    from litlab.runs import LAST_CHECKPOINT, finished, read_summary

    if not Path(run_dir, ".hydra", "overrides.yaml").is_file():
        return
    try:
        held = stored_overrides(run_dir)
    except ValueError as e:
        raise ConfigError(f"hydra.run.dir={run_dir} holds a run, but {e}") from None
    if sorted(held) != sorted(cfg.hydra.overrides.task):  # the same run, whatever the order typed
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds another run ({' '.join(held) or 'no overrides'}), whose record this "
            "one would overwrite: choose another hydra.run.dir"
        )
    if finished(read_summary(run_dir)):
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds this run, finished and without {LAST_CHECKPOINT} to go on from: "
            "choose another hydra.run.dir to run it again"
        )


def run_dir_argument(argv: list[str], config_name: str = "train") -> str | None:
    """The ``hydra.run.dir`` given on the command line, its interpolations (``${paths.log_dir}``) resolved."""
    from hydra import initialize_config_dir

    from litlab.resume import override_key

    value = next((a.split("=", 1)[1] for a in argv if "=" in a and override_key(a) == "hydra.run.dir"), None)
    value = value.strip("'\"") if value else None
    if not value or "${" not in value:
        return value
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        try:  # with every override: the interpolation may read any key (s${seed})
            cfg = compose_as_job([a for a in argv if a not in ("-m", "--multirun")], config_name)
            return str(OmegaConf.select(cfg, "hydra.run.dir"))
        except Exception:  # any: the check of the command line itself names what is wrong
            return value


#: The run directories this process holds, by path: an open descriptor keeps each lock until closed.
_held: dict[str, int] = {}


def hold_run_dir(run_dir: str | None, strict: bool = True) -> bool:
    """Lock ``run_dir`` for this process; whether it was newly locked here.

    ``ConfigError`` (with ``strict``) if another process holds it: two runs started at once in one
    directory both passed the checks (neither had written its record yet) and wrote their
    configs, metrics and checkpoints among each other's.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        return False
    if not run_dir or str(Path(run_dir).resolve()) in _held:
        return False
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # Hydra makes it next; the checks have passed
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:  # BlockingIOError: held; another OSError: a file system without locks (some network mounts)
        os.close(fd)
        if strict and isinstance(e, BlockingIOError):
            raise ConfigError(
                f"hydra.run.dir={run_dir} is in use by another litlab-train running there now: "
                "wait for it to end, or choose another hydra.run.dir"
            ) from None
        return False
    _held[str(Path(run_dir).resolve())] = fd
    return True


@contextlib.contextmanager
def holding_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold a job's own run directory while it runs: a resume of it started meanwhile is refused.

    The job's first process only (a DDP rank's directory is its parent's). A directory given on the
    command line is held from before Hydra starts (``hold_run_dir``), until the process ends.
    """
    held = other_rank() is None and hold_run_dir(str(run_dir), strict=False)
    try:
        yield
    finally:
        if held:
            os.close(_held.pop(str(Path(run_dir).resolve())))


def check_creatable(cfg: DictConfig, multirun: bool = False) -> None:
    """``ConfigError`` if the run (or sweep) directory cannot be made: Hydra would fail with a traceback."""

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    path = Path(str(OmegaConf.select(cfg, key)))
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: cannot be written here ({existing} is not writable for this user)")


def check_own_run_dir(argv: list[str], command: str) -> None:
    """``ConfigError`` if ``hydra.run.dir`` holds a run of another command, whose record this one would overwrite."""
    run_dir = run_dir_argument(argv, command)
    record = Path(run_dir, ".hydra", "hydra.yaml") if run_dir else None
    if record is None or not record.is_file():
        return
    held = _recorded_command(record)
    if held is None:  # an empty file too: taken for a free directory, another command's record was overwritten
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a run whose record (.hydra/hydra.yaml) is damaged: which command wrote "
            f"it is unknown, and litlab-{command} could write over that run's files: choose another directory"
        )
    if held != command:
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a litlab-{held} run; litlab-{command} would write its own config and "
            "metrics.json over that run's record: choose another directory"
        )


def _recorded_command(record: Path) -> str | None:
    """The command (config name) a run's ``.hydra/hydra.yaml`` records; None if it is damaged or empty."""
    import yaml

    try:
        held = OmegaConf.load(record)
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8, or not a config OmegaConf takes
        return None
    name = OmegaConf.select(held, "hydra.job.config_name") if isinstance(held, DictConfig) else None  # not job.name
    return name if isinstance(name, str) and name else None


def check_no_earlier_output(cfg: Mapping[str, Any], outputs: Iterable[str], command: str) -> None:
    """``ConfigError`` if ``hydra.run.dir`` already holds one of this command's ``outputs`` (file names).

    A default run directory is new (timestamped); one given on the command line may hold an
    earlier run's files, which this run would replace, or, if it failed, leave beside its own
    failed record. Checked on the config composed before Hydra starts: in the job it has no hydra node.
    """
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    held = [name for name in outputs if run_dir and Path(str(run_dir), name).exists()]
    if held:
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds the output of an earlier litlab-{command} ({', '.join(held)}), "
            "which this one would replace: choose another directory"
        )
