"""Small building blocks shared by the networks."""

from functools import partial

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


#: Weight initialisations by name; ``default`` keeps each net's own (torch's, or GPT-2's for the Transformer).
INITS = {
    "xavier": nn.init.xavier_uniform_,
    "kaiming": partial(nn.init.kaiming_normal_, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
    "normal": partial(nn.init.normal_, std=0.02),
}


def initialize(net: nn.Module, init: str) -> nn.Module:
    """Re-initialise the weights of every linear, convolutional and recurrent layer by ``init``; biases to 0.

    Norm layers and embeddings keep their own initialisation.
    """
    if init == "default":
        return net
    if init not in INITS:
        raise ValueError(f"model.net.init={init!r} is unknown; choose one of {['default', *INITS]}")
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.RNNBase):
            for name, p in module.named_parameters(recurse=False):
                if name.startswith("weight"):
                    INITS[init](p)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
    return net
