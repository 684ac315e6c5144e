"""Fine-tuning: start a net from another run's weights (``init_from``) and freeze parts of it.

Unlike ``ckpt_path`` (which resumes a run: optimizer, schedule, epoch), ``init_from`` takes
only the net's tensors; the new run trains from step 0 with its own optimizer and data. Every
tensor must fit by name and shape unless ``init_skip`` leaves it freshly initialised, so a
changed architecture fails loudly instead of silently training mostly from scratch.
"""

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

log = logging.getLogger(__name__)


def as_list(value: Any) -> list[str]:
    """A config's list of prefixes; a bare ``head`` (no brackets) is one prefix, not four letters."""
    return [value] if isinstance(value, str) else list(value or [])


def covers(prefix: str, name: str) -> bool:
    """``head`` covers ``head`` and ``head.weight``, not ``header.weight``."""
    return name == prefix or name.startswith(prefix + ".")


def unknown_prefixes(prefixes: Iterable[str], names: Iterable[str]) -> list[str]:
    names = list(names)
    return [p for p in prefixes if not any(covers(p, n) for n in names)]


def top_level(names: Iterable[str]) -> list[str]:
    """The first components of dotted names, in order: what a prefix list usually names."""
    return list(dict.fromkeys(n.split(".", 1)[0] for n in names))


def shortest_prefixes(names: list[str], keep: list[str]) -> list[str]:
    """For each of ``names`` its shortest dotted prefix that covers none of ``keep``, without repeats."""
    out: list[str] = []
    for name in names:
        parts = name.split(".")
        prefix = next(
            p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if not any(covers(p, k) for k in keep)
        )
        if not any(covers(q, name) for q in out):
            out.append(prefix)
    return out


def net_tensors(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The net's tensors in a litlab checkpoint, or a plain ``state_dict`` (``litlab-export format=state_dict``)."""
    if "state_dict" in checkpoint:
        return {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    if checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    raise ValueError("neither a litlab checkpoint nor a state_dict of tensors")


def fitting_tensors(source: Mapping[str, Tensor], net: nn.Module, skip: list[str], where: str) -> dict[str, Tensor]:
    """The tensors of ``source`` that ``net`` takes; ``ValueError`` naming those that do not fit.

    ``net`` may live on the meta device (shapes only).
    """
    target = net.state_dict()
    unknown = unknown_prefixes(skip, [*target, *source])
    if unknown:
        parts = ", ".join(top_level(target))
        raise ValueError(f"init_skip: {unknown[0]} names no tensor of the net; its parts: {parts}")
    kept = {k: v for k, v in source.items() if not any(covers(p, k) for p in skip)}
    wanted = [k for k in target if not any(covers(p, k) for p in skip)]
    misfits = [
        f"{k}: checkpoint {tuple(kept[k].shape) if k in kept else 'none'}, net {tuple(target[k].shape)}"
        for k in wanted
        if k not in kept or kept[k].shape != target[k].shape
    ]
    misfits += [f"{k}: checkpoint {tuple(v.shape)}, net none" for k, v in kept.items() if k not in target]
    fitting = {k: v for k, v in kept.items() if k in target and v.shape == target[k].shape}
    names = [m.split(":", 1)[0] for m in misfits]
    # A layer with a misfit starts fresh as a whole (its bias or BatchNorm counter alone mean nothing).
    broken = {n.rpartition(".")[0] for n in names}
    whole = [k for k in fitting if k.rpartition(".")[0] not in broken]
    if not whole:  # nothing taken would not fine-tune but train from scratch
        if not misfits:
            raise ValueError(f"{where}: init_skip=[{','.join(skip)}] leaves no tensor to take from the checkpoint")
        raise ValueError(
            f"{where}: no tensor fits: the checkpoint holds another net (its parts: {', '.join(top_level(source))}; "
            f"this config's net: {', '.join(top_level(target))}); build the net the checkpoint was trained with"
        )
    if misfits:
        suggested = shortest_prefixes(names, whole)
        raise ValueError(
            f"{where}: {len(misfits)} of the net's {len(target)} tensors do not fit ({misfits[0]}); start them "
            f"fresh with init_skip=[{','.join(suggested)}] or build the net the checkpoint was trained with"
        )
    return fitting


def init_tensors(
    path: str | Path, net: nn.Module, skip: list[str], mmap: bool = False
) -> tuple[str, dict[str, Tensor]]:
    """Where ``init_from=path`` reads (for messages) and the tensors of it that ``net`` takes.

    ``mmap=True`` with a meta-device ``net``: a check of names and shapes that reads no weights.
    """
    from litlab.checkpoint import load_checkpoint
    from litlab.runs import resolve_checkpoint

    source = Path(resolve_checkpoint(path, None, best=True, key="init_from"))
    where = f"init_from={path}" + (f" ({source})" if source != Path(path) else "")
    try:
        return where, fitting_tensors(net_tensors(load_checkpoint(source, mmap=mmap)), net, skip, where)
    except ValueError as e:
        raise ValueError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None


def init_from(net: nn.Module, path: str | Path, skip: list[str]) -> None:
    """Copy the tensors of checkpoint ``path`` into ``net``; those under ``skip`` stay as built."""
    where, tensors = init_tensors(path, net, skip)
    net.load_state_dict(tensors, strict=False)
    fresh = [k for k in net.state_dict() if k not in tensors]
    log.info(f"{where}: {len(tensors)} net tensors loaded" + (f"; fresh: {', '.join(fresh)}" if fresh else ""))
