"""Check a command line and its config before anything is built: one readable line per mistake.

``check_command_line`` runs before ``@hydra.main`` (so a bad command line leaves no run
directory behind) and ``check_config`` runs again inside ``train()`` (for configs composed
in-process and for each job of a multirun, whose values the command line only lists).
"""

import difflib
import functools
import inspect
import itertools
import sys
from collections.abc import Callable, Iterable
from numbers import Real
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litlab.config import config_dir

_ABSENT = object()
#: Values of one swept key composed and checked before a sweep starts (~0.13 s each).
MAX_SWEEP_VALUES_CHECKED = 50


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the key."""


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# ---- rules on values: (key, check, what is allowed) -------------------------------------------


def _int(lo: int, allow: tuple = ()) -> Callable[[Any], bool]:
    return lambda v: v in allow or (isinstance(v, int) and not isinstance(v, bool) and v >= lo)


def _number(lo: float, allow_none: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if v is None:
            return allow_none
        return isinstance(v, Real) and not isinstance(v, bool) and lo <= v < float("inf")

    return ok


#: Keys whose value must satisfy a check; a key absent from the config is not checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "trainer.max_epochs": (_int(1, (-1, None)), "an integer >= 1, or -1 for no limit"),
    "trainer.min_epochs": (_int(0, (None,)), "an integer >= 0"),
    "trainer.max_steps": (_int(1, (-1,)), "an integer >= 1, or -1 for no limit"),
    "trainer.log_every_n_steps": (_int(1), "an integer >= 1"),
    "trainer.accumulate_grad_batches": (_int(1), "an integer >= 1"),
    "trainer.check_val_every_n_epoch": (_int(1, (None,)), "an integer >= 1 or null"),
    "trainer.gradient_clip_val": (_number(0, allow_none=True), "a finite number >= 0 or null"),
    "data.batch_size": (_int(1), "an integer >= 1"),
    "data.eval_batch_size": (_int(1, (None,)), "an integer >= 1 or null"),
    "data.num_workers": (_int(0), "an integer >= 0"),
    "model.optimizer.lr": (_number(0), "a finite number >= 0"),  # 0: a frozen-weights baseline
    "model.optimizer.weight_decay": (_number(0), "a finite number >= 0"),
    "seed": (_int(0, (None,)), "an integer >= 0 or null"),
    "reuse_freed_memory": (lambda v: isinstance(v, bool), "true or false"),
    "threads": (_int(1, (None,)), "an integer >= 1 or null"),
    "float32_matmul_precision": (lambda v: v in ("highest", "high", "medium"), "highest, high or medium"),
    "callbacks.model_checkpoint.every_n_train_steps": (_int(1, (None, 0)), "an integer >= 1 or null"),
    "callbacks.early_stopping.patience": (_int(0), "an integer >= 0"),
    "callbacks.ema.decay": (lambda v: _number(0)(v) and v < 1, "a number in [0, 1): 1 would never move"),
    "callbacks.ema.update_every_n_steps": (_int(1), "an integer >= 1"),
}


def _check_precision(value: Any) -> None:
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    allowed = [*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)]
    if str(value) not in allowed:
        raise ConfigError(f"trainer.precision={value}: not a precision; choose one of {', '.join(allowed)}")


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


def logged_metrics(task_name: str) -> list[str]:
    """The names a task logs during fit (what a callback may monitor)."""
    import warnings

    from litlab.tasks import TASKS

    # The metric names come from the task's own metrics module, computed once on empty state.
    metrics = TASKS[task_name].make_metrics(None, 2)  # type: ignore[arg-type]
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
    from litlab.tasks.optim import SCHEDULERS

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


def _check_monitors(cfg: DictConfig) -> None:
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
    logged = logged_metrics(task)
    _check_optimized_metric(cfg, task, logged)
    monitors = {f"callbacks.{name}": c for name, c in (cfg.get("callbacks") or {}).items()}
    monitors["model.scheduler"] = OmegaConf.select(cfg, "model.scheduler")
    for key, node in monitors.items():
        monitor = node.get("monitor") if isinstance(node, DictConfig) else None
        if monitor is not None and monitor not in logged:
            raise ConfigError(
                f"{key}.monitor={monitor}: the {task} task never logs it"
                f"{_did_you_mean(monitor, logged)} (logged: {', '.join(logged)})"
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
    held += [f"test/{n[4:]}" for n in held if n.startswith("val/")]
    monitor = OmegaConf.select(cfg, "callbacks.model_checkpoint.monitor")
    held += [f"{monitor}_best"] if monitor else []
    if metric not in held:
        raise ConfigError(
            f"optimized_metric={metric}: no run of the {task} task reports it"
            f"{_did_you_mean(metric, held)} (reported: {', '.join(held)})"
        )


def _meta_task(cfg: DictConfig) -> Any:
    """The task this config builds, on the meta device: shapes only, no memory, no initialisation."""
    import torch

    from litlab.quiet import quiet_lightning
    from litlab.train import build_task

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
    from litlab.resume import check_resumable

    try:
        task = _meta_task(cfg)
    except (TypeError, ValueError) as e:
        # litlab's own messages name the key; torch's and Python's (a value of the wrong kind) do not.
        named = str(e).startswith(("model.", "data."))
        raise ConfigError(str(e) if named else f"model: the task cannot be built from this config ({e})") from None
    where = f"ckpt_path={ckpt}" + (f" ({path})" if path != ckpt else "")
    try:
        if path:
            check_resumable(load_checkpoint(path, mmap=True), task, where)
        elif init:
            init_tensors(init, task.net, skip, mmap=True)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    except ValueError as e:  # the messages name the key or the file already
        raise ConfigError(str(e) if not path or str(e).startswith(where) else f"ckpt_path: {e}") from None


def missing_value(key: str) -> ConfigError:
    return ConfigError(f"{key}: needs a value (it is ???); give it as {key}=...")


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value in ``cfg`` that cannot work."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise missing_value(missing[0])
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not ok(value):
            raise ConfigError(f"{key}={value}: must be {allowed}")
    if OmegaConf.select(cfg, "model.class_weights") == "balanced" and OmegaConf.select(cfg, "data.streaming"):
        raise ConfigError(
            "model.class_weights=balanced: needs the training labels, which a stream (data.streaming=true) "
            "does not list; give the weights as a list"
        )
    if "precision" in cfg.get("trainer", {}):
        _check_precision(cfg.trainer.precision)
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
    _check_monitors(cfg)
    _check_task(cfg)


# ---- the command line, before Hydra makes a run directory --------------------------------------


def _keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, DictConfig):
        out = []
        for k in node:
            path = f"{prefix}.{k}" if prefix else str(k)
            out += [path, *_keys(node._get_node(k), path)]
        return out
    return []


def _first(override: Any) -> str | None:
    """The override with its first sweep value (``seed=1,2`` -> ``seed=1``); None for an unknown sweep."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        value = next(iter(override.sweep_string_iterator()))
    except Exception:  # interval() and other sweeps that only a sweeper can sample
        return None
    return f"{override.get_key_element()}={value}"


def check_command_line(args: list[str], config_name: str = "train") -> DictConfig:
    """The config ``args`` compose to (Hydra's overrides, no flags); ``ConfigError`` for the first bad one."""
    import yaml

    try:
        return _check_command_line(args, config_name)
    except yaml.YAMLError as e:  # a config file of the user's (conf/local/default.yaml) that does not parse
        raise ConfigError(f"a config file is not valid YAML: {' '.join(str(e).split())}") from None


def _check_command_line(args: list[str], config_name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in args:  # one at a time, to name the one that does not parse
        try:
            parser.parse_override(arg)
        except HydraException as e:
            reason = str(e).splitlines()[0]
            raise ConfigError(f"{arg}: cannot parse it ({reason}); see Hydra's override grammar") from None
    parsed = parser.parse_overrides(args)
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = [o for o in parsed if loader.repository.group_exists(o.key_or_group)]
        for o in groups:
            options = loader.get_group_options(o.key_or_group)
            if o.is_delete():
                continue
            if isinstance(o.value(), ChoiceSweep):  # typed: a choice may be a list, [default,ema]
                values = list(o.value().list)
            elif isinstance(o.value(), Glob):  # model=glob(*): the options it matches
                values = o.value().filter(options)
                if not values:
                    raise ConfigError(f"{o.input_line}: matches no option (options: {', '.join(options)})")
            else:
                values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            # A list selects several options at once: callbacks=[default,ema].
            values = [v for value in values for v in (value if isinstance(value, list) else [value])]
            for value in values:
                if value is None:
                    drop = f"{o.key_or_group}=none" if "none" in options else f"~{o.key_or_group}"
                    raise ConfigError(
                        f"{o.key_or_group}=null: a config group takes an option name; to drop it use {drop}"
                        f" (options: {', '.join(options)})"
                    )
                if str(value) not in options:
                    raise ConfigError(
                        f"{o.key_or_group}={value}: no such option{_did_you_mean(str(value), options)}"
                        f" (choose one of {', '.join(options)})"
                    )
        firsts = [_first(o) for o in parsed]
        base = compose(config_name, overrides=[f for o, f in zip(parsed, firsts, strict=True) if o in groups and f])
        keys = _keys(base)
        for o in parsed:
            key = o.key_or_group
            if o in groups or o.is_add() or o.is_force_add() or key.startswith("hydra."):
                continue
            if (
                OmegaConf.select(base, key, default=_ABSENT, throw_on_resolution_failure=False) is (_ABSENT)
                and key not in keys
            ):
                raise ConfigError(f"{key}: no such key{_did_you_mean(key, keys)} (to add a new key: +{key}=...)")

        def checked(overrides: list[str]) -> DictConfig:
            cfg = _compose(overrides, config_name)
            if config_name == "train":
                check_config(cfg)
            return cfg

        # Each later value of a sweep too, with the others at their first: a bad one would
        # otherwise fail only its own jobs, after the jobs before it have trained.
        for i, o in enumerate(parsed):
            if config_name == "train" and firsts[i] and o.is_sweep_override():
                for value in itertools.islice(o.sweep_string_iterator(), 1, MAX_SWEEP_VALUES_CHECKED):
                    checked([*firsts[:i], f"{o.get_key_element()}={value}", *firsts[i + 1 :]])
        return checked(firsts)


def _command_line_overrides(argv: list[str]) -> list[str] | None:
    """The overrides of a plain ``litlab-train [-m] key=value ...``; None when Hydra flags are used.

    Also None with ``hydra.searchpath=[...]``: like ``--config-dir``, it adds config options this
    check does not see; the job checks its composed config itself.
    """
    args = [a for a in argv if a not in ("-m", "--multirun")]
    searchpath = any(a.lstrip("+~").startswith("hydra.searchpath") for a in args)
    return None if searchpath or any(a.startswith("-") for a in args) else args


def _compose(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config ``overrides`` compose to, interpolations resolvable; within ``initialize_config_dir``."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    try:
        cfg = compose(config_name, overrides=[f for f in overrides if f], return_hydra_config=True)
    except HydraException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    if config_name == "train":
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = cfg.hydra.runtime.cwd  # only paths.log_dir is read from here on
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


#: The keys that say where a checkpoint is (``ckpt_path=last`` looks under paths.log_dir/task_name).
LOCATING = ("ckpt_path", "task_name", "paths", "experiment", "hydra")


def _resumed(args: list[str]) -> list[str]:
    """``args`` completed with the overrides of the run that ``ckpt_path`` or ``hydra.run.dir`` resumes.

    Worked out before any check: the run's own overrides (``model=cnn``, ``data=arrays
    data.path=...``) are what the checkpoint and the data checks must be checked against.
    """
    from hydra import initialize_config_dir

    from litlab.resume import override_key, requeued_checkpoint, resume_overrides, with_run_overrides
    from litlab.runs import resolve_checkpoint

    ckpt_path = next((a.partition("=")[2] or "null" for a in args if override_key(a) == "ckpt_path"), "null")
    checkpoint = None
    if ckpt_path != "null":
        # Only what locates the checkpoint: a key of the run's own data or model options (data.path=...)
        # would not compose before those options are back.
        where = [a for a in args if override_key(a).startswith(LOCATING)]
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            try:
                cfg = _compose(where)
            except Exception:  # any: the check of the command line itself names what is wrong
                return args
            try:
                checkpoint = resolve_checkpoint(cfg.get("ckpt_path"), f"{cfg.paths.log_dir}/{cfg.task_name}")
            except FileNotFoundError as e:
                raise ConfigError(str(e)) from None
    if checkpoint is not None:
        return resume_overrides(args, checkpoint)
    run_dir = _run_dir_argument(args)
    # A run started in a run's directory resumes it (as a requeued job does): with its config.
    if run_dir and requeued_checkpoint(run_dir) and Path(run_dir, ".hydra", "overrides.yaml").is_file():
        return with_run_overrides(args, run_dir)
    return args


def _check_run_dir(cfg: DictConfig) -> None:
    """A ``hydra.run.dir`` holding a run's ``last.ckpt`` resumes it (a requeued job does): it must fit."""
    from litlab.checkpoint import load_checkpoint
    from litlab.resume import check_resumable, requeued_checkpoint

    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    last = run_dir and requeued_checkpoint(run_dir)
    if not last:
        return
    where = f"hydra.run.dir={run_dir} holds a run, which a run started there resumes (as a requeued job does)"
    if cfg.get("train") is False:
        raise ConfigError(
            f"{where}; with train=false it would test the initial weights over that run's record: "
            "to test it use litlab-eval ckpt_path=<that run>"
        )
    try:
        check_resumable(load_checkpoint(last, mmap=True), _meta_task(cfg), where, fix="choose another hydra.run.dir")
    except ValueError as e:
        raise ConfigError(str(e) if str(e).startswith(where) else f"{where}, but {e}") from None


def _run_dir_argument(argv: list[str]) -> str | None:
    value = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
    return value.strip("'\"") if value else None


def check_own_run_dir(argv: list[str], command: str) -> None:
    """``ConfigError`` if ``hydra.run.dir`` holds a run of another command, whose record this one would overwrite."""
    run_dir = _run_dir_argument(argv)
    record = Path(run_dir, ".hydra", "hydra.yaml") if run_dir else None
    if record is None or not record.is_file():
        return
    held = OmegaConf.select(OmegaConf.load(record), "hydra.job.config_name")  # not job.name: users rename jobs
    if held is not None and held != command:
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a litlab-{held} run; litlab-{command} would write its own config and "
            "metrics.json over that run's record: choose another directory"
        )


def checked_command(command: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Wrap the ``@hydra.main`` entry point of ``litlab-<command>`` (its config is ``conf/<command>.yaml``).

    Before Hydra makes a run directory, a misspelled key or option exits 2 with one line, and so
    does a ``hydra.run.dir`` holding another command's run.
    """

    def wrap(main: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(main)
        def wrapper() -> Any:
            overrides = _command_line_overrides(sys.argv[1:])
            try:
                check_own_run_dir(sys.argv[1:], command)
                if overrides is not None:
                    check_command_line(overrides, command)
            except ConfigError as e:
                print(f"litlab: error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
            return main()

        return wrapper

    return wrap


def validated(main: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a ``@hydra.main`` entry point: bad overrides exit 2 with one line, before Hydra starts.

    A single run given ``ckpt_path`` also gets the overrides that resume it in its own run
    directory (``litlab.resume``).
    """
    import os

    @functools.wraps(main)
    def wrapper() -> Any:
        overrides = _command_line_overrides(sys.argv[1:])
        # DDP's child ranks re-run the entry point with the parent's (already checked) overrides.
        if overrides is not None and "LOCAL_RANK" not in os.environ:
            try:
                check_own_run_dir(overrides, "train")
                multirun = len(overrides) != len(sys.argv[1:])
                resumed = overrides if multirun else _resumed(overrides)
                cfg = check_command_line(resumed)
                if resumed != overrides:
                    sys.argv[1:] = resumed
                if not multirun and cfg.get("ckpt_path") is None:
                    _check_run_dir(cfg)
            except ConfigError as e:
                print(f"litlab: error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
        try:
            return main()
        except KeyboardInterrupt:  # a sweep's (a single run exits 130 itself): the job said how to resume
            raise SystemExit(130) from None

    return wrapper
