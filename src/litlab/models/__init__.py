"""Plain ``nn.Module`` networks, usable without Lightning or Hydra."""

from torch import nn

from litlab.models.cnn import CNN
from litlab.models.layers import initialize
from litlab.models.mlp import MLP
from litlab.models.rnn import RNN
from litlab.models.transformer import Transformer

NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "rnn": RNN, "transformer": Transformer}


def build_net(arch: str, init: str = "default", **kwargs) -> nn.Module:
    """The network registered under ``arch`` (``mlp``, ``cnn``, ``rnn``, ``transformer``), weights set by ``init``."""
    if arch not in NETS:
        raise ValueError(f"model.net.arch={arch!r} is not a network; choose one of {sorted(NETS)}")
    return initialize(NETS[arch](**kwargs), init)


__all__ = ["CNN", "MLP", "NETS", "RNN", "Transformer", "build_net"]
