"""What a checkpoint says about the data it was trained on: its data config, normalization, class names.

Inference commands read the training data from here: the data config stored in the checkpoint
(or ``data=`` given), the DataModule it builds, and what the model takes as input.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litlab.config import key_paths
from litlab.inputs import InputSpec

_ABSENT = object()


def checkpoint_config(ckpt_path: str) -> dict[str, Any]:
    """The resolved run config stored in a litlab checkpoint (empty if none)."""
    from litlab.checkpoint import load_checkpoint

    return load_checkpoint(ckpt_path, mmap=True).get("config") or {}  # the config only: tensors stay on disk


def data_info(datamodule: Any) -> dict[str, Any]:
    """What inference needs to know of the training data: its input normalization and class names."""
    normalization = getattr(datamodule, "input_normalization", lambda: None)()
    classes = getattr(datamodule, "classes", None)
    # Plain Python values: a numpy float or string would make the checkpoint refuse weights_only loading.
    return {
        "normalization": {k: [float(v) for v in vs] for k, vs in normalization.items()} if normalization else None,
        "classes": [str(c) for c in classes] if classes is not None else None,
    }


def stored_data_info(ckpt_path: str) -> dict[str, Any] | None:
    """The ``data_info`` a litlab checkpoint holds (None in checkpoints written before it was stored)."""
    from litlab.checkpoint import load_checkpoint

    return load_checkpoint(ckpt_path, mmap=True).get("data_info")


def data_config(
    cfg: DictConfig, ckpt_path: str, required: bool = True, alternative: str = ", or input=<folder or file>"
) -> DictConfig | None:
    """``data=...`` from the command line, else the data config the checkpoint was trained with.

    Keys given without a data option (``+data.path=/moved/blobs.npz``) change the stored config.
    """
    given = cfg.get("data")
    if given and "_target_" in given:  # data=<option>: a whole data config
        return given
    data = OmegaConf.create(checkpoint_config(ckpt_path).get("data") or {})
    if given:
        data = _changed(data, given, ckpt_path)
    if not data and required:
        raise ValueError(f"{ckpt_path} stores no data config: give one, e.g. data=digits{alternative}")
    return data or None


def _changed(stored: DictConfig, given: DictConfig, ckpt_path: str) -> DictConfig:
    """``stored`` with the keys of ``given`` changed; ``ConfigError`` for a key ``stored`` does not have."""
    from litlab.rules import ConfigError, did_you_mean

    if not stored:
        raise ConfigError(f"{ckpt_path} stores no data config to change: give a whole one, e.g. data=digits")
    for key in key_paths(given):
        if OmegaConf.select(stored, key, default=_ABSENT) is _ABSENT:
            held = key_paths(stored)
            raise ConfigError(
                f"data.{key}: the checkpoint's data config has no such key{did_you_mean(key, held)}"
                f" (its keys: {', '.join(held)})"
            )
    return OmegaConf.merge(stored, given)


def check_data_fits(task: Any, data_cfg: DictConfig | None) -> None:
    """``ConfigError`` when ``data_cfg`` describes other data than the checkpoint's model takes.

    A 10-class model tested on 4-class data would otherwise report a meaningless accuracy.
    """
    from litlab.rules import ConfigError

    if not data_cfg:
        return
    if data_cfg.get("task") not in (None, task.name):
        raise ConfigError(f"data.task={data_cfg.task}: the checkpoint holds a {task.name} model")
    for key in task.data_keys:
        held, given = task.hparams.get(key), OmegaConf.select(data_cfg, key, default=None)
        given = OmegaConf.to_object(given) if OmegaConf.is_config(given) else given
        if held is not None and given is not None and (list(held) if isinstance(held, list | tuple) else held) != given:
            raise ConfigError(f"data.{key}={given}: the checkpoint's model takes {key}={held}; choose matching data")


def load_datamodule(data_cfg: DictConfig | None) -> Any:
    """The instantiated and set-up DataModule of ``data_cfg``, or None."""
    from hydra.utils import instantiate

    if not data_cfg:
        return None
    datamodule = instantiate(data_cfg)
    datamodule.setup("predict")
    return datamodule


def class_names(info: dict[str, Any] | None, num_classes: int) -> list[str]:
    """The data's class names (``data.classes``, a folder's class folders), else ``"0"``, ``"1"``, ..."""
    names = (info or {}).get("classes")
    if names is not None and len(names) != num_classes:
        raise ValueError(f"data.classes has {len(names)} names but the model has {num_classes} outputs")
    return [str(n) for n in names] if names is not None else [str(i) for i in range(num_classes)]


def input_spec(task: Any, info: dict[str, Any] | None) -> InputSpec:
    """What ``task`` takes as input, with the normalization its data applied."""
    hp = task.hparams
    return InputSpec(list(hp.input_shape), hp.get("vocab_size"), (info or {}).get("normalization"))


def checked_spec(task: Any, info: dict[str, Any] | None, normalize: bool) -> InputSpec:
    """The input spec for files given on the command line, refusing to guess a missing normalization."""
    spec = input_spec(task, info)
    if normalize and not spec.tokens and info is None:
        raise ValueError(
            "the checkpoint stores no data config to take the input normalization from: "
            "give data=<the training data> or, for inputs that need none, normalize=false"
        )
    return spec


def data_and_info(cfg: DictConfig, ckpt_path: str, task: Any, splits: bool = False) -> tuple[Any, dict | None]:
    """The DataModule (None where not needed) and the data's ``data_info`` for this command.

    Files given with ``input=`` need only the normalization and class names the checkpoint
    stores: the training data is not loaded (nor downloaded) unless ``data`` is given, or
    ``splits`` are needed all the same (quantization scores the test split).
    """
    data_cfg = data_config(cfg, ckpt_path, required=cfg.input is None)
    check_data_fits(task, data_cfg)
    stored = stored_data_info(ckpt_path)
    if cfg.input is not None and stored is not None and cfg.get("data") is None and not splits:
        return None, stored
    with moved_data_hint(cfg):
        datamodule = load_datamodule(data_cfg)
    return datamodule, data_info(datamodule) if datamodule is not None else None


@contextlib.contextmanager
def moved_data_hint(cfg: DictConfig) -> Iterator[None]:
    """A file the checkpoint's stored data config names but that is gone is refused with how to give its new place."""
    try:
        yield
    except FileNotFoundError as e:
        given = cfg.get("data")
        key, _, _ = str(e).partition("=")
        if (given and "_target_" in given) or not key.startswith("data.") or " " in key:
            raise
        raise FileNotFoundError(
            f"{e} (where the checkpoint's run read it; if the data moved, give +{key}=<where it is now>)"
        ) from None
