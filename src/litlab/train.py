"""``litlab-train``: compose the config, train, test the best checkpoint, write metrics.json.

Heavy imports (torch, Lightning) wait inside ``train()``: ``--help`` and a bad command line
answer before they load.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from litlab.collector import entry_point, imports_done
from litlab.command_line import validated
from litlab.config import config_dir, instantiate_all, to_plain
from litlab.hparams import log_hparams
from litlab.jobs import ERROR_FILE, one_line_errors, run_job
from litlab.quiet import quiet_lightning
from litlab.resources import use_resources
from litlab.runs import METRICS_FILE, read_summary, resolve_checkpoint, scalars, write_json_atomic
from litlab.seed import run_seed
from litlab.train_checks import check_config

if TYPE_CHECKING:
    import lightning as L

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test as ``cfg`` says; returns the final metrics."""
    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from litlab.callbacks import ExactResume, Preemption, PurgeRepeatedSteps, StoreConfig
    from litlab.callbacks.progress_bar import with_progress_bar
    from litlab.distributed import start_children_in_job_dir
    from litlab.resume import prepare_resume, requeued_checkpoint
    from litlab.tasks import build_task

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
    callbacks = with_progress_bar(callbacks, cfg.trainer)
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
    stopper = trainer.early_stopping_callback
    if stopper is not None and trainer.should_stop and stopper.stopping_reason_message:  # stopped in this run
        log.info(f"early stopping in epoch {stopper.stopped_epoch}: {stopper.stopping_reason_message}")
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)

    if checkpoint is not None and checkpoint.monitor and not best and cfg.train and not trainer.fast_dev_run:
        if trainer.limit_val_batches == 0:
            why = "validation is off (trainer.limit_val_batches=0)"
        elif not sum(trainer.num_val_batches):
            why = "the data has no validation split"
        else:
            why = f"training stopped at step {trainer.global_step}, before the first validation"
        tested = "; the weights as they are now are tested" if cfg.test else ""
        log.warning(f"no best checkpoint by {checkpoint.monitor}: {why}{tested}")
    if cfg.test:
        # The best checkpoint when one was kept, else the weights as they are now.
        try:
            trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        except SystemExit:
            if not preemption.interrupted:
                raise
            # Training's record stands (its checkpoints, its metrics); run_job adds the interruption.
            if trainer.is_global_zero:
                interrupted = {"status": "interrupted", "interrupted_in": "test"}
                write_json_atomic(
                    f"{run_dir}/{METRICS_FILE}", {**summary(trainer, cfg, run_dir, best, metrics), **interrupted}
                )
            raise KeyboardInterrupt("during the test; the checkpoints of training are kept") from None
        metrics.update(scalars(trainer.callback_metrics))
        if not sum(trainer.num_test_batches):
            off = trainer.limit_test_batches == 0
            why = "testing is off (trainer.limit_test_batches=0)" if off else "the data has no test split"
            log.warning(f"no test metrics: {why}")

    if trainer.is_global_zero:
        record = summary(trainer, cfg, run_dir, best, metrics)
        metrics = record["metrics"]
        write_json_atomic(f"{run_dir}/{METRICS_FILE}", record)
        Path(run_dir, ERROR_FILE).unlink(missing_ok=True)  # of an earlier attempt this run resumed
        log_hparams(trainer, cfg, metrics)
        print("\n".join([f"  {k:<24} {v:.4f}" for k, v in metrics.items()] + [f"Run directory: {run_dir}"]))
    return metrics


def summary(
    trainer: "L.Trainer", cfg: DictConfig, run_dir: str, best: str, metrics: dict[str, float]
) -> dict[str, Any]:
    """The run's ``metrics.json``: where its checkpoints are, how far it trained, ``metrics``."""
    # A resumed run that had nothing left to train logs no train/val metrics: keep the earlier ones.
    earlier = {k: v for k, v in (read_summary(run_dir).get("metrics") or {}).items() if v is not None}  # null: NaN
    return {
        "run_dir": run_dir,
        "best_checkpoint": best or None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "seed": cfg.seed,
        "metrics": {**earlier, **metrics},
    }


@entry_point
@validated
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return run_job(train, cfg)


if __name__ == "__main__":
    main()
