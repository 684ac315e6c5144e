"""Copies of the torchmetrics states under a module: to take a batch back out, or to checkpoint them."""

import torch
from torch import Tensor, nn
from torchmetrics import Metric

States = dict[str, dict[str, Tensor | list[Tensor]]]


def metric_states(module: nn.Module) -> States:
    """Every metric's states by module name. Tensor states are cloned (updates add in place); list
    states (``CatMetric``, curves) are copied shallowly, since updates only append to them."""
    return {
        name: {k: list(v) if isinstance(v, list) else v.clone() for k, v in ((k, getattr(m, k)) for k in m._defaults)}
        for name, m in module.named_modules()
        if isinstance(m, Metric)
    }


def load_metric_states(module: nn.Module, states: States, device: torch.device | None = None) -> list[Metric]:
    """Put ``states`` back (on ``device``, if given); returns the metrics loaded (other names are ignored)."""
    modules, loaded = dict(module.named_modules()), []
    for name, values in states.items():
        metric = modules.get(name)
        if not isinstance(metric, Metric):
            continue
        for k, v in values.items():
            setattr(metric, k, [t.to(device) for t in v] if isinstance(v, list) else v.to(device))
        loaded.append(metric)
    return loaded
