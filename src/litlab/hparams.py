"""The run's hyperparameters and final metrics, for TensorBoard's HParams tab."""

from typing import Any

from omegaconf import DictConfig

from litlab.config import to_plain

#: Config sections shown as hyperparameters in TensorBoard's HParams tab.
HPARAM_SECTIONS = ("model", "data", "trainer", "seed")


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
    from torch.utils.tensorboard.summary import hparams

    from litlab.tensorboard import tensorboard_loggers

    params = flatten({k: to_plain(cfg[k]) if isinstance(cfg[k], DictConfig) else cfg[k] for k in HPARAM_SECTIONS})
    for logger in tensorboard_loggers(trainer):
        logger.log_metrics({k: v for k, v in metrics.items() if k.endswith("_best")}, step=trainer.global_step)
        # Session summaries only: without a per-run "experiment" summary TensorBoard builds the
        # HParams table from all runs, so a sweep's columns are the union of every job's hparams.
        _, session_start, session_end = hparams(params, dict.fromkeys(metrics, 0.0))
        for summary in (session_start, session_end):
            logger.experiment._get_file_writer().add_summary(summary)  # as Lightning does
        logger.experiment.flush()
