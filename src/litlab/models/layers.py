"""Small building blocks shared by the networks."""

from collections.abc import Callable, Sequence
from functools import partial
from numbers import Real
from typing import Any

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


def _size(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


#: The kinds of net argument checked before anything is built: their check, and what they allow (for the message).
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "size": (_size, "an integer >= 1"),
    "size or null": (lambda v: v is None or _size(v), "an integer >= 1 or null"),
    "sizes": (
        lambda v: isinstance(v, Sequence) and not isinstance(v, str) and all(map(_size, v)),
        "a list of integers >= 1",
    ),
    # nn.Dropout takes p=1 (every activation zeroed) and, in a sequence, a negative p without a word.
    "dropout": (lambda v: isinstance(v, Real) and not isinstance(v, bool) and 0 <= v < 1, "a probability in [0, 1)"),
}


def check_args(kind: str, **args: Any) -> None:
    """``ValueError`` naming ``model.net.<key>`` for the first of ``args`` that is not of ``kind`` (a key of ``KINDS``).

    torch would fail later, or not at all, without naming the argument: a negative width is a
    "negative dimension", a width of 0 an IndexError in the first batch, a dropout of 1 zeros.
    """
    ok, allowed = KINDS[kind]
    for key, value in args.items():
        if not ok(value):
            raise ValueError(f"model.net.{key}={value}: must be {allowed}")


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
