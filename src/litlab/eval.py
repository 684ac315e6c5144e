"""``litlab-eval ckpt_path=PATH``: test a checkpoint and write metrics.json.

The data config stored in the checkpoint is used unless ``data=...`` is given.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from litlab.collector import entry_point, imports_done
from litlab.command_line import checked_command
from litlab.config import config_dir, instantiate_all
from litlab.jobs import one_line_errors
from litlab.quiet import quiet_lightning
from litlab.run_dirs import check_no_earlier_output
from litlab.runs import METRICS_FILE, finished, inference_checkpoint, read_summary, scalars, write_json_atomic

log = logging.getLogger(__name__)


def check_options(cfg: DictConfig) -> None:
    """``ConfigError`` for a run directory holding an earlier evaluation, whose metrics.json this one would replace.

    A failed one's record is no output: the same command line, mended, runs again there.
    """
    from litlab.rules import check_common

    check_common(cfg)
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    if run_dir and finished(read_summary(run_dir)):
        check_no_earlier_output(cfg, [METRICS_FILE], "eval")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint ``cfg.ckpt_path`` on the test split; returns the test metrics."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from litlab.callbacks.progress_bar import with_progress_bar
    from litlab.checkpoint_data import check_data_fits, data_config, moved_data_hint
    from litlab.tasks import load_task

    imports_done()
    quiet_lightning()
    run_dir = HydraConfig.get().runtime.output_dir
    ckpt_path = inference_checkpoint(cfg)
    data_cfg = data_config(cfg, ckpt_path, alternative="")
    if cfg.print_config:
        print(OmegaConf.to_yaml(data_cfg, resolve=True))

    if cfg.trainer.precision is None:
        cfg.trainer.precision = trained_precision(ckpt_path)
    task = load_task(ckpt_path)
    check_data_fits(task, data_cfg)
    datamodule = instantiate(data_cfg)
    bar = with_progress_bar([], cfg.trainer)
    trainer = instantiate(cfg.trainer, callbacks=bar, logger=instantiate_all(cfg.get("logger")) or False)
    with moved_data_hint(cfg):
        trainer.test(task, datamodule=datamodule)
    metrics = scalars(trainer.callback_metrics)
    write_json_atomic(f"{run_dir}/{METRICS_FILE}", {"checkpoint": ckpt_path, "run_dir": run_dir, "metrics": metrics})
    print(f"Run directory: {run_dir}")
    return metrics


def trained_precision(ckpt_path: str) -> str:
    """The precision the checkpoint's run trained and tested at, so that a test repeats the run's numbers.

    float16 autocast needs a GPU: without one a ``16-mixed`` run is tested at ``bf16-mixed``, what
    Lightning takes instead, and so what such a run trained at on a machine like this one.
    """
    import torch

    from litlab.checkpoint_data import checkpoint_config

    held = str((checkpoint_config(ckpt_path).get("trainer") or {}).get("precision") or "32-true")
    if held in ("16-mixed", "16") and not torch.cuda.is_available():
        log.info(f"Testing at bf16-mixed: the run's {held} takes float16 autocast, which needs a GPU")
        return "bf16-mixed"
    return held


@entry_point
@checked_command("eval")
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
@one_line_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
