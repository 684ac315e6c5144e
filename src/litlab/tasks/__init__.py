"""LightningModules: one per kind of task, each wrapping any net of ``litlab.models``."""

from pathlib import Path

import torch
from omegaconf import DictConfig

from litlab.tasks.base import Task
from litlab.tasks.classification import Classifier
from litlab.tasks.multilabel import MultiLabelClassifier
from litlab.tasks.regression import Regressor

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Classifier, MultiLabelClassifier, Regressor)}


def task_class(name: str) -> type[Task]:
    """The task registered as ``data.task=name``; ``ValueError`` naming the tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"data.task={name!r} is not a task; choose one of {sorted(TASKS)}")
    return TASKS[name]


def build_task(cfg: DictConfig) -> Task:
    """The LightningModule for ``cfg.data.task``, sized by the data config."""
    from omegaconf import Container

    from litlab.config import to_plain

    task_cls = task_class(cfg.data.task)
    # Resolved where they sit: an interpolation in the data config (input_shape: ["${data.max_len}"]) resolves.
    io = {k: cfg.data[k] for k in task_cls.data_keys if cfg.data.get(k) is not None}
    io = {k: to_plain(v) if isinstance(v, Container) else v for k, v in io.items()}
    return task_cls(**to_plain(cfg.model), **io)


def load_task(path: str | Path, map_location: str | torch.device = "cpu") -> Task:
    """Rebuild the trained task stored in a litlab checkpoint, without Hydra.

    The net comes back uncompiled even from a ``model.compile=true`` run: evaluating, predicting
    and exporting then need no compiler, and the weights are the same.
    """
    from litlab.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path, map_location=map_location)  # refuses pickled code
    name = checkpoint.get("task")
    if name not in TASKS:
        raise ValueError(f"{path} is not a litlab checkpoint: its 'task' is {name!r}, expected one of {sorted(TASKS)}")
    task = TASKS[name](**{**checkpoint["hyper_parameters"], "compile": False})
    task.load_state_dict(checkpoint["state_dict"])
    return task


def metric_modes(task_name: str | None = None) -> dict[str, str]:
    """``min`` or ``max`` for each metric a task logs (``loss``, ``acc``...): the way it improves.

    From the task's metrics (their ``modes``), or every task's where no name is given.
    """
    tasks = [TASKS[task_name]] if task_name is not None else list(TASKS.values())
    return {"loss": "min", **{name: mode for task in tasks for name, mode in task.make_metrics(2).modes.items()}}


__all__ = [
    "TASKS",
    "Classifier",
    "MultiLabelClassifier",
    "Regressor",
    "Task",
    "build_task",
    "load_task",
    "metric_modes",
    "task_class",
]
