"""A Hydra sweeper that runs an Optuna study: ``litlab-train -m hparams_search=optuna``.

Why not ``hydra-optuna-sweeper``: every release of it (up to 1.3.0) requires ``optuna<3``,
which pip cannot install beside current Optuna. This sweeper is the part litlab needs,
on Optuna's ask-and-tell API. The search space uses Hydra's sweep syntax, as that plugin's
did: ``choice(...)`` (categorical), ``range(a, b[, step])`` (integers, ``b`` excluded) and
``interval(a, b)`` (floats); ``tag(log, ...)`` of a range or an interval samples on a log scale.

Each batch of ``n_jobs`` trials goes to the configured launcher, so ``hydra/launcher=joblib``
runs them in parallel. A trial whose job fails, or returns no finite value, is told to
Optuna as failed and the search goes on. Optuna is imported only when a sweep starts: Hydra
imports every plugin module on every start-up.

A setting or a space that cannot work ends in one line and exit status 2, as litlab's other
config errors do: ``check_config`` runs before Hydra starts (``litlab.train_checks``), and the space
the command line adds (``interval()`` is not in the composed config), the keys of the whole space
(in the config of each ``model`` a sweep chooses) and a stored study are checked before the sweep
directory is made.
"""

import contextlib
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException, HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from litlab.config import key_paths
from litlab.rules import ConfigError, Rules, check_rules, did_you_mean, integer

log = logging.getLogger(__name__)

DIRECTIONS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
RESULTS_FILE = "optuna_results.yaml"
#: What a trial adds by its model: the distributions of its net's ``net_params``, the fixed overrides of its job.
ByModel = dict[str | None, tuple[dict[str, Any], list[str]]]

#: The sweeper's settings; Hydra's "Error in call to target" would report them, not naming an ``abc``.
SETTINGS: Rules = {
    "hydra.sweeper.direction": (lambda v: str(v) in DIRECTIONS, "minimize or maximize (min, max)"),
    "hydra.sweeper.n_trials": (integer(1), "an integer >= 1"),
    "hydra.sweeper.n_jobs": (
        integer(1),
        "an integer >= 1 (by default the launcher's hydra.launcher.n_jobs: give joblib a count, not -1)",
    ),
}


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (``key=choice(...)`` and so on); ``ConfigError`` if none fits."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    try:
        if isinstance(sweep, ChoiceSweep):
            # Choices as their override strings: lists and dicts become exact, hashable categories.
            return CategoricalDistribution(list(override.sweep_string_iterator()))
        if isinstance(sweep, RangeSweep):
            values = [float(v) for v in override.sweep_iterator()]
            if not all(v.is_integer() for v in values) or len(values) < 2:
                if "log" in sweep.tags:
                    raise ValueError("a log scale needs a range of integers, at least two")
                return CategoricalDistribution(list(override.sweep_string_iterator()))
            log_scale = "log" in sweep.tags
            return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step), log=log_scale)
        if isinstance(sweep, IntervalSweep):
            return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    except ValueError as e:  # Optuna's: a log scale reaching 0 or below, low above high, no choices
        raise ConfigError(f"{override.input_line}: Optuna cannot sample it: {str(e).rstrip('.')}") from None
    raise ConfigError(f"{override.input_line}: an Optuna search takes choice(), range() or interval(), not this sweep")


def distributions(parser: OverridesParser, overrides: Sequence[str]) -> dict[str, Any]:
    """The distribution of each sweep among ``overrides`` (``key=value`` strings), by key."""
    space = {}
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except HydraException as e:
            raise ConfigError(f"{line}: cannot parse it ({str(e).splitlines()[0]})") from None
        if o.is_sweep_override():
            space[o.get_key_element()] = distribution(o)
    return space


def split_space(
    parser: OverridesParser, overrides: Sequence[str], pinned: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """The sweeps among ``overrides`` as distributions, and the plain ones, the last of each key; keys in
    ``pinned`` are neither (the command line sets them)."""
    space = {k: d for k, d in distributions(parser, overrides).items() if k not in pinned}
    plain = {o.get_key_element(): o.input_line for o in parser.parse_overrides(list(overrides))}
    return space, [line for key, line in plain.items() if key not in space and key not in pinned]


def check_keys(cfg: DictConfig, keys: Sequence[str], model: str | None) -> None:
    """``ConfigError`` naming a key the search sets (``key`` of ``key=value``) that the job's config lacks.

    Hydra would refuse it only as the first trial's job is composed, in a multi-line error that ends the search.
    """
    paths = key_paths(cfg)
    for key in keys:
        if key.startswith(("+", "~")) or "/" in key or "@" in key or key in cfg.hydra.runtime.choices:
            continue  # a new key, a deleted one, a config group
        if key not in paths:
            where = f" with model={model}" if model is not None else ""
            raise ConfigError(
                f"{key}: the search sets it, but the config{where} has no such key{did_you_mean(key, paths)} "
                f"(to add a new key: +{key})"
            )


def suggest(trial: Any, key: str, dist: Any) -> None:
    """Sample ``key`` from ``dist`` in ``trial``, as ``study.ask(distributions)`` does."""
    if hasattr(dist, "choices"):
        trial.suggest_categorical(key, dist.choices)
    elif isinstance(dist.low, int):
        trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    else:
        trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def format_value(value: Any) -> str:
    """A sampled value as an override: floats to 4 significant digits, so job names stay readable."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class OptunaSweeper(Sweeper):
    """Samples ``params`` (plus ``net_params`` of each trial's ``model.net.arch``) with an Optuna sampler;
    their plain values are given to every trial."""

    def __init__(
        self,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: Any = None,
        study_name: str | None = None,
        storage: str | None = None,
        params: dict[str, str] | None = None,
        net_params: dict[str, dict[str, str]] | None = None,
    ) -> None:
        settings = {"direction": direction, "n_trials": n_trials, "n_jobs": n_jobs}
        check_rules(OmegaConf.create({"hydra": {"sweeper": settings}}), SETTINGS)
        self.direction, self.n_trials, self.n_jobs = DIRECTIONS[str(direction)], n_trials, n_jobs
        self.sampler, self.study_name, self.storage = sampler, study_name, storage
        self.params = dict(params or {})
        self.net_params = {k: dict(v or {}) for k, v in (net_params or {}).items()}

    @staticmethod
    def check_config(cfg: DictConfig) -> None:
        """``ConfigError`` for a setting or a configured sweep that cannot work; ``litlab.train_checks`` calls it."""
        check_rules(cfg, SETTINGS)
        node, arch = cfg.hydra.sweeper, OmegaConf.select(cfg, "model.net.arch")
        spaces = {"params": node.get("params"), f"net_params.{arch}": (node.get("net_params") or {}).get(arch)}
        for where, params in spaces.items():
            try:
                distributions(OverridesParser.create(), [f"{k}={v}" for k, v in (params or {}).items()])
            except ConfigError as e:
                raise ConfigError(f"hydra.sweeper.{where}: {e}") from None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def search_space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], ByModel]:
        """The distributions every trial samples, and what it adds by the ``model`` it gets (None: not a sweep)."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        command_line = parser.parse_overrides(list(arguments))
        pinned = {o.get_key_element() for o in command_line if not o.is_sweep_override()}
        # Command-line sweeps add to the configured space; a plain key=value pins that key, in the
        # config as on the command line (``model.net.dropout: 0.3`` beside the sweeps: every trial gets it).
        given = [f"{k}={v}" for k, v in self.params.items()]
        common, fixed = split_space(parser, [*given, *(o.input_line for o in command_line)], pinned)
        fixed += [o.input_line for o in command_line if not o.is_sweep_override()]
        models = common.get("model")
        # net_params follow each trial's net: with model=mlp,cnn a cnn trial gets the cnn's keys.
        configs = {None: self.config}
        if hasattr(models, "choices"):
            configs = {str(m): self._compose([*fixed, f"model={m}"]) for m in models.choices}
        by_model = {}
        for model, cfg in configs.items():
            arch = OmegaConf.select(cfg, "model.net.arch")
            net_given = [f"{k}={v}" for k, v in (self.net_params.get(arch) or {}).items()]
            net, net_fixed = split_space(parser, net_given, pinned | set(common))
            check_keys(cfg, [*common, *net, *(line.split("=", 1)[0] for line in [*fixed, *net_fixed])], model)
            by_model[model] = net, [*net_fixed, *fixed]
        if not common and not any(net for net, _ in by_model.values()):
            raise ConfigError("hparams_search: the search space is empty (hydra.sweeper.params)")
        return common, by_model

    def _compose(self, overrides: list[str]) -> DictConfig:
        """The config of a job given ``overrides``, as the launcher composes it."""
        try:
            return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except HydraException as e:
            raise ConfigError(f"{overrides[-1]}: {str(e).strip().splitlines()[0]}") from None

    def sweep(self, arguments: list[str]) -> None:
        from litlab.command_line import exit_2_on_config_error

        with exit_2_on_config_error():  # one line, exit 2, before the sweep directory is made
            common, by_model = self.search_space(arguments)
            space = {**common, **{k: d for net, _ in by_model.values() for k, d in net.items()}}
            study = self.open_study(space)
        # Resolving the sweep directory here also fixes its timestamp for every job.
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if study.trials:
            # A seeded sampler starts its draws again from the seed: the first trials would be repeated.
            study.sampler.reseed_rng()
            done = len(study.trials)
            log.info("Continuing study %s (%d trials so far) with a reseeded sampler", study.study_name, done)
        log.info("Optuna %s of %s over %s", self.direction, self.config.optimized_metric, ", ".join(space))
        trials: list[dict[str, Any]] = []
        pending: list[Any] = []  # asked, not told yet
        try:
            while len(trials) < self.n_trials:
                jobs = []
                for _ in range(min(self.n_jobs, self.n_trials - len(trials))):
                    trial = study.ask(common)
                    pending.append(trial)
                    net, fixed = by_model[trial.params.get("model")]
                    for key, dist in net.items():
                        suggest(trial, key, dist)
                    jobs.append((fixed, [f"{k}={format_value(v)}" for k, v in trial.params.items()]))
                returns = self.launcher.launch([[*f, *o] for f, o in jobs], initial_job_idx=len(trials))
                for trial, (_, trial_overrides), ret in zip(pending, jobs, returns, strict=True):
                    trials.append(self._tell(study, trial, trial_overrides, ret))
                pending = []
        except BaseException:  # Ctrl-C, or a job stopped by SIGTERM: keep what the trials so far found
            import optuna

            for trial in pending:  # a stored study would keep them RUNNING
                with contextlib.suppress(Exception):  # told already, when stopped right after
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._write(trials, sweep_dir, stopped=True)
            stopped = f"The search stopped after {len(trials)} of {self.n_trials} trials; results so far:"
            print(f"{stopped} {sweep_dir / RESULTS_FILE}", file=sys.stderr)
            raise
        self._report(self._write(trials, sweep_dir), sweep_dir)

    def open_study(self, space: Mapping[str, Any]) -> Any:
        """The study, new or stored; ``ConfigError`` for a storage that does not open, or a stored study
        that is searched the other way or over another space (Optuna would merge the one, fail a trial on the other)."""
        import optuna
        from optuna.distributions import check_distribution_compatibility

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "Using an existing study" would precede an error
        try:
            study = optuna.create_study(
                direction=self.direction,
                sampler=self.sampler,  # Hydra instantiated its _target_ already
                study_name=self.study_name,
                storage=self.storage,
                load_if_exists=self.storage is not None,
            )
        except Exception as e:  # SQLAlchemy's, a missing driver's: a storage URL can fail in many ways
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"hydra.sweeper.storage={self.storage}: cannot open it ({reason})") from None
        finally:
            optuna.logging.set_verbosity(verbosity)
        where = f"the stored study {study.study_name} ({self.storage})"
        directions = [d.name.lower() for d in study.directions]
        if directions != [self.direction]:
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction}: {where} {'s and '.join(directions)}s; "
                "search it that way, or give another hydra.sweeper.study_name"
            )
        stored = {k: d for t in study.trials for k, d in t.distributions.items()}
        for key, dist in space.items():
            try:
                if key in stored:
                    check_distribution_compatibility(stored[key], dist)
            except ValueError as e:
                raise ConfigError(
                    f"{key}: {where} sampled it from {_values(stored[key])}, not {_values(dist)} "
                    f"({str(e).rstrip('.')}); search the same space, or give another hydra.sweeper.study_name"
                ) from None
        return study

    def _tell(self, study: Any, trial: Any, overrides: list[str], ret: JobReturn) -> dict[str, Any]:
        import optuna

        value = ret._return_value if ret.status == JobStatus.COMPLETED else None
        record = {"number": trial.number, "overrides": overrides, "job_dir": _job_dir(ret)}
        if isinstance(value, int | float) and math.isfinite(value):
            study.tell(trial, float(value))
            return {**record, "state": "complete", "value": float(value)}
        reason = repr(ret._return_value) if ret.status == JobStatus.FAILED else f"returned {value!r}"
        log.warning("Trial %d failed (%s): %s", trial.number, " ".join(overrides), reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return {**record, "state": "failed", "error": reason}

    def _write(self, trials: list[dict[str, Any]], sweep_dir: Path, stopped: bool = False) -> dict[str, Any]:
        """Save the results of ``trials`` to ``optuna_results.yaml``; ``stopped``: the search did not finish."""
        done = [t for t in trials if t["state"] == "complete"]
        results: dict[str, Any] = {
            "optimized_metric": self.config.optimized_metric,
            "direction": self.direction,
            "n_trials": len(trials),
            "n_failed": len(trials) - len(done),
            **({"stopped": f"after {len(trials)} of {self.n_trials} trials"} if stopped else {}),
            "trials": trials,
        }
        if done:
            best = (min if self.direction == "minimize" else max)(done, key=lambda t: t["value"])
            best_of = {"best_value": best["value"], "best_overrides": best["overrides"], "best_job": best["job_dir"]}
            results = best_of | results
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        return results

    def _report(self, results: dict[str, Any], sweep_dir: Path) -> None:
        n = results["n_trials"]
        if "best_value" not in results:
            # One line at the end of the sweep, not a traceback: each trial's is in its error.txt.
            raise CompactHydraException(
                f"litlab: error: all {n} Optuna trials failed; each job directory holds its error.txt"
            )
        print(
            f"Best of {n} trials ({results['n_failed']} failed): "
            f"{self.config.optimized_metric}={results['best_value']:.4g} with {' '.join(results['best_overrides'])}\n"
            f"  job: {results['best_job']}\n  saved: {sweep_dir / RESULTS_FILE}"
        )


def _values(dist: Any) -> str:
    """A distribution in a few words: its choices, or its bounds."""
    if hasattr(dist, "choices"):
        return f"choice({', '.join(map(str, dist.choices))})"
    return f"{type(dist).__name__}({dist.low}, {dist.high}{', log' if dist.log else ''})"


def _job_dir(ret: JobReturn) -> str | None:
    return OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg is not None else None
