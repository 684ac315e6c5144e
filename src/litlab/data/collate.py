"""Padding collate for variable-length sequences."""

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_collate(samples: Sequence[tuple[Tensor, Tensor]], pad_value: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``[(tokens (T_i,), y), ...]`` -> ``(x (B, T), y (B,), mask (B, T))``, padded to the batch's longest.

    ``mask`` is True for real tokens: the Transformer keeps padding out of attention and pooling,
    the RNN reads only the real tokens.
    """
    lengths = torch.tensor([len(x) for x, _ in samples])
    x = torch.full((len(samples), int(lengths.max())), pad_value, dtype=samples[0][0].dtype)
    for i, (tokens, _) in enumerate(samples):
        x[i, : len(tokens)] = tokens
    mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    return x, torch.stack([torch.as_tensor(y) for _, y in samples]), mask
