"""Rules on a config's values, and the checks every command's config gets: one readable line per mistake.

A rule is a key, a check of its value and what it allows (``check_rules``); ``check_common``
starts each command's value check (``command_line.VALUE_CHECKS``).
"""

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from numbers import Real
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from litlab.config import key_paths

_ABSENT = object()


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the key."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# ---- rules on values: (key, check, what is allowed) -------------------------------------------


def integer(lo: int, allow: tuple = (), hi: float = float("inf")) -> Callable[[Any], bool]:
    return lambda v: v in allow or (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi)


def number(lo: float, allow_none: bool = False, below: float = float("inf")) -> Callable[[Any], bool]:
    """A real number in ``[lo, below)`` (finite), or null where ``allow_none``."""

    def ok(v: Any) -> bool:
        if v is None:
            return allow_none
        return isinstance(v, Real) and not isinstance(v, bool) and lo <= v < below

    return ok


def boolean(v: Any) -> bool:
    return isinstance(v, bool)


def optional(check: Callable[[Any], bool], *also: Any) -> Callable[[Any], bool]:
    """``check``, or null, or one of the strings ``also`` (``optional(boolean, "warn")``)."""
    return lambda v: v is None or check(v) or (isinstance(v, str) and v in also)


def _run_name(v: Any) -> bool:
    """A name of one directory under ``paths.log_dir``: ``../x`` or ``a/b`` would put the runs elsewhere."""
    return (
        isinstance(v, str | int)
        and not isinstance(v, bool)
        and str(v) not in ("", ".", "..")
        and not any(sep in str(v) for sep in "/\\")
    )


#: A rule: a key's check, and what it allows (for the message).
Rules = dict[str, tuple[Callable[[Any], bool], str]]


def check_rules(cfg: DictConfig, rules: Rules) -> None:
    """``ConfigError`` for the first key of ``rules`` whose value fails its check; absent keys are not checked."""
    for key, (ok, allowed) in rules.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not ok(value):
            raise ConfigError(f"{key}={value}: must be {allowed}")


#: Keys of every command's config whose value must satisfy a check.
COMMON_RULES: Rules = {
    "task_name": (_run_name, "a name without / or \\ and not . or .. (its runs go under paths.log_dir/<task_name>)"),
}


def _interpolated(node: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    """Each ``(dotted key, parent, key in parent)`` of ``node`` whose value is an interpolation (``${...}``)."""
    keys = range(len(node)) if isinstance(node, ListConfig) else list(node)
    for key in keys:
        child = node._get_node(key)
        path = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}.{key}" if prefix else str(key)
        if child is not None and child._is_interpolation():
            yield path, node, key
        elif isinstance(child, DictConfig | ListConfig) and not child._is_none() and not child._is_missing():
            yield from _interpolated(child, path)


def check_interpolations(cfg: DictConfig) -> None:
    """``ConfigError`` for the first ``${...}`` that does not resolve: a misspelled key, one that refers to itself,
    an unset environment variable (OmegaConf's own error is a traceback naming some other key that reads it).

    The keys the command line set come first: ``seed=${seed}`` is named as itself, not as ``data.seed``.
    """
    from omegaconf.errors import GrammarParseError, InterpolationResolutionError

    overrides = OmegaConf.select(cfg, "hydra.overrides.task", throw_on_resolution_failure=False) or []
    given = [str(overrides._get_node(i)._value()).split("=", 1)[0].lstrip("+~") for i in range(len(overrides))]
    found = sorted(_interpolated(cfg, ""), key=lambda f: f[0] not in given)
    for key, parent, name in found:
        try:
            parent[name]
        except (InterpolationResolutionError, GrammarParseError) as e:
            reason = " ".join(str(e).splitlines()[0].split())
            reason = re.sub(r"^\w+ raised while resolving interpolation: ", "", reason).strip('"')
            wrong = re.fullmatch(r"Interpolation key '(.+)' not found", reason)
            if wrong:
                reason = f"no key {wrong[1]}{did_you_mean(wrong[1], key_paths(cfg))}"
            raw = parent._get_node(name)._value()
            raise ConfigError(f"{key}={raw}: the interpolation does not resolve ({reason})") from None


def missing_value(key: str) -> ConfigError:
    return ConfigError(f"{key}: needs a value (it is ???); give it as {key}=...")


def check_missing(cfg: DictConfig) -> None:
    """``ConfigError`` for the first key still ``???`` (a value the command needs and was not given)."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise missing_value(missing[0])


def check_common(cfg: DictConfig) -> None:
    """``ConfigError`` for what every command's config needs: ``${...}`` that resolve, no ``???`` left,
    ``COMMON_RULES``. Each command's value check (``command_line.VALUE_CHECKS``) starts with it."""
    check_interpolations(cfg)
    check_missing(cfg)
    check_rules(cfg, COMMON_RULES)
