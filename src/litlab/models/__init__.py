"""Plain ``nn.Module`` networks, usable without Lightning or Hydra."""

from torch import nn

from litlab.models.cnn import CNN
from litlab.models.mlp import MLP
from litlab.models.transformer import Transformer

NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "transformer": Transformer}


def build_net(arch: str, **kwargs) -> nn.Module:
    """Build the network registered under ``arch`` (``mlp``, ``cnn`` or ``transformer``)."""
    if arch not in NETS:
        raise ValueError(f"model.net.arch={arch!r} is not a network; choose one of {sorted(NETS)}")
    return NETS[arch](**kwargs)


__all__ = ["CNN", "MLP", "NETS", "Transformer", "build_net"]
