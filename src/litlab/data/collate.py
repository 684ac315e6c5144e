"""Padding collate for variable-length sequences."""

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_sequences(sequences: Sequence[Tensor], pad_value: int = 0) -> tuple[Tensor, Tensor]:
    """``[tokens (T_i,), ...]`` -> ``(x (B, T), mask (B, T))``: right-padded to the longest, mask True for tokens."""
    lengths = torch.tensor([len(s) for s in sequences])
    x = torch.full((len(sequences), int(lengths.max())), pad_value, dtype=sequences[0].dtype)
    for i, tokens in enumerate(sequences):
        x[i, : len(tokens)] = tokens
    return x, torch.arange(x.shape[1])[None, :] < lengths[:, None]


def pad_collate(samples: Sequence[tuple[Tensor, Tensor]], pad_value: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``[(tokens (T_i,), y), ...]`` -> ``(x (B, T), y (B,), mask (B, T))``, padded to the batch's longest.

    ``mask`` is True for real tokens: the Transformer keeps padding out of attention and pooling,
    the RNN reads only the real tokens.
    """
    x, mask = pad_sequences([tokens for tokens, _ in samples], pad_value)
    return x, torch.stack([torch.as_tensor(y) for _, y in samples]), mask
