"""``litlab-export ckpt_path=PATH format=...``: a model file, a JSON sidecar, and a parity check.

The exported file is checked before it is kept: on real inputs (rows of the test split, or
of ``input``; for token models also re-padded and shorter sequences, at another batch size)
its outputs must match the LightningModule's within ``atol + rtol * |output|``, or the export
fails with the difference and leaves no model file. ``format=torchscript quantize=dynamic``
stores int8 Linear layers and reports the size reduction and the test accuracy change.
"""

import importlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from litlab.collector import entry_point, imports_done
from litlab.command_line import checked_command
from litlab.config import config_dir
from litlab.inputs import Inputs, InputSpec
from litlab.jobs import one_line_errors
from litlab.runs import resolve_checkpoint, write_json_atomic
from litlab.warnings_explained import explained_warnings

log = logging.getLogger(__name__)

SIDECAR = "model.json"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class ParityError(RuntimeError):
    """The exported model's outputs differ from the LightningModule's beyond the tolerance."""


class MissingExtraError(ImportError):
    """An optional dependency of a format is not installed."""


class ImageNet(nn.Module):
    """The net with the signature an exported file keeps: ``(x) -> logits``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenNet(ImageNet):
    """A token model exported with its padding mask as a second input: ``(x, mask) -> logits``."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x, mask)


def wrap(net: nn.Module, spec: InputSpec) -> ImageNet:
    return (TokenNet if spec.tokens else ImageNet)(net).eval()


def max_len(net: nn.Module) -> int | None:
    """The longest sequence a token net takes: a Transformer's learned positions less the CLS slot; None: any."""
    pos = getattr(net, "pos", None)
    return None if pos is None else pos.shape[1] - (net.cls is not None)


def fixed_length(net: nn.Module, spec: InputSpec) -> int | None:
    """The one sequence length torch.export builds a token RNN for (``input_shape``); None: any length.

    torch.export unrolls an LSTM/GRU over the steps it traces, so the file takes that many tokens;
    shorter sequences are right-padded to it (the padding mask keeps the result the same).
    """
    if spec.tokens and any(isinstance(m, nn.RNNBase) for m in net.modules()):
        return spec.input_shape[0]
    return None


def dynamic_shapes(net: nn.Module, spec: InputSpec) -> tuple[dict, ...]:
    """Any batch size; for token models also any sequence length up to ``max_len`` (a token RNN: one length)."""
    Dim = torch.export.Dim
    batch = Dim("batch")
    if not spec.tokens:
        return ({0: batch},)
    if fixed_length(net, spec):
        return ({0: batch}, {0: Dim.DYNAMIC})
    # The mask's axes follow x's through the graph; naming them twice only makes torch.onnx warn.
    return ({0: batch, 1: Dim("seq", max=max_len(net))}, {0: Dim.DYNAMIC, 1: Dim.DYNAMIC})


# --- formats: how a module is saved and how the saved file is run again ---------------------------------


def require(packages: tuple[str, ...], fmt: str) -> None:
    """Fail early, naming the extra, when a format's optional packages are missing."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"format={fmt} needs the optional packages {', '.join(missing)}, which are not installed: "
            f"pip install 'litlab[export]' (or pip install {' '.join(packages)})"
        )


def _save_torchscript(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    # trace, not script: torch.jit.script cannot compile the Transformer (generator expressions).
    torch.jit.save(torch.jit.trace(module, example), str(path))


def _load_torchscript(path: Path, meta: dict) -> Callable:
    return torch.jit.load(str(path), map_location="cpu")


def _save_pt2(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic_shapes(net, spec)), str(path))


def _load_pt2(path: Path, meta: dict) -> Callable:
    return torch.export.load(str(path)).module()


def _save_onnx(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    # The ONNX optimizer logs each graph rewrite at INFO, which Hydra's console would print.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    names = ["x", "mask"][: len(example)]
    program = torch.onnx.export(
        module,
        example,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes=dynamic_shapes(net, spec),
        verbose=False,
    )
    program.save(str(path), external_data=False)


def _load_onnx(path: Path, meta: dict) -> Callable:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*args: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0])

    return run


def _save_state_dict(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    torch.save(net.state_dict(), path)


def _load_state_dict(path: Path, meta: dict) -> Callable:
    """Rebuild the net from the sidecar's ``net`` entry, as a user without the checkpoint would."""
    from litlab.models import build_net

    net = build_net(**meta["net"])
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return wrap(net, InputSpec(meta["net"]["input_shape"], meta["net"].get("vocab_size")))


@dataclass(frozen=True)
class Format:
    file: str
    save: Callable[[nn.Module, tuple, nn.Module, InputSpec, Path], None]
    load: Callable[[Path, dict], Callable]
    packages: tuple[str, ...] = ()
    how_to_load: str = ""
    #: Built by torch.export, which unrolls an LSTM/GRU over the steps it traces (``fixed_length``).
    unrolls_time: bool = False


FORMATS: dict[str, Format] = {
    "torchscript": Format("model.pt", _save_torchscript, _load_torchscript, how_to_load="torch.jit.load(path)"),
    "onnx": Format(
        "model.onnx", _save_onnx, _load_onnx, ONNX_PACKAGES, "onnxruntime.InferenceSession(path)", unrolls_time=True
    ),
    "pt2": Format("model.pt2", _save_pt2, _load_pt2, how_to_load="torch.export.load(path).module()", unrolls_time=True),
    "state_dict": Format(
        "state_dict.pt",
        _save_state_dict,
        _load_state_dict,
        how_to_load="litlab.models.build_net(**sidecar['net']).load_state_dict(torch.load(path, weights_only=True))",
    ),
}
QUANTIZE = {"dynamic": ("torchscript",)}


# --- the parity check -------------------------------------------------------------------------------------


def parity_cases(batch: Inputs, seed: int = 0, any_length: bool = True) -> list[tuple[str, tuple[Tensor, ...]]]:
    """Real inputs to compare on: the batch, a few rows of it, and for token models padded (and shorter) ones."""
    n = len(batch.x)
    cases = [(f"{n} real inputs", batch.args()), ("the first 3 of them", tuple(a[:3] for a in batch.args()))]
    if batch.mask is not None:
        x, mask = batch.x, batch.mask
        g = torch.Generator().manual_seed(seed)
        T = x.shape[1]
        # Right-padding to random lengths (at least one real token: an all-padding row has no output).
        lengths = torch.randint(1, T + 1, (n,), generator=g)
        padded = mask & (torch.arange(T) < lengths[:, None])
        padded[:, 0] = True
        cases.append(("the inputs re-padded to random lengths", (x.masked_fill(~padded, 0), padded)))
        if not any_length:
            return cases
        short = max(1, T // 2)
        short_mask = mask[:, :short].clone()
        short_mask[:, 0] = True
        cases.append((f"the inputs cut to {short} of {T} tokens", (x[:, :short], short_mask)))
    return cases


def check_parity(run: Callable, reference: Callable, cases: list, atol: float, rtol: float) -> float:
    """The largest ``|run - reference|`` over ``cases``; raises ``ParityError`` beyond the tolerance."""
    worst = 0.0
    with torch.inference_mode():
        for what, args in cases:
            expected = reference(*args).float()
            got = torch.as_tensor(run(*args)).float()
            if got.shape != expected.shape:
                raise ParityError(
                    f"parity check failed on {what}: output shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
                )
            diff = (got - expected).abs().nan_to_num(nan=float("inf"))
            worst = max(worst, float(diff.max()))
            excess = diff - (atol + rtol * expected.abs())
            if (excess > 0).any():
                raise ParityError(
                    f"parity check failed on {what}: the exported model's outputs differ from the reference's "
                    f"by up to {float(diff.max()):.3g} (allowed: atol={atol} + rtol={rtol} * |output|, "
                    f"exceeded on {int((excess > 0).sum())} of {excess.numel()} values)"
                )
    return worst


# --- quantization ------------------------------------------------------------------------------------------


def quantize_dynamic(module: nn.Module) -> nn.Module:
    """int8 weights for every ``nn.Linear``, activations quantized on the fly (CPU inference)."""
    # torch.ao.quantization is deprecated in favour of torchao; see docs/export.md for why it is used here.
    return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def accuracy(model: Callable, batches: Any) -> float:
    correct = total = 0
    with torch.inference_mode():
        for b in batches:
            correct += int((torch.as_tensor(model(*b.args())).argmax(-1) == b.y).sum())
            total += len(b.y)
    return correct / max(total, 1)


def quantization_report(
    float_module: nn.Module, example: tuple, task: Any, run: Callable, path: Path, datamodule: Any
) -> dict:
    """File sizes of the float and the int8 TorchScript model, and test accuracies of both."""
    from litlab.inputs import split_batches

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(float_module, example), buffer)
    sizes = {"float32": buffer.getbuffer().nbytes, "int8_linear": path.stat().st_size}
    report: dict[str, Any] = {"method": "dynamic int8 (torch.ao), nn.Linear layers", "bytes": sizes}
    report["size_reduction"] = sizes["float32"] / sizes["int8_linear"]
    if datamodule is not None and "test" in datamodule.splits and task.name == "classification":
        acc = {
            "float32": accuracy(task, split_batches(datamodule, "test", 512)),
            "int8_linear": accuracy(run, split_batches(datamodule, "test", 512)),
        }
        report["test_acc"] = {**acc, "change": acc["int8_linear"] - acc["float32"]}
    return report


# --- the command -------------------------------------------------------------------------------------------


def check_options(cfg: DictConfig) -> None:
    """``ConfigError`` for a ``format``, ``quantize``, tolerance or ``parity_samples`` that cannot work."""
    from litlab.validate import ConfigError, boolean, check_rules, integer, number

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


def parity_batch(cfg: DictConfig, datamodule: Any, spec: InputSpec) -> Inputs:
    """``cfg.parity_samples`` real inputs: the first rows of ``input`` or of the test split."""
    from litlab.inputs import path_inputs, split_batches

    n = cfg.parity_samples
    if cfg.input is not None:
        b = path_inputs(cfg.input, spec, cfg.normalize)
        batch = Inputs(b.x[:n], None if b.mask is None else b.mask[:n], b.names[:n])
    else:
        batch = next(split_batches(datamodule, "test", n))
    if len(batch.x) < 3:
        source = f"input={cfg.input}" if cfg.input is not None else "the test split"
        raise ValueError(f"the parity check needs at least 3 real inputs; {source} has {len(batch.x)}")
    return batch


def pad_to(batch: Inputs, seq: int) -> Inputs:
    """Token inputs right-padded to ``seq`` tokens (the length a token RNN is exported for)."""
    n, length = batch.x.shape
    if length > seq:
        raise ValueError(
            f"the parity inputs have {length} tokens, but the net's input_shape is [{seq}], the one length "
            "torch.export builds a token RNN for; give inputs of at most that many tokens"
        )
    mask = batch.mask if batch.mask is not None else torch.ones_like(batch.x, dtype=torch.bool)
    x = torch.cat([batch.x, batch.x.new_zeros(n, seq - length)], 1)
    mask = torch.cat([mask, mask.new_zeros(n, seq - length)], 1)
    return Inputs(x, mask, batch.names, batch.y)


def sidecar(
    ckpt_path: str, cfg: DictConfig, fmt: Format, task: Any, spec: InputSpec, data_cfg: Any, seq: int | None = None
) -> dict:
    """What a user of the file needs: its inputs, their normalization, the output and the classes.

    ``seq``: the one sequence length the file takes (a token RNN through torch.export).
    """
    from litlab.predict import class_names

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
        "classes": class_names(data_cfg, task.num_outputs) if task.classes else None,
        "net": {**hp.net, "input_shape": list(hp.input_shape), "num_outputs": task.num_outputs}
        | ({"vocab_size": spec.vocab_size} if spec.tokens else {}),
        "torch": torch.__version__,
    }
    return meta


def export(cfg: DictConfig) -> dict:
    """Export ``cfg.ckpt_path`` as ``cfg.format``, check it, write the sidecar; returns the sidecar."""
    from hydra.core.hydra_config import HydraConfig

    from litlab.inputs import data_config, load_datamodule
    from litlab.predict import checked_spec, input_spec
    from litlab.tasks import load_task

    imports_done()
    check_options(cfg)
    fmt = FORMATS[cfg.format]
    require(fmt.packages, cfg.format)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, f"{cfg.paths.log_dir}/train", best=True)
    task = load_task(ckpt_path, map_location="cpu").eval()
    data_cfg = data_config(cfg, ckpt_path, required=cfg.input is None)
    datamodule = load_datamodule(data_cfg)
    spec = checked_spec(task, datamodule, cfg.normalize) if cfg.input is not None else input_spec(task, datamodule)
    seq = fixed_length(task.net, spec) if fmt.unrolls_time else None
    batch = parity_batch(cfg, datamodule, spec)
    if seq:
        batch = pad_to(batch, seq)
    module = wrap(task.net, spec)
    example = tuple(a[:2] for a in batch.args())
    meta = sidecar(ckpt_path, cfg, fmt, task, spec, data_cfg, seq)

    path, tmp = out_dir / fmt.file, out_dir / f".tmp.{fmt.file}"
    try:
        with explained_warnings(log):
            # The reference for a quantized export is the quantized module in Python: the check is of the export.
            exported = quantize_dynamic(module) if cfg.quantize else module
            fmt.save(exported, example, task.net, spec, tmp)
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
        if "test_acc" in q:
            a = q["test_acc"]
            print(f"test accuracy: {a['float32']:.4f} -> {a['int8_linear']:.4f} ({a['change']:+.4f})")
    return meta


@entry_point
@checked_command("export")
@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
@one_line_errors
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
