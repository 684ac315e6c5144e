"""Multi-layer perceptron on flattened inputs."""

import math
from collections.abc import Sequence

from torch import Tensor, nn

from litlab.models import layers


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden size, then a linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden_sizes: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers.check_args("sizes", hidden_sizes=hidden_sizes)
        layers.check_args("dropout", dropout=dropout)
        blocks: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_sizes:
            # A bias before BatchNorm is cancelled by its mean subtraction.
            blocks.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(hidden))
            blocks.append(layers.activation(activation))
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = hidden
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(x))
