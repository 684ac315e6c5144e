"""``litlab-predict ckpt_path=PATH``: predictions for a split, a folder or an array file, as CSV and ``.npy``.

Runs on ``device`` (CPU by default) whatever device the checkpoint was trained on: its tensors
are mapped there when it is loaded. A split is read through the data config stored in the
checkpoint unless ``data=...`` is given; files given with ``input=`` take the normalization
and class names the checkpoint stores (``litlab.checkpoint_data.data_and_info``).
"""

import csv
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from litlab.collector import entry_point, imports_done
from litlab.command_line import checked_command
from litlab.config import config_dir
from litlab.jobs import one_line_errors
from litlab.run_dirs import check_no_earlier_output
from litlab.runs import atomic_file, inference_checkpoint

log = logging.getLogger(__name__)

CSV_FILE, NPY_FILE = "predictions.csv", "predictions.npy"


def run_model(task: Any, batches: Iterable[Any], device: str) -> tuple[list, np.ndarray, np.ndarray | None]:
    """Names, outputs (probabilities for classifiers, values for a regressor) and labels of all rows."""
    import torch

    names, outputs, labels = [], [], []
    with torch.inference_mode():
        for b in batches:
            out = task(*(t.to(device) for t in b.args())).float()
            outputs.append(task.readout(out).cpu().numpy())
            names += list(b.names)
            if b.y is not None:
                labels.append(b.y.cpu().numpy())
    return names, np.concatenate(outputs), np.concatenate(labels) if labels else None


def write_predictions(
    out_dir: Path, names: list, fields: dict[str, Any], columns: dict[str, Any], labels: np.ndarray | None
) -> None:
    """``predictions.csv`` (one row per input) and ``predictions.npy`` (a structured array, same rows).

    ``fields`` (the ``.npy``'s) and ``columns`` (the CSV's) are the task's ``prediction_columns``;
    the input's index or file comes first, its target (when known) last.
    """
    key = "index" if names and isinstance(names[0], int) else "file"
    dtype = np.int64 if key == "index" else f"U{max(map(len, map(str, names)), default=1)}"
    fields, columns = {key: np.array(names, dtype=dtype), **fields}, {key: names, **columns}
    if labels is not None:
        fields["target"] = labels
        # One column per target value (target_<i>, like output_<i>); a class label is one "target".
        flat = labels.reshape(len(labels), -1)
        columns |= {"target": labels} if labels.ndim == 1 else {f"target_{i}": v for i, v in enumerate(flat.T)}
    table = np.zeros(len(names), dtype=[(k, v.dtype, v.shape[1:]) for k, v in fields.items()])
    for k, v in fields.items():
        table[k] = v
    rows = zip(*(_formatted(v) for v in columns.values()), strict=True)

    with atomic_file(out_dir / CSV_FILE, newline="") as f:
        csv.writer(f).writerows([list(columns), *rows])
    with atomic_file(out_dir / NPY_FILE, "wb") as f:
        np.save(f, table, allow_pickle=False)


def _formatted(values: Any) -> list:
    """A column's values for the CSV: floats to 6 significant digits, anything else as it is."""
    return [f"{v:.6g}" for v in values] if np.asarray(values).dtype.kind == "f" else list(values)


def check_options(cfg: DictConfig) -> None:
    """``ConfigError`` for a value of ``batch_size``, ``normalize`` or ``device`` that cannot work (``split`` is
    checked against the data's splits), and for a ``hydra.run.dir`` holding earlier predictions."""
    import torch

    from litlab.rules import ConfigError, boolean, check_common, check_rules, integer

    check_common(cfg)
    check_rules(cfg, {"batch_size": (integer(1), "an integer >= 1"), "normalize": (boolean, "true or false")})
    try:
        device = torch.device(cfg.device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={cfg.device}: not a torch device; e.g. cpu, cuda, cuda:1, mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, True):
        raise ConfigError(f"device={cfg.device}: torch sees no {device.type} device here; device=cpu runs anywhere")
    check_no_earlier_output(cfg, [CSV_FILE, NPY_FILE], "predict")


def predict(cfg: DictConfig) -> Path:
    """Write the predictions ``cfg`` asks for into the run directory; returns the CSV's path."""
    from hydra.core.hydra_config import HydraConfig

    from litlab.checkpoint_data import checked_spec, class_names, data_and_info
    from litlab.inputs import batched, path_inputs, split_batches
    from litlab.tasks import load_task

    imports_done()
    check_options(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    ckpt_path = inference_checkpoint(cfg)
    # map_location: a checkpoint written on a GPU loads on a machine without one.
    task = load_task(ckpt_path, map_location="cpu").to(cfg.device).eval()
    datamodule, info = data_and_info(cfg, ckpt_path, task)
    if cfg.input is not None:
        spec = checked_spec(task, info, cfg.normalize)
        batches = batched(path_inputs(cfg.input, spec, cfg.normalize), cfg.batch_size)
    else:
        batches = split_batches(datamodule, cfg.split, cfg.batch_size)
    names, outputs, labels = run_model(task, batches, cfg.device)
    classes = class_names(info, outputs.shape[1]) if task.classes else None
    write_predictions(out_dir, names, *task.prediction_columns(outputs, classes), labels)
    source = cfg.input if cfg.input is not None else f"split={cfg.split}"
    print(f"{len(names)} predictions for {source}: {out_dir / CSV_FILE}, {out_dir / NPY_FILE}")
    return out_dir / CSV_FILE


@entry_point
@checked_command("predict")
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
