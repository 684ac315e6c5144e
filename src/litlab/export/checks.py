"""The checks an exported file passes before it is kept: parity with the net, and quantization's cost."""

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from litlab.inputs import Inputs


class ParityError(RuntimeError):
    """The exported model's outputs differ from the LightningModule's beyond the tolerance."""


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


def test_metrics(task: Any, model: Callable, batches: Any) -> dict[str, float]:
    """The task's own metrics (accuracy and F1, or MSE and MAE) of ``model``'s outputs on ``batches``."""
    metrics = task.make_metrics(task.num_outputs)
    with torch.inference_mode():
        for b in batches:
            metrics.update(torch.as_tensor(model(*b.args())), b.y)
    return {name: float(value) for name, value in metrics.compute().items()}


def quantization_report(
    float_module: nn.Module, example: tuple, task: Any, run: Callable, path: Path, datamodule: Any
) -> dict:
    """File sizes of the float and the int8 TorchScript model, and the test metrics of both."""
    from litlab.inputs import split_batches

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(float_module, example), buffer)
    sizes = {"float32": buffer.getbuffer().nbytes, "int8_linear": path.stat().st_size}
    report: dict[str, Any] = {"method": "dynamic int8 (torch.ao), nn.Linear layers", "bytes": sizes}
    report["size_reduction"] = sizes["float32"] / sizes["int8_linear"]
    if datamodule is not None and len(datamodule.splits.get("test", [])):
        before = test_metrics(task, task, split_batches(datamodule, "test", 512))
        after = test_metrics(task, run, split_batches(datamodule, "test", 512))
        report["test"] = {k: {"float32": v, "int8_linear": after[k], "change": after[k] - v} for k, v in before.items()}
    return report
