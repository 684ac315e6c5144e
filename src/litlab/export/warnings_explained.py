"""Warnings that exporting is known to raise, each replaced by one line saying why it is expected.

Nothing is dropped silently: a known warning becomes an INFO line with its reason (once per
reason), and any other warning is re-issued unchanged. docs/export.md has the long version.
"""

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Message pattern -> why it is expected and harmless here.
KNOWN_WARNINGS: dict[str, str] = {
    r"`torch\.jit\.(trace|trace_method|save|load)` is deprecated": (
        "TorchScript is deprecated since torch 2.5 but still works in this torch; format=torchscript uses it "
        "because it was asked for; format=pt2 (torch.export) is the non-deprecated equivalent"
    ),
    r"torch\.ao\.quantization is deprecated": (
        "quantize=dynamic uses torch.ao.quantization.quantize_dynamic: its int8 Linear modules are the ones "
        "TorchScript can save; torchao, its successor, quantizes for torch.export/torch.compile instead"
    ),
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel .* are deprecated": (
        "raised inside torch.ao's dynamic quantized Linear when it packs its int8 weights (same deprecation)"
    ),
    r"Converting a tensor to a Python (boolean|integer) might cause the trace to be incorrect": (
        "the tracer records shape checks as constants (the Transformer's sequence-length check and head split, "
        "nn.LSTM/GRU's input-width check); all are fixed for a trained model, and the parity check runs other "
        "batch sizes and sequence lengths"
    ),
    r"_flat_weights\[\d+\].* were assigned during export": (
        "nn.LSTM/GRU re-point their list of weight views (_flat_weights) in every forward; the views are the "
        "registered parameters, which the exported program holds (the parity check confirms it)"
    ),
    r"_check_is_size will be removed in a future PyTorch release": (
        "raised by the code torch.export generates for an LSTM/GRU's loop (torch 2.13 deprecates a helper its own "
        "decomposition still calls)"
    ),
    r"`isinstance\(treespec, LeafSpec\)` is deprecated": (
        "raised inside torch.export's own run_decompositions (torch 2.13 deprecates a class it still copies)"
    ),
}

#: Logger name -> (message pattern, why): log records torch writes that are expected here.
KNOWN_LOG_RECORDS: dict[str, tuple[str, str]] = {
    "torch.onnx._internal.exporter._registration": (
        r"torchvision is not installed",
        "torch.onnx skips registering torchvision's detection ops; litlab's nets use none of them",
    ),
}


def _reason(message: str) -> str | None:
    return next((why for pattern, why in KNOWN_WARNINGS.items() if re.search(pattern, message, re.S)), None)


class _Collect(logging.Filter):
    def __init__(self, pattern: str, why: str, notes: dict[str, str]) -> None:
        super().__init__()
        self.pattern, self.why, self.notes = pattern, why, notes

    def filter(self, record: logging.LogRecord) -> bool:
        if re.search(self.pattern, record.getMessage()):
            self.notes.setdefault(self.why, record.getMessage())
            return False
        return True


@contextmanager
def explained_warnings(log: logging.Logger) -> Iterator[None]:
    """Inside: known warnings and log records are collected; after: one INFO line per reason."""
    notes: dict[str, str] = {}
    filters = [(logging.getLogger(name), _Collect(*known, notes)) for name, known in KNOWN_LOG_RECORDS.items()]
    for logger, f in filters:
        logger.addFilter(f)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        # Also when the export fails: the notes tell what happened before the error.
        for logger, f in filters:
            logger.removeFilter(f)
        for w in caught:
            why = _reason(str(w.message))
            if why is None:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            else:
                notes.setdefault(why, str(w.message).splitlines()[0])
        for why, message in notes.items():
            log.info("expected: %r: %s", message[:100], why)
