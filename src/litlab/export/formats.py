"""How a net is exported: the signature a file keeps, each format's save and load, quantization."""

import importlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from litlab.inputs import InputSpec


class MissingExtraError(ImportError):
    """An optional dependency of a format is not installed."""


class Exported(nn.Module):
    """The net with the signature an exported file keeps: ``(x) -> logits`` (images, features)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ExportedWithMask(Exported):
    """A token model exported with its padding mask as a second input: ``(x, mask) -> logits``."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.net(x, mask)


def wrap(net: nn.Module, spec: InputSpec) -> Exported:
    """``net`` with the signature its inputs need, in eval mode."""
    return (ExportedWithMask if spec.tokens else Exported)(net).eval()


def max_len(net: nn.Module) -> int | None:
    """The longest sequence a token net takes (a Transformer's ``max_len``); None: any."""
    return getattr(net, "max_len", None)


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


def _write(path: Path, save: Callable[[io.BytesIO], object]) -> None:
    """``save`` into memory, then the bytes to ``path``.

    torch's C++ file writer fails on a full disk with "unexpected pos", and for TorchScript
    aborts the process, leaving its file behind; Python's write raises an ``OSError``.
    """
    buffer = io.BytesIO()
    save(buffer)
    path.write_bytes(buffer.getbuffer())


def _save_torchscript(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    # trace, not script: torch.jit.script cannot compile the Transformer (generator expressions).
    traced = torch.jit.trace(module, example)
    _write(path, lambda f: torch.jit.save(traced, f))


def _load_torchscript(path: Path, meta: dict) -> Callable:
    return torch.jit.load(str(path), map_location="cpu")


def _save_pt2(module: nn.Module, example: tuple, net: nn.Module, spec: InputSpec, path: Path) -> None:
    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes(net, spec))
    _write(path, lambda f: torch.export.save(program, f))


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
    _write(path, lambda f: torch.save(net.state_dict(), f))


def _load_state_dict(path: Path, meta: dict) -> Callable:
    """Rebuild the net from the sidecar's ``net`` entry, as a user without the checkpoint would."""
    from litlab.models import build_net

    net = build_net(**meta["net"])
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return wrap(net, InputSpec(meta["net"]["input_shape"], meta["net"].get("vocab_size")))


ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


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


def quantize_dynamic(module: nn.Module) -> nn.Module:
    """int8 weights for every ``nn.Linear``, activations quantized on the fly (CPU inference)."""
    # torch.ao.quantization is deprecated in favour of torchao; see docs/export.md for why it is used here.
    return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
