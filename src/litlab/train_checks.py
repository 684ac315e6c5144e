"""Check litlab-train's composed config before anything is built: one readable line per mistake.

``check_config`` runs on the command line's config before ``@hydra.main`` (``litlab.command_line``)
and again inside ``train()``, for configs composed in-process and for each job of a multirun,
whose values the command line only lists.
"""

import functools
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from litlab.config import config_dir
from litlab.rules import (
    ConfigError,
    Rules,
    boolean,
    check_common,
    check_rules,
    did_you_mean,
    integer,
    number,
    optional,
)


def _val_check_interval(v: Any) -> bool:
    """Batches or a share of the epoch. Lightning's time forms are left out: a dict reaches it as a
    DictConfig, which it cannot compare, and a time breaks EarlyStopping's setup."""
    if isinstance(v, float):
        return 0 < v <= 1
    return v is None or integer(1)(v)


def _split_size(v: Any) -> bool:
    """A share of the samples (a float in [0, 1)) or a count of them (an integer), as ``split_sizes`` takes."""
    return integer(0)(v) or (isinstance(v, float) and 0 <= v < 1)


def _checkpoint_filename(v: Any) -> bool:
    """Lightning's checkpoint name: a string whose ``{metric:format}`` fields format a number."""
    import string

    if v is None:
        return True
    if not isinstance(v, str):  # {epoch:03d} unquoted: Hydra reads {...} as a dict
        return False
    try:
        for _, field, spec, _ in string.Formatter().parse(v):
            if field is not None:
                format(0, spec or "")
    except ValueError:
        return False
    return True


#: litlab-train's keys whose value must satisfy a check (beside ``COMMON_RULES``).
RULES: Rules = {
    "trainer.max_epochs": (integer(1, (-1, None)), "an integer >= 1, or -1 for no limit"),
    "trainer.min_epochs": (integer(0, (None,)), "an integer >= 0"),
    "trainer.max_steps": (integer(1, (-1,)), "an integer >= 1, or -1 for no limit"),
    "trainer.log_every_n_steps": (integer(1), "an integer >= 1"),
    "trainer.num_sanity_val_steps": (
        integer(0, (-1, None)),
        "an integer >= 0, -1 for all of validation, or null (Lightning's 2)",
    ),
    "trainer.accumulate_grad_batches": (integer(1), "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (integer(1, (None,)), "an integer >= 1 or null"),
    "trainer.gradient_clip_val": (number(0, allow_none=True), "a finite number >= 0 or null"),
    "trainer.val_check_interval": (
        _val_check_interval,
        "an integer >= 1 (batches), a fraction of an epoch in (0, 1], or null",
    ),
    "data.batch_size": (integer(1), "an integer >= 1"),
    "data.eval_batch_size": (integer(1, (None,)), "an integer >= 1 or null"),
    "data.num_workers": (integer(0), "an integer >= 0"),
    "data.val_split": (_split_size, "a fraction in [0, 1) or a count >= 0 (an integer)"),
    "data.test_split": (_split_size, "a fraction in [0, 1) or a count >= 0 (an integer)"),
    "data.split_seed": (integer(0, hi=2**64 - 1), "an integer in [0, 2**64 - 1] (torch's seeds)"),
    # Sample i of synthetic data draws from data_seed * 1_000_003 + i, inside torch's seeds.
    "data.data_seed": (integer(0, hi=2**40), "an integer in [0, 2**40]"),
    "data.hidden": (integer(1), "an integer >= 1 (the width of the teacher network)"),
    "data.prefetch_factor": (integer(1, (None,)), "an integer >= 1 or null"),  # 0: the workers load nothing ahead
    # The data's sizes size the net: torch's own error would name neither the key nor the value.
    "data.input_shape": (lambda v: isinstance(v, ListConfig) and all(map(integer(1), v)), "a list of integers >= 1"),
    "data.num_classes": (integer(2, (None,)), "an integer >= 2 (the classes a classifier chooses from) or null"),
    "data.num_labels": (integer(1, (None,)), "an integer >= 1 or null"),
    "data.num_targets": (integer(1, (None,)), "an integer >= 1 or null"),
    "data.vocab_size": (integer(2, (None,)), "an integer >= 2 (token 0 is padding) or null"),
    "model.optimizer.lr": (number(0), "a finite number >= 0"),  # 0: a frozen-weights baseline
    "model.optimizer.weight_decay": (number(0), "a finite number >= 0"),
    "model.scheduler.warmup_ratio": (
        lambda v: number(0)(v) and v < 1,
        "a number in [0, 1) (the share of the steps that warm up)",
    ),
    "model.scheduler.min_lr_ratio": (lambda v: number(0)(v) and v <= 1, "a number in [0, 1]"),
    # onecycle: 1 leaves its annealing phase no steps (torch divides by zero); 0 starts at the peak.
    "model.scheduler.pct_start": (number(0, below=1), "a number in [0, 1) (the share of the steps that warm up)"),
    "model.scheduler.factor": (  # plateau: >= 1 never lowers the lr, <= 0 zeroes or negates it
        lambda v: number(0, below=1)(v) and v > 0,
        "a number in (0, 1) (what the lr is multiplied by)",
    ),
    "model.optimizer.momentum": (number(0), "a finite number >= 0"),
    "model.optimizer.betas": (
        lambda v: isinstance(v, ListConfig) and len(v) == 2 and all(map(number(0, below=1), v)),
        "two numbers in [0, 1): [beta1, beta2]",
    ),
    "model.label_smoothing": (number(0, below=1), "a number in [0, 1) (1 would make every target uniform)"),
    "seed": (integer(0, (None,), hi=2**32 - 1), "an integer in [0, 2**32 - 1] (numpy's seeds) or null"),
    "threads": (integer(1, (None,)), "an integer >= 1 or null"),
    "float32_matmul_precision": (lambda v: v in ("highest", "high", "medium"), "highest, high or medium"),
    "callbacks.model_checkpoint.every_n_train_steps": (
        integer(0, (None,)),
        "an integer >= 1, or 0 or null for no checkpoints by steps",
    ),
    "callbacks.model_checkpoint.save_top_k": (integer(-1), "an integer >= 1, 0 for none or -1 for every one"),
    "callbacks.model_checkpoint.filename": (
        _checkpoint_filename,
        "a string of {metric:format} fields, quoted: 'callbacks.model_checkpoint.filename=\"{epoch:03d}\"' "
        "(unquoted, Hydra reads {...} as a dict)",
    ),
    "callbacks.confusion_matrix.every_n_epochs": (integer(1), "an integer >= 1"),
    "callbacks.misclassified.max_samples": (integer(0), "an integer >= 0"),
    "callbacks.progress_bar.refresh_rate": (integer(0), "an integer >= 0 (0 turns the bar off)"),
    "callbacks.progress_bar.min_interval": (number(0), "a finite number of seconds >= 0"),
    "callbacks.early_stopping.patience": (integer(0), "an integer >= 0"),
    "callbacks.early_stopping.min_delta": (number(-float("inf")), "a finite number"),
    "callbacks.ema.decay": (lambda v: number(0)(v) and v < 1, "a number in [0, 1): 1 would never move"),
    "callbacks.ema.update_every_n_steps": (integer(1), "an integer >= 1"),
    "callbacks.ema.update_starting_at_step": (integer(0, (None,)), "an integer >= 0, or null for the first step"),
    # Booleans that take more than true and false (every other shipped boolean: ``boolean_rules``).
    "data.pin_memory": (optional(boolean), "true, false or null (pinned when training on a CUDA GPU)"),
    "trainer.deterministic": (optional(boolean, "warn"), "true, false, warn or null"),
    "trainer.fast_dev_run": (lambda v: boolean(v) or integer(0)(v), "true, false or a number of batches >= 0"),
    **{
        f"trainer.{key}": (optional(boolean), "true, false or null (Lightning's default)")
        for key in ("benchmark", "enable_checkpointing", "enable_model_summary")
    },
    "callbacks.model_checkpoint.save_last": (optional(boolean, "link"), "true, false, link or null"),
}


def _leaves(node: DictConfig, prefix: str) -> Iterator[tuple[str, Any]]:
    """Each dotted key of a config file's content under ``prefix``, with its value as written."""
    for key in node:
        if key == "defaults":
            continue
        path, child = f"{prefix}.{key}" if prefix else str(key), node._get_node(key)
        if isinstance(child, DictConfig):
            yield from _leaves(child, path)
        else:
            yield path, child._value()


@functools.cache
def shipped_booleans() -> tuple[str, ...]:
    """The keys of litlab-train's config that every shipped config file sets to true or false.

    A group's file (``conf/data/folder.yaml``) sets keys under the group's name (``data.verify``),
    one headed ``# @package _global_`` at the top, and a ``/_bases/data@_here_`` default is read
    into the file that names it. Hydra's group and ``local`` (the user's) are not litlab's.
    """
    root = config_dir()
    kinds: dict[str, set[bool]] = {}  # key -> whether each file setting it gives a bool

    def read(path: Path, package: str) -> None:
        text = path.read_text()
        package = "" if re.search(r"^#\s*@package\s+_global_", text, re.M) else package
        content = OmegaConf.create(text)
        for entry in content.get("defaults", []):
            if isinstance(entry, str) and entry.endswith("@_here_"):
                name = entry.removesuffix("@_here_")
                read(root / f"{name[1:]}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml", package)
        for key, value in _leaves(content, package):
            kinds.setdefault(key, set()).add(isinstance(value, bool))

    read(root / "train.yaml", "")
    for path in sorted(root.glob("*/**/*.yaml")):
        group = path.parent.relative_to(root).parts
        if group[0] not in ("hydra", "local") and not group[0].startswith("_"):
            read(path, ".".join(group))
    return tuple(key for key, kind in kinds.items() if kind == {True})


def boolean_rules(cfg: DictConfig) -> Rules:
    """``true or false`` for each of ``shipped_booleans``; Hydra would take ``no`` or ``off`` as a (true) string.

    Not for a section built by a class of the user's own (its ``_target_``): its keys may mean something else.
    """

    def users(key: str) -> bool:
        parts = key.split(".")
        targets = (OmegaConf.select(cfg, ".".join([*parts[:i], "_target_"])) for i in range(len(parts) - 1, 0, -1))
        target = next((t for t in targets if t is not None), None)
        return target is not None and not str(target).startswith(("litlab.", "lightning."))

    return {key: (boolean, "true or false") for key in shipped_booleans() if not users(key)}


def _check_precision(value: Any) -> None:
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    allowed = [*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)]
    if str(value) not in allowed:
        raise ConfigError(f"trainer.precision={value}: not a precision; choose one of {', '.join(allowed)}")


def _check_half_adam(cfg: DictConfig) -> None:
    """Pure float16 with Adam: its eps=1e-8 rounds to 0 in float16, and a zero second moment gives NaN."""
    eps = OmegaConf.select(cfg, "model.optimizer.eps", default=1e-8)
    adam = OmegaConf.select(cfg, "model.optimizer.name") in ("adam", "adamw")
    if str(cfg.trainer.precision) == "16-true" and adam and eps < 6e-8:  # float16's smallest number: 6e-8
        raise ConfigError(
            f"trainer.precision=16-true: Adam's state is float16 too, where eps={eps:g} rounds to 0 and the first "
            "steps divide by zero (NaN); use 16-mixed or bf16-true, or give +model.optimizer.eps=1e-4"
        )


#: Lightning's aliases: "gpu" is whichever GPU kind the machine has.
ACCELERATOR_ALIASES = {"gpu": ("cuda", "mps")}


def _check_accelerator(value: Any) -> None:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if value == "auto" or not isinstance(value, str):
        return
    names = sorted(AcceleratorRegistry.available_accelerators())
    if value not in names and value not in ACCELERATOR_ALIASES:
        choices = ", ".join(["auto", "gpu", *names])
        raise ConfigError(f"trainer.accelerator={value}: not an accelerator; choose one of {choices}")
    kinds = ACCELERATOR_ALIASES.get(value, (value,))
    if not any(AcceleratorRegistry[k]["accelerator"].is_available() for k in kinds):
        usable = [n for n in names if AcceleratorRegistry[n]["accelerator"].is_available()]
        raise ConfigError(
            f"trainer.accelerator={value}: no {value} device on this machine; use one of auto, {', '.join(usable)}"
        )


def monitor_mode(task_name: str, metric: str) -> str:
    """``min`` or ``max``: the way ``metric`` (``val/acc``, ``train/loss_step``) of the task improves."""
    from litlab.tasks import metric_modes

    return metric_modes(task_name)[metric.split("/", 1)[-1].removesuffix("_step")]


def logged_metrics(task_name: str) -> list[str]:
    """The names a task logs during fit (what a callback may monitor)."""
    import warnings

    from litlab.tasks import TASKS

    # The metric names come from the task's own metrics module, computed once on empty state.
    metrics = TASKS[task_name].make_metrics(2)
    metrics.sync_on_compute = metrics._to_sync = False  # a local object, whatever process group exists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = ["loss", *metrics.compute()]
    return [*(f"{stage}/{n}" for stage in ("train", "val") for n in names), "train/loss_step"]


def _check_schedule(cfg: DictConfig) -> None:
    """Every ``model.scheduler`` key is an argument of the schedule chosen.

    A model config tunes its default schedule (the Transformer's ``warmup_ratio``); choosing
    another schedule keeps that key, which the other one may not take.
    """
    from litlab.optim import SCHEDULERS

    schedule = OmegaConf.select(cfg, "model.scheduler")
    if not isinstance(schedule, DictConfig) or schedule.get("name") not in SCHEDULERS:
        return  # no schedule, or a name build_scheduler refuses itself
    build = SCHEDULERS[schedule.name]
    params = dict(inspect.signature(build).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # forwarded: to torch's class, if it says so
        if not hasattr(build, "forwards_to"):
            return
        params.update(inspect.signature(build.forwards_to).parameters)
    set_here = ("optimizer", "total_steps", "max_lr", "epochs", "steps_per_epoch", "last_epoch", "verbose")
    takes = [k for k, p in params.items() if k not in set_here and p.kind is p.POSITIONAL_OR_KEYWORD]
    unknown = [k for k in schedule if k != "name" and k not in takes]
    if unknown:
        raise ConfigError(
            f"model.scheduler.{unknown[0]}: the {schedule.name} schedule takes no such argument (it takes "
            f"{', '.join(takes)}); set for another schedule, drop it with ~model.scheduler.{unknown[0]}"
        )
    _check_schedule_fits_trainer(schedule.name, cfg.trainer)


def _check_schedule_fits_trainer(name: str, trainer: DictConfig) -> None:
    """A schedule over the run's steps needs their number; one stepped on validation needs it at epoch ends."""
    where = f"model.scheduler.name={name}"
    if name != "plateau" and trainer.get("max_epochs") == -1 and trainer.get("max_steps", -1) in (-1, None):
        # Lightning's estimate of the total is then infinite: the schedule failed at its first step.
        raise ConfigError(
            f"{where} runs over the run's total steps, which trainer.max_epochs=-1 leaves open: give "
            "trainer.max_steps=<steps> or trainer.max_epochs=<epochs>, or choose model/scheduler=plateau"
        )
    if name == "plateau" and trainer.get("check_val_every_n_epoch", 1) is None:
        raise ConfigError(
            f"{where} steps on a validation metric at the end of each epoch that validates; "
            "trainer.check_val_every_n_epoch=null validates every val_check_interval steps instead: "
            "give trainer.check_val_every_n_epoch=<epochs>, or another schedule"
        )
    if name == "plateau" and trainer.get("limit_val_batches", 1) == 0:
        raise ConfigError(
            f"{where} steps on a validation metric, and trainer.limit_val_batches=0 runs no validation: "
            "choose another schedule, or model.scheduler=null"
        )


def _check_fused_clipping(cfg: DictConfig) -> None:
    precision = str(OmegaConf.select(cfg, "trainer.precision", default=""))
    clip = OmegaConf.select(cfg, "trainer.gradient_clip_val")
    if precision in ("16-mixed", "16") and OmegaConf.select(cfg, "model.optimizer.fused") and clip:
        raise ConfigError(
            f"model.optimizer.fused=true with trainer.precision={precision} cannot clip gradients "
            f"(trainer.gradient_clip_val={clip}): a fused optimizer unscales them inside its step, after "
            "clipping would run; set model.optimizer.fused=false, trainer.precision=bf16-mixed or "
            "trainer.gradient_clip_val=null"
        )


def _check_data(cfg: DictConfig) -> None:
    """The data's transforms build and fit its inputs; ``data.classes`` names each class once."""
    from litlab.data.base import checked_transforms

    data = cfg.get("data") or {}
    keys = ("classes", "num_classes", "num_labels", "vocab_size", "transforms", "batch_transforms")
    try:
        given = {k: OmegaConf.to_object(v) if OmegaConf.is_config(v) else v for k in keys if (v := data.get(k))}
        checked_transforms(**given)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_task_args(cfg: DictConfig) -> None:
    """``data.task`` is a task the data has targets for; ``model`` keys and required ``data`` keys fit it."""
    from litlab.tasks import TASKS

    task = OmegaConf.select(cfg, "data.task")
    if task not in TASKS:
        raise ConfigError(f"data.task={task}: not a task; choose one of {', '.join(sorted(TASKS))}")
    target = OmegaConf.select(cfg, "data._target_")
    try:
        from hydra.utils import get_class

        served = getattr(get_class(target), "tasks", None) if target else None
    except Exception:  # a DataModule that does not import: the job names the error
        served = None
    if served is not None and task not in served:
        raise ConfigError(f"data.task={task}: {target.rsplit('.', 1)[-1]} has targets for {', '.join(served)} only")
    task_cls = TASKS[task]
    params = inspect.signature(task_cls).parameters
    unknown = [k for k in (cfg.get("model") or {}) if k not in params]
    if unknown:
        takes = ", ".join(k for k in params if k not in task_cls.data_keys)
        raise ConfigError(f"model.{unknown[0]}: the {task} task takes no such argument (it takes {takes})")
    for key, param in params.items():
        if key in task_cls.data_keys and param.default is param.empty and OmegaConf.select(cfg, f"data.{key}") is None:
            how = f"data.{key}=..." if key in cfg.data else f"+data.{key}=... (this data config has no such key)"
            raise ConfigError(f"data.task={task}: needs data.{key}; give it as {how}")


def _check_monitors(cfg: DictConfig) -> None:
    """Every monitored metric is one the task logs, watched in the direction it improves."""
    task = cfg.data.task
    logged = logged_metrics(task)
    _check_optimized_metric(cfg, task, logged)
    monitors = {f"callbacks.{name}": c for name, c in (cfg.get("callbacks") or {}).items()}
    monitors["model.scheduler"] = OmegaConf.select(cfg, "model.scheduler")
    for key, node in monitors.items():
        monitor = node.get("monitor") if isinstance(node, DictConfig) else None
        if monitor is not None and monitor not in logged:
            raise ConfigError(
                f"{key}.monitor={monitor}: the {task} task never logs it"
                f"{did_you_mean(monitor, logged)} (logged: {', '.join(logged)})"
            )
        mode = node.get("mode") if isinstance(node, DictConfig) else None
        if monitor is not None and mode is not None and mode != monitor_mode(task, monitor):
            # mode=min on val/acc keeps the worst epoch as the best checkpoint, and tests it.
            better = "higher" if mode == "min" else "lower"
            raise ConfigError(
                f"{key}.mode={mode}: a {better} {monitor} is better; give {key}.mode={monitor_mode(task, monitor)}"
            )


def _check_optimized_metric(cfg: DictConfig, task: str, logged: list[str]) -> None:
    """``optimized_metric`` (what a sweeper minimizes) names a value metrics.json will hold."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or ""
    if not sweeper or sweeper.endswith("BasicSweeper"):
        return  # nothing reads it
    metric = cfg.get("optimized_metric")
    if not isinstance(metric, str) or not metric.startswith(("train/", "val/", "test/")):
        return  # the memory monitor's and a user's own logged values are not known here
    held = [n for n in logged if not n.endswith("_step")]  # metrics.json holds epoch values only
    held += [f"test/{n[4:]}" for n in held if n.startswith("val/")] if cfg.get("test", True) else []
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor")
    held += [f"{monitor}_best"] if monitor else []
    if metric not in held:
        off = " with test=false" if metric.startswith("test/") and not cfg.get("test", True) else ""
        raise ConfigError(
            f"optimized_metric={metric}: no run of the {task} task reports it{off}"
            f"{did_you_mean(metric, held)} (reported: {', '.join(held)})"
        )
    direction = str(OmegaConf.select(cfg, "hydra.sweeper.direction", default="") or "")
    best = monitor_mode(task, metric.removesuffix("_best"))
    if direction[:3] in ("min", "max") and direction[:3] != best:
        # A search for the worst model: Optuna maximized the loss, or minimized the accuracy.
        raise ConfigError(
            f"hydra.sweeper.direction={direction}: a {'higher' if best == 'max' else 'lower'} {metric} is better; "
            f"give hydra.sweeper.direction={best}imize"
        )


def _check_sweeper(cfg: DictConfig) -> None:
    """The sweeper's own check of its settings (``check_config`` of its class, as litlab's Optuna sweeper has).

    Hydra would build the sweeper only once it runs, and report a bad setting as "Error in call to target".
    """
    target = OmegaConf.select(cfg, "hydra.sweeper._target_")
    if not target:
        return
    try:
        from hydra.utils import get_class

        check = getattr(get_class(target), "check_config", None)
    except Exception:  # a sweeper that does not import: Hydra names the error
        return
    if check is not None:
        check(cfg)


def meta_task(cfg: DictConfig) -> Any:
    """The task this config builds, on the meta device: shapes only, no memory, no initialisation."""
    import torch

    from litlab.quiet import quiet_lightning
    from litlab.tasks import build_task

    quiet_lightning()  # model.compile=true imports torch's compiler here already
    with torch.device("meta"):
        return build_task(cfg)


def _check_task(cfg: DictConfig) -> None:
    """The task builds (``model.freeze``, ``model.class_weights`` fit it); ``ckpt_path`` and ``init_from`` fit its net.

    The task is built on the meta device: a few milliseconds, no memory.
    """
    from litlab.finetune import as_list
    from litlab.runs import resolve_checkpoint

    ckpt, init, skip = cfg.get("ckpt_path"), cfg.get("init_from"), as_list(cfg.get("init_skip"))
    if skip and not init:
        raise ConfigError(f"init_skip=[{','.join(skip)}]: has no effect without init_from=<checkpoint or run dir>")
    if "model" not in cfg or "data" not in cfg:
        return
    try:
        path = resolve_checkpoint(ckpt, f"{cfg.paths.log_dir}/{cfg.task_name}")
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    if OmegaConf.missing_keys(cfg.data):  # the job itself names the missing data keys
        return
    from litlab.checkpoint import load_checkpoint
    from litlab.finetune import init_tensors
    from litlab.resume import check_not_past, check_resumable

    try:
        task = meta_task(cfg)
    except (TypeError, ValueError) as e:
        # litlab's own messages name the key; torch's and Python's (a value of the wrong kind) do not.
        named = str(e).startswith(("model.", "data."))
        raise ConfigError(str(e) if named else f"model: the task cannot be built from this config ({e})") from None
    where = f"ckpt_path={ckpt}" + (f" ({path})" if path != ckpt else "")
    try:
        if path:
            checkpoint = load_checkpoint(path, mmap=True)
            check_resumable(checkpoint, task, where)
            check_not_past(checkpoint, cfg.get("trainer", {}), where)
        elif init:
            init_tensors(init, task.net, skip, mmap=True)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    except ValueError as e:  # the messages name the key or the file already
        raise ConfigError(str(e) if not path or str(e).startswith(where) else f"ckpt_path: {e}") from None


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value in ``cfg`` that cannot work."""
    check_common(cfg)
    check_rules(cfg, {**boolean_rules(cfg), **RULES})
    if cfg.get("train") is False and cfg.get("test") is False:
        raise ConfigError("train=false test=false: the run would do nothing; keep one of them true")
    if OmegaConf.select(cfg, "model.class_weights") == "balanced" and OmegaConf.select(cfg, "data.streaming"):
        raise ConfigError(
            "model.class_weights=balanced: needs the training labels, which a stream (data.streaming=true) "
            "does not list; give the weights as a list"
        )
    if OmegaConf.select(cfg, "model.optimizer.nesterov") and OmegaConf.select(cfg, "model.optimizer.momentum") == 0:
        raise ConfigError(  # torch's SGD refuses it once training starts
            "model.optimizer.momentum=0: Nesterov momentum needs a momentum > 0; "
            "give one, or model.optimizer.nesterov=false"
        )
    if "precision" in cfg.get("trainer", {}):
        _check_precision(cfg.trainer.precision)
        _check_half_adam(cfg)
    if "accelerator" in cfg.get("trainer", {}):
        _check_accelerator(cfg.trainer.accelerator)
    arch = OmegaConf.select(cfg, "model.net.arch")
    if arch is not None:
        from litlab.models import NETS

        if arch not in NETS:
            raise ConfigError(f"model.net.arch={arch}: not a network; choose one of {', '.join(sorted(NETS))}")
        from litlab.models.layers import INITS

        params = inspect.signature(NETS[arch]).parameters
        sized_by_data = ("input_shape", "num_outputs", "vocab_size")
        sized = [k for k in cfg.model.net if k in sized_by_data]
        if sized:
            raise ConfigError(f"model.net.{sized[0]}: set by the data config (input_shape, classes, vocab_size)")
        unknown = [k for k in cfg.model.net if k not in ("arch", "init") and k not in params]
        if unknown:
            takes = ", ".join(["init", *(k for k in params if k not in sized_by_data)])
            raise ConfigError(f"model.net.{unknown[0]}: the {arch} net takes no such argument (it takes {takes})")
        init = OmegaConf.select(cfg, "model.net.init", default="default")
        if init != "default" and init not in INITS:
            raise ConfigError(f"model.net.init={init}: unknown; choose one of default, {', '.join(INITS)}")
        vocab_size = OmegaConf.select(cfg, "data.vocab_size", default=None, throw_on_missing=False)
        embedders = sorted(n for n, net in NETS.items() if "vocab_size" in inspect.signature(net).parameters)
        if vocab_size is not None and arch not in embedders:
            raise ConfigError(
                f"model.net.arch={arch}: this data gives token ids (data.vocab_size={vocab_size}), "
                f"which only {', '.join(embedders)} can embed; choose model={embedders[0]}"
            )
    if cfg.get("train") is False and cfg.get("ckpt_path") is not None:
        # The run would test the weights it starts with, in the checkpoint's run directory.
        raise ConfigError(
            f"train=false ckpt_path={cfg.ckpt_path}: a run that does not train does not resume; "
            "to test a checkpoint use litlab-eval ckpt_path=<file or run dir>"
        )
    _check_schedule(cfg)
    _check_fused_clipping(cfg)
    _check_data(cfg)
    _check_task_args(cfg)
    _check_monitors(cfg)
    _check_sweeper(cfg)
    _check_task(cfg)
