"""``litlab-train``: compose the config, train, test the best checkpoint, write metrics.json.

Heavy imports (torch, Lightning) wait inside ``train()``: ``--help`` and a bad command line
answer before they load.
"""

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.collector import entry_point, imports_done
from litlab.command_line import validated
from litlab.config import config_dir, to_plain
from litlab.jobs import ERROR_FILE, one_line_errors, run_job, use_resources
from litlab.quiet import quiet_lightning
from litlab.runs import METRICS_FILE, resolve_checkpoint, scalars, write_json_atomic
from litlab.validate import check_config

log = logging.getLogger(__name__)

#: Config sections shown as hyperparameters in TensorBoard's HParams tab.
HPARAM_SECTIONS = ("model", "data", "trainer", "seed")


def build_task(cfg: DictConfig) -> Any:
    """The LightningModule for ``cfg.data.task``, sized by the data config."""
    from litlab.tasks import TASKS

    if cfg.data.task not in TASKS:
        raise ValueError(f"data.task={cfg.data.task!r} is not a task; choose one of {sorted(TASKS)}")
    task_cls = TASKS[cfg.data.task]
    io = {k: cfg.data[k] for k in task_cls.data_keys if cfg.data.get(k) is not None}
    return task_cls(**to_plain(cfg.model), **to_plain(OmegaConf.create(io)))


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a callbacks/logger group; entries set to null are skipped."""
    from hydra.utils import instantiate

    return [instantiate(c) for c in (group or {}).values() if c is not None]


def with_progress_bar(callbacks: list[Any], enabled: bool) -> list[Any]:
    """``callbacks`` with litlab's progress bar where none is configured and the bar is on.

    Lightning would add its own, which redraws on every batch (``callbacks=none``, or
    ``callbacks.progress_bar=null``); ``trainer.enable_progress_bar=false`` turns the bar off.
    """
    from lightning.pytorch.callbacks.progress import ProgressBar as AnyBar

    from litlab.callbacks import ProgressBar

    if not enabled or any(isinstance(c, AnyBar) for c in callbacks):
        return callbacks
    return [*callbacks, ProgressBar()]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become strings (TensorBoard wants scalars)."""
    if not isinstance(tree, dict):
        return {prefix: tree if isinstance(tree, int | float | str | bool) else str(tree)}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if not str(key).startswith("_"):
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def log_hparams(trainer: Any, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Write the run's hyperparameters with its final metrics for TensorBoard's HParams tab.

    The HParams tab shows, for each metric name declared here, the last value of the scalar
    with that tag; derived values (``*_best``) are logged as scalars first so they exist.
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import hparams

    params = flatten({k: to_plain(cfg[k]) if isinstance(cfg[k], DictConfig) else cfg[k] for k in HPARAM_SECTIONS})
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_metrics({k: v for k, v in metrics.items() if k.endswith("_best")}, step=trainer.global_step)
            # Session summaries only: without a per-run "experiment" summary TensorBoard builds the
            # HParams table from all runs, so a sweep's columns are the union of every job's hparams.
            _, session_start, session_end = hparams(params, dict.fromkeys(metrics, 0.0))
            for summary in (session_start, session_end):
                logger.experiment._get_file_writer().add_summary(summary)  # as Lightning does
            logger.experiment.flush()


def previous_metrics(run_dir: str) -> dict[str, float]:
    """The metrics an earlier attempt of this run wrote into its ``metrics.json`` (none if it wrote none)."""
    try:
        return dict(json.loads(Path(run_dir, METRICS_FILE).read_text()).get("metrics") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def shared_job_id() -> str | None:
    """An id that every process of this multi-process job shares (and no other job has), if any.

    ``ConfigError`` for processes of one job that have none to agree on: torchrun without
    ``--rdzv-id`` names every run ``none``.
    """
    import os

    from litlab.validate import ConfigError

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
    import os
    import random
    import zlib

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


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test as ``cfg`` says; returns the final metrics."""
    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from litlab.callbacks import ExactResume, Preemption, StoreConfig
    from litlab.distributed import start_children_in_job_dir
    from litlab.resume import PurgeRepeatedSteps, prepare_resume, requeued_checkpoint

    imports_done()
    quiet_lightning()
    run_dir = HydraConfig.get().runtime.output_dir
    check_config(cfg)
    use_resources(cfg)
    if cfg.print_config:
        print(OmegaConf.to_yaml(cfg, resolve=True))
    # A requeued job (submitit, SLURM) finds its own last.ckpt and goes on from there.
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, f"{cfg.paths.log_dir}/{cfg.task_name}")
    ckpt_path = ckpt_path or requeued_checkpoint(run_dir)
    with open_dict(cfg):  # the seed used, wherever the config is stored (checkpoints, hparams)
        cfg.seed = run_seed(cfg.seed, ckpt_path)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    task = build_task(cfg)
    if cfg.get("init_from") and ckpt_path:
        log.info(f"init_from={cfg.init_from} is not read: the resumed run's weights are in {ckpt_path}")
    elif cfg.get("init_from"):
        from litlab.finetune import as_list, init_from

        init_from(task.net, cfg.init_from, as_list(cfg.init_skip))
    loggers = instantiate_all(cfg.get("logger"))
    preemption = Preemption(run_dir)
    callbacks = [*instantiate_all(cfg.get("callbacks")), StoreConfig(to_plain(cfg)), ExactResume(), preemption]
    callbacks = with_progress_bar(callbacks, cfg.trainer.get("enable_progress_bar", True) is not False)
    if ckpt_path:
        prepare_resume(ckpt_path)
        callbacks.append(PurgeRepeatedSteps())
    if not loggers:
        # Lightning refuses a LearningRateMonitor without a logger; with logger=none there is nowhere to log to.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    start_children_in_job_dir()
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.train:
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit:
            if preemption.interrupted:  # recorded as interrupted, not failed
                raise KeyboardInterrupt from None
            raise
    metrics = scalars(trainer.callback_metrics)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)

    if checkpoint is not None and checkpoint.monitor and not best and cfg.train:
        tested = "; the weights as they are now are tested" if cfg.test else ""
        log.warning(
            f"no best checkpoint by {checkpoint.monitor}: training stopped at step {trainer.global_step}, before the "
            f"first validation{tested}"
        )
    if cfg.test:
        # The best checkpoint when one was kept, else the weights as they are now.
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(scalars(trainer.callback_metrics))

    if trainer.is_global_zero:
        # A resumed run that had nothing left to train logs no train/val metrics: keep the earlier ones.
        metrics = {**previous_metrics(run_dir), **metrics}
        summary = {
            "run_dir": run_dir,
            "best_checkpoint": best or None,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "seed": cfg.seed,
            "metrics": metrics,
        }
        write_json_atomic(f"{run_dir}/{METRICS_FILE}", summary)
        Path(run_dir, ERROR_FILE).unlink(missing_ok=True)  # of an earlier attempt this run resumed
        log_hparams(trainer, cfg, metrics)
        print("\n".join([f"  {k:<24} {v:.4f}" for k, v in metrics.items()] + [f"Run directory: {run_dir}"]))
    return metrics


@entry_point
@validated
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return run_job(train, cfg)


if __name__ == "__main__":
    main()
