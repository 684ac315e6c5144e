"""Where the config tree lives, and the resolvers it uses."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litlab.resources import parallel_jobs


def config_dir() -> Path:
    """The ``conf/`` tree: packaged inside the wheel, or the source checkout's for an editable install."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def _dirname(overrides: str) -> str:
    # Group overrides such as model/optimizer=sgd must not nest the sweep job's directory.
    name = overrides.replace("/", ".") or "defaults"
    # A file name holds at most 255 bytes (long Optuna overrides); the job number in front keeps cut names apart.
    return name if len(name.encode()) <= 200 else name.encode()[:200].decode(errors="ignore") + "..."


if not OmegaConf.has_resolver("dirname"):
    OmegaConf.register_new_resolver("dirname", _dirname)
if not OmegaConf.has_resolver("best_of"):
    # optimized_metric: the best value of the checkpoint's monitor; val/loss's where none is set.
    OmegaConf.register_new_resolver("best_of", lambda monitor: f"{monitor or 'val/loss'}_best")
if not OmegaConf.has_resolver("parallel_jobs"):
    OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs)


def key_paths(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config, its sections too: ``{"a": {"b": 1}}`` -> ``["a", "a.b"]``."""
    if isinstance(node, DictConfig):
        out = []
        for k in node:
            path = f"{prefix}.{k}" if prefix else str(k)
            out += [path, *key_paths(node._get_node(k), path)]
        return out
    return []


def to_plain(cfg: DictConfig | None) -> Any:
    """A resolved config as plain dicts and lists (what checkpoints and JSON may hold)."""
    return {} if cfg is None else OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a callbacks/logger group; entries set to null are skipped."""
    from hydra.utils import instantiate

    return [instantiate(c) for c in (group or {}).values() if c is not None]


def compose_as_job(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config ``overrides`` compose to, interpolations resolvable; within ``initialize_config_dir``.

    As the job will see it, ``hydra:`` interpolations included (a run directory's are the cwd's);
    ``ConfigError`` for what Hydra refuses.
    """
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from litlab.rules import ConfigError

    try:
        cfg = compose(config_name, overrides=[f for f in overrides if f], return_hydra_config=True)
    except HydraException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = cfg.hydra.runtime.cwd  # only paths.log_dir is read from here on
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg
