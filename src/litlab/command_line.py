"""Check a command line before Hydra makes a run directory: one readable line per mistake, exit 2.

The entry points are wrapped: ``validated`` for ``litlab-train`` (which also completes a
resume's command line with the overrides of the run it resumes), ``checked_command`` for the
others. ``--config-dir`` is followed (as ``hydra.searchpath``); other Hydra flags (``--cfg``,
``--config-name``, ...) skip the check: the job checks its composed config itself
(``train_checks.check_config``).
"""

import contextlib
import functools
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litlab.cli import ctrl_c_exits_at_once, quiet_ctrl_c
from litlab.config import compose_as_job, config_dir, key_paths
from litlab.distributed import first_rank_command_line, lightning_child, other_rank, share_command_line
from litlab.rules import ConfigError, did_you_mean
from litlab.run_dirs import (
    check_checkpoint_dir,
    check_creatable,
    check_own_run_dir,
    check_run_dir,
    check_sweep_checkpoint_dir,
    check_sweep_dir,
    hold_run_dir,
    run_dir_argument,
)

#: Each command's check of its config's values (``rules.check_common`` first): run here, before Hydra starts.
VALUE_CHECKS = {
    "train": "litlab.train_checks.check_config",
    "eval": "litlab.eval.check_options",
    "predict": "litlab.predict.check_options",
    "export": "litlab.export.check_options",
}
_ABSENT = object()
#: Values of one swept key composed and checked before a sweep starts (~0.13 s each).
MAX_SWEEP_VALUES_CHECKED = 50


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
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob
    from hydra.errors import HydraException
    from hydra.utils import get_method

    parser = OverridesParser.create()
    for arg in args:  # one at a time, to name the one that does not parse
        try:
            parser.parse_override(arg)
        except HydraException as e:
            reason = str(e).splitlines()[0]
            raise ConfigError(f"{arg}: cannot parse it ({reason}); see Hydra's override grammar") from None
    from litlab.resume import override_key

    parsed = parser.parse_overrides(args)
    _check_local_keys()
    search = [a for a in args if override_key(a) == "hydra.searchpath"]  # --config-dir's options too
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = [o for o in parsed if _is_group(loader, o.key_or_group, search)]
        for o in groups:
            options = loader.get_group_options(o.key_or_group, overrides=search)
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
                        f"{o.key_or_group}={value}: no such option{did_you_mean(str(value), options)}"
                        f" (choose one of {', '.join(options)})"
                    )
        firsts = [_first(o) for o in parsed]
        try:  # as the job will see it; what Hydra refuses waits for the clearer messages of the checks below
            cfg, refused = compose_as_job(firsts, config_name), None
        except ConfigError as e:
            cfg, refused = None, e
        # The config is struct: Hydra refuses a key it lacks, unless an override adds it or sets its parent
        # first (+a.b=1 a.b=2, a={b:1} a.b=2), or the override is left out (an interval() sweep). Else a
        # key check would find nothing, and its compose of the config without the values is skipped.
        set_keys = [o.key_or_group for o in parsed if o not in groups]
        nested = any(k.startswith(f"{p}.") for k in set_keys for p in set_keys)
        if refused or nested or not all(firsts) or any(o.is_add() or o.is_force_add() for o in parsed):
            chosen = [f for o, f in zip(parsed, firsts, strict=True) if o in groups and f]
            _check_keys(parsed, groups, search, chosen, config_name)
        check_values = get_method(VALUE_CHECKS[config_name])
        # Each later value of a sweep too, with the others at their first: a bad one would
        # otherwise fail only its own jobs, after the jobs before it have trained.
        for i, o in enumerate(parsed):
            if config_name == "train" and firsts[i] and o.is_sweep_override():
                for value in itertools.islice(o.sweep_string_iterator(), 1, MAX_SWEEP_VALUES_CHECKED):
                    swept = [*firsts[:i], f"{o.get_key_element()}={value}", *firsts[i + 1 :]]
                    check_values(compose_as_job(swept, config_name))
        if refused:
            raise refused
        HydraConfig.instance().set_config(cfg)  # as compose_as_job left it: a sweep's composes above set theirs
        check_values(cfg)
        return cfg


def _check_keys(parsed: list[Any], groups: list[Any], search: list[str], chosen: list[str], config_name: str) -> None:
    """``ConfigError`` for an override of a key the config lacks, or of a top-level key the command does not read.

    Checked against the config of the group options ``chosen`` (on the search path ``search``), before any value.
    """
    from hydra import compose
    from hydra.errors import HydraException

    try:
        base = compose(config_name, overrides=[*search, *chosen])
    except HydraException as e:  # +model=cnn (model has an option already), model=[mlp,cnn]
        added = next((f for f in chosen if f.startswith("+")), None)
        if added and str(e).startswith("Multiple values for"):
            raise ConfigError(
                f"{added}: the group has an option already; choose another with {added.lstrip('+')}"
            ) from None
        raise ConfigError(f"{' '.join(chosen)}: {str(e).strip().splitlines()[0]}") from None
    keys = key_paths(base)
    for o in parsed:
        key = o.key_or_group
        added = o.is_add() or o.is_force_add()
        if added and config_name != "train" and "." not in key and key not in base:
            # train's own keys are open to tags (+tag=baseline in a sweep); the other commands read a fixed set
            top = sorted(str(k) for k in base if k != "hydra")
            unread = f"+{key}: litlab-{config_name} reads no such key{did_you_mean(key, top)}"
            raise ConfigError(f"{unread} (its keys: {', '.join(top)})")
        if o in groups or added or key.startswith("hydra."):
            continue
        if (
            OmegaConf.select(base, key, default=_ABSENT, throw_on_resolution_failure=False) is (_ABSENT)
            and key not in keys
        ):
            raise ConfigError(f"{key}: no such key{did_you_mean(key, keys)} (to add a new key: +{key}=...)")


def _is_group(loader: Any, key: str, search: list[str]) -> bool:
    from hydra.core.object_type import ObjectType

    parent, _, name = key.rpartition("/")
    return name in loader.get_group_options(parent, results_filter=ObjectType.GROUP, overrides=search)


def _check_local_keys() -> None:
    """``ConfigError`` for a top-level key of ``conf/local/default.yaml`` that no command's config has.

    Its keys land at the top of every command's config, where a misspelled one (``pathz:``) is
    read by nothing: the setting it was written for would silently not apply.
    """
    local = config_dir() / "local" / "default.yaml"
    held = OmegaConf.load(local) if local.is_file() else None
    if not isinstance(held, DictConfig):
        return
    known = {"defaults", *(p.name for p in config_dir().iterdir() if p.is_dir() and not p.name.startswith("_"))}
    for root in config_dir().glob("*.yaml"):
        known.update(str(k) for k in OmegaConf.load(root))
    groups = {p.name for p in config_dir().iterdir() if p.is_dir()}
    for key in map(str, held):
        if key not in known:
            raise ConfigError(
                f"{local}: {key}: no such top-level key{did_you_mean(key, sorted(known))}"
                f" (top-level keys: {', '.join(sorted(known))})"
            )
        if key in groups and not isinstance(held[key], DictConfig):
            raise ConfigError(f"{local}: {key}: {held[key]} where the keys of {key} go ({key}: {{<key>: <value>}})")


#: ``--config-dir``, which the checks follow (its options are seen through ``hydra.searchpath``).
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def _split_argv(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """The Hydra flags and the overrides of ``litlab-<command> [-m] [--config-dir DIR] key=value ...``.

    The overrides are None where a flag other than those (``--cfg``, ``--config-name``, ...)
    is given: the check is left to the job. ``--config-dir DIR`` becomes
    ``hydra.searchpath=[file://DIR]``, as Hydra adds DIR to its search path, so that the checks
    compose the config the job will (``experiment=<yours>``).
    """
    from litlab.resume import override_key

    flags, overrides, args = [], [], iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        flags.append(arg)
        flag, _, value = arg.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            if not value:
                value = next(args, "")
                flags.append(value)
            overrides.append(f"hydra.searchpath=[file://{Path(value).resolve()}]")
    followed = (*CONFIG_DIR_FLAGS, "-m", "--multirun")
    checked = all(f.partition("=")[0] in followed for f in flags if f.startswith("-"))
    # --config-dir beside hydra.searchpath=[...] is left to Hydra too.
    checked = checked and sum(override_key(o) == "hydra.searchpath" for o in overrides) <= 1
    return flags, overrides if checked else None


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
                cfg = compose_as_job(where)
            except Exception:  # any: the check of the command line itself names what is wrong
                return args
            try:
                checkpoint = resolve_checkpoint(cfg.get("ckpt_path"), f"{cfg.paths.log_dir}/{cfg.task_name}")
            except FileNotFoundError as e:
                raise ConfigError(str(e)) from None
    try:
        if checkpoint is not None:
            return resume_overrides(args, checkpoint)
        run_dir = run_dir_argument(args)
        # A run started in a run's directory resumes it (as a requeued job does): with its config.
        if run_dir and requeued_checkpoint(run_dir) and Path(run_dir, ".hydra", "overrides.yaml").is_file():
            return with_run_overrides(args, run_dir)
    except ValueError as e:  # a damaged record
        raise ConfigError(str(e)) from None
    return args


@contextlib.contextmanager
def exit_2_on_config_error() -> Iterator[None]:
    """A ``ConfigError`` becomes one line on stderr and exit code 2, before Hydra makes a run directory."""
    try:
        yield
    except ConfigError as e:
        print(f"litlab: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def checked_command(command: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Wrap the ``@hydra.main`` entry point of ``litlab-<command>`` (its config is ``conf/<command>.yaml``).

    Before Hydra makes a run directory, a misspelled key or option exits 2 with one line, and so
    does a ``hydra.run.dir`` holding another command's run.
    """

    def wrap(main: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(main)
        @quiet_ctrl_c
        def wrapper() -> Any:
            _, overrides = _split_argv(sys.argv[1:])
            with ctrl_c_exits_at_once(), exit_2_on_config_error():
                check_own_run_dir(sys.argv[1:], command)
                if overrides is not None:
                    check_creatable(check_command_line(overrides, command))
            return main()

        return wrapper

    return wrap


def _complete_argv(flags: list[str], overrides: list[str], resumed: list[str]) -> None:
    """``sys.argv`` with the resumed run's overrides: the flags as given (not --config-dir's search path)."""
    if resumed != overrides:
        derived = set(overrides) - set(sys.argv[1:])
        sys.argv[1:] = [*flags, *(o for o in resumed if o not in derived)]


def _check_no_search(cfg: DictConfig) -> None:
    """A single run with a sweeper chosen (``hparams_search=optuna``) trained one default run, silently."""
    target = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if target and not target.endswith("BasicSweeper"):
        raise ConfigError(
            f"hydra.sweeper={target.rsplit('.', 1)[-1]} (hparams_search=...) searches in a multirun: "
            "add -m (litlab-train -m hparams_search=...)"
        )


def validated(main: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a ``@hydra.main`` entry point: bad overrides exit 2 with one line, before Hydra starts.

    A single run given ``ckpt_path`` also gets the overrides that resume it in its own run
    directory (``litlab.resume``).
    """

    @functools.wraps(main)
    @quiet_ctrl_c
    def wrapper() -> Any:
        argv = sys.argv[1:]
        flags, overrides = _split_argv(argv)
        multirun = any(a in ("-m", "--multirun") for a in argv)
        # DDP's other ranks run the entry point too: the first process checks (Lightning's children
        # get its already checked overrides; under torchrun rank 0 checks for all).
        if overrides is not None and other_rank() is None:
            with ctrl_c_exits_at_once(), exit_2_on_config_error():
                check_own_run_dir(overrides, "train")
                resumed = overrides if multirun else _resumed(overrides)
                cfg = check_command_line(resumed)
                check_creatable(cfg, multirun)
                _complete_argv(flags, overrides, resumed)
                if multirun:
                    check_sweep_dir(cfg)
                    check_sweep_checkpoint_dir(cfg)
                elif cfg.get("ckpt_path") is None:
                    check_run_dir(cfg)
                    check_checkpoint_dir(cfg)
                if not multirun and resumed == overrides:  # not a search's job, resumed
                    _check_no_search(cfg)
                if not multirun:
                    hold_run_dir(run_dir_argument(resumed))
                share_command_line(cfg, multirun)
        elif overrides is not None:
            with ctrl_c_exits_at_once(), exit_2_on_config_error():
                # srun's other tasks complete the line as the first did, unchecked (the first checks).
                if not first_rank_command_line(multirun) and not lightning_child() and not multirun:
                    _complete_argv(flags, overrides, _resumed(overrides))
        return main()  # a sweep's Ctrl-C comes back (a single run exits 130 itself): the job said how to resume

    return wrapper
