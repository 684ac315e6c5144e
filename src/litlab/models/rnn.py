"""Recurrent network (LSTM or GRU) for token sequences, feature sequences and images read row by row."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from litlab.models import layers

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def reverse_within(h: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``h`` (B, T, F) within its first ``lengths[b]`` steps; padding stays put."""
    if lengths is None:
        return h.flip(1)
    t = torch.arange(h.shape[1], device=h.device)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return h.gather(1, index[:, :, None].expand_as(h))


class RNN(nn.Module):
    """Embedding or raw features, ``n_layers`` recurrent layers, pooling over time, a linear head.

    Token ids ``(B, T)`` are embedded; images ``(C, H, W)`` are read row by row (H steps of
    C*W features); ``(T, F)`` inputs are F features per step; ``(F,)`` inputs are F steps of one.
    Padding must close each sequence (as litlab's collate pads): the forward direction never
    reads it before a real step, and the backward direction reads each sequence reversed
    within its own length, so padded and unpadded inputs give the same output. Layers are run
    one at a time for that reason; a bidirectional stack equals torch's ``bidirectional=True``
    (``dropout`` as torch's between layers, and once more before the head).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int | None = None,
        cell: str = "lstm",
        hidden_size: int = 128,
        n_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"model.net.cell={cell!r} is not a recurrent cell; choose one of {sorted(CELLS)}")
        if pooling not in ("last", "mean"):
            raise ValueError(f"model.net.pooling={pooling!r}: choose last or mean")
        if n_layers < 1:
            raise ValueError(f"model.net.n_layers={n_layers}: an RNN has at least one recurrent layer")
        layers.check_args("size", hidden_size=hidden_size)
        layers.check_args("dropout", dropout=dropout)
        self.tokens, self.pooling = vocab_size is not None, pooling
        self.input_shape = list(input_shape)
        if self.tokens:
            self.embed = nn.Embedding(vocab_size, hidden_size)
            width = hidden_size
        else:
            width = {3: input_shape[0] * input_shape[-1], 2: input_shape[-1], 1: 1}[len(input_shape)]
        self.directions = 2 if bidirectional else 1
        out = hidden_size * self.directions
        self.layers = nn.ModuleList(
            CELLS[cell](width if i < self.directions else out, hidden_size, batch_first=True)
            for i in range(n_layers * self.directions)
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(out, num_outputs)

    def steps(self, x: Tensor) -> Tensor:
        """The input as ``(B, T, F)``."""
        if self.tokens:
            return self.embed(x)
        if len(self.input_shape) == 3:  # (B, C, H, W) -> (B, H, C*W)
            return x.transpose(1, 2).flatten(2)
        return x if len(self.input_shape) == 2 else x.unsqueeze(-1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.steps(x)
        lengths = None if mask is None else mask.sum(1).clamp(min=1)
        for i in range(0, len(self.layers), self.directions):
            outs = [self.layers[i](h)[0]]
            if self.directions == 2:
                outs.append(reverse_within(self.layers[i + 1](reverse_within(h, lengths))[0], lengths))
            h = self.drop(torch.cat(outs, dim=-1))
        if self.pooling == "mean":
            w = torch.ones_like(h[..., :1]) if mask is None else mask[..., None].to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        else:  # the forward direction after the last real step; the backward one after the first
            H = h.shape[-1] // self.directions
            last = h[:, -1] if lengths is None else h[torch.arange(h.shape[0], device=h.device), lengths - 1]
            pooled = torch.cat([last[:, :H], h[:, 0, H:]], dim=-1)
        return self.head(pooled)
