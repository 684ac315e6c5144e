"""``litlab-export ckpt_path=PATH format=...``: a model file, a JSON sidecar, and a parity check.

The exported file is checked before it is kept: on real inputs (rows of the test split, or
of ``input``; for token models also re-padded and shorter sequences, at another batch size)
its outputs must match the LightningModule's within ``atol + rtol * |output|``, or the export
fails with the difference and leaves no model file. ``format=torchscript quantize=dynamic``
stores int8 Linear layers and reports the size reduction and the test accuracy change.
"""

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from litlab.collector import entry_point, imports_done
from litlab.command_line import checked_command
from litlab.config import config_dir
from litlab.jobs import one_line_errors
from litlab.run_dirs import check_no_earlier_output
from litlab.runs import inference_checkpoint, write_json_atomic

if TYPE_CHECKING:  # torch loads in the functions that use it: --help answers without it
    from litlab.export.formats import Format
    from litlab.inputs import Inputs, InputSpec

log = logging.getLogger(__name__)

SIDECAR = "model.json"


def check_options(cfg: DictConfig) -> None:
    """``ConfigError`` for a ``format``, ``quantize``, tolerance or ``parity_samples`` that cannot work, and for a
    ``hydra.run.dir`` holding an earlier export."""
    from litlab.export.formats import FORMATS, QUANTIZE
    from litlab.rules import ConfigError, boolean, check_common, check_rules, integer, number

    check_common(cfg)
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format!r} is not a format; choose one of {sorted(FORMATS)}")
    if cfg.quantize is not None:
        if cfg.quantize not in QUANTIZE:
            raise ConfigError(
                f"quantize={cfg.quantize!r} is not a quantization; choose one of {sorted(QUANTIZE)} or null"
            )
        if cfg.format not in QUANTIZE[cfg.quantize]:
            raise ConfigError(
                f"quantize={cfg.quantize} works with format={'|'.join(QUANTIZE[cfg.quantize])}, not {cfg.format}"
            )
    check_rules(
        cfg,
        {
            "atol": (number(0), "a finite number >= 0"),
            "rtol": (number(0), "a finite number >= 0"),
            "parity_samples": (integer(3), "an integer >= 3 (the check also runs a smaller batch)"),
            "normalize": (boolean, "true or false"),
        },
    )
    # Every format's file too: a model.pt beside another format's model.json is an earlier export's.
    check_no_earlier_output(cfg, [SIDECAR, *sorted({f.file for f in FORMATS.values()})], "export")


def parity_batch(cfg: DictConfig, datamodule: Any, spec: "InputSpec") -> "Inputs":
    """``cfg.parity_samples`` real inputs: the first rows of ``input`` or of the test split."""
    import torch

    from litlab.inputs import Inputs, path_inputs, split_batches

    n = cfg.parity_samples
    if cfg.input is not None:
        b = path_inputs(cfg.input, spec, cfg.normalize)
        batch = Inputs(b.x[:n], None if b.mask is None else b.mask[:n], b.names[:n])
    else:
        batch = next(split_batches(datamodule, "test", n))
    if len(batch.x) < 3:
        source = f"input={cfg.input}" if cfg.input is not None else "the test split"
        raise ValueError(f"the parity check needs at least 3 real inputs; {source} has {len(batch.x)}")
    if spec.tokens and batch.mask is None:  # token ids without a mask (arrays data, an .npy): every token is real
        batch = Inputs(batch.x, torch.ones_like(batch.x, dtype=torch.bool), batch.names, batch.y)
    return batch


def pad_to(batch: "Inputs", seq: int) -> "Inputs":
    """Token inputs right-padded to ``seq`` tokens (the length a token RNN is exported for)."""
    import torch

    from litlab.inputs import Inputs

    n, length = batch.x.shape
    if length > seq:
        raise ValueError(
            f"the parity inputs have {length} tokens, but the net's input_shape is [{seq}], the one length "
            "torch.export builds a token RNN for; give inputs of at most that many tokens"
        )
    x = torch.cat([batch.x, batch.x.new_zeros(n, seq - length)], 1)
    mask = torch.cat([batch.mask, batch.mask.new_zeros(n, seq - length)], 1)
    return Inputs(x, mask, batch.names, batch.y)


def sidecar(
    ckpt_path: str, cfg: DictConfig, fmt: "Format", task: Any, spec: "InputSpec", info: Any, seq: int | None = None
) -> dict:
    """What a user of the file needs: its inputs, their normalization, the output and the classes.

    ``seq``: the one sequence length the file takes (a token RNN through torch.export).
    """
    import torch

    from litlab.checkpoint_data import class_names
    from litlab.export.formats import max_len

    hp = task.hparams
    if spec.tokens:
        padded = f", right-padded with 0 to exactly {seq} tokens" if seq else ""
        inputs = [
            {
                "name": "x",
                "shape": ["batch", seq or "seq"],
                "dtype": "int64",
                "meaning": f"token ids in [0, {spec.vocab_size}){padded}",
            },
            {
                "name": "mask",
                "shape": ["batch", seq or "seq"],
                "dtype": "bool",
                "meaning": "True for real tokens, False for padding",
            },
        ]
    else:
        inputs = [{"name": "x", "shape": ["batch", *spec.input_shape], "dtype": "float32"}]
    normalization = None
    if spec.normalization and not spec.tokens:
        normalization = {
            **spec.normalization,
            "formula": "x = (x01 - mean) / std per channel, x01 = input scaled to [0, 1]",
        }
    meta = {
        "format": cfg.format,
        "file": fmt.file,
        "load": fmt.how_to_load,
        "checkpoint": str(Path(ckpt_path).resolve()),
        "task": task.name,
        "inputs": inputs,
        "max_seq": (seq or max_len(task.net)) if spec.tokens else None,
        "normalization": normalization,
        "output": {
            "name": task.output[0],
            "shape": ["batch", task.num_outputs],
            "meaning": task.output[1],
        },
        "classes": class_names(info, task.num_outputs) if task.classes else None,
        "net": {**hp.net, "input_shape": list(hp.input_shape), "num_outputs": task.num_outputs}
        | ({"vocab_size": spec.vocab_size} if spec.tokens else {}),
        "torch": torch.__version__,
    }
    return meta


def export(cfg: DictConfig) -> dict:
    """Export ``cfg.ckpt_path`` as ``cfg.format``, check it, write the sidecar; returns the sidecar."""
    from hydra.core.hydra_config import HydraConfig

    from litlab.checkpoint_data import checked_spec, data_and_info, input_spec
    from litlab.export.checks import check_parity, parity_cases, quantization_report
    from litlab.export.formats import FORMATS, fixed_length, quantize_dynamic, require, wrap
    from litlab.export.warnings_explained import explained_warnings
    from litlab.tasks import load_task

    imports_done()
    check_options(cfg)
    fmt = FORMATS[cfg.format]
    require(fmt.packages, cfg.format)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    ckpt_path = inference_checkpoint(cfg)
    task = load_task(ckpt_path, map_location="cpu").eval()
    datamodule, info = data_and_info(cfg, ckpt_path, task, splits=cfg.quantize is not None)
    spec = checked_spec(task, info, cfg.normalize) if cfg.input is not None else input_spec(task, info)
    seq = fixed_length(task.net, spec) if fmt.unrolls_time else None
    batch = parity_batch(cfg, datamodule, spec)
    if seq:
        batch = pad_to(batch, seq)
    module = wrap(task.net, spec)
    example = tuple(a[:2] for a in batch.args())
    meta = sidecar(ckpt_path, cfg, fmt, task, spec, info, seq)

    path, tmp = out_dir / fmt.file, out_dir / f".tmp.{fmt.file}"
    try:
        with explained_warnings(log):
            # The reference for a quantized export is the quantized module in Python: the check is of the export.
            exported = quantize_dynamic(module) if cfg.quantize else module
            try:
                fmt.save(exported, example, task.net, spec, tmp)
            except OSError as e:  # a full disk: "No space left on device" names no file
                raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
            run = fmt.load(tmp, meta)
            cases = parity_cases(batch, any_length=seq is None)
            worst = check_parity(run, exported if cfg.quantize else task, cases, cfg.atol, cfg.rtol)
            if cfg.quantize:
                meta["quantization"] = quantization_report(module, example, task, run, tmp, datamodule)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta["parity"] = {"max_abs_diff": worst, "atol": cfg.atol, "rtol": cfg.rtol, "inputs": [what for what, _ in cases]}
    write_json_atomic(out_dir / SIDECAR, meta)
    print(
        f"{cfg.format} model: {path} (+ {SIDECAR}); parity: max |diff| {worst:.3g} <= atol {cfg.atol} + rtol {cfg.rtol}"
    )
    if cfg.quantize:
        q = meta["quantization"]
        b = q["bytes"]
        share = b["int8_linear"] / b["float32"]
        print(f"quantized: {b['float32'] / 1e6:.3f} MB -> {b['int8_linear'] / 1e6:.3f} MB ({share:.0%} of float32)")
        for name, m in q.get("test", {}).items():
            print(f"test/{name}: {m['float32']:.4f} -> {m['int8_linear']:.4f} ({m['change']:+.4f})")
    return meta


@entry_point
@checked_command("export")
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
@one_line_errors
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
