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


def checked_mask(mask: Tensor, x: Tensor, where: str) -> Tensor:
    """A padding mask for token ids ``x`` as ``pad_collate`` makes it: bool, ``x``'s shape, right-padded.

    The RNN reads a sample's real tokens as the first ``mask.sum()`` (it packs them by length), so a
    mask with padding before a real token is refused, not read wrong; so is a sample with no real token.
    """
    if mask.shape != x.shape:
        raise ValueError(f"{where} has shape {list(mask.shape)}, its x {list(x.shape)}: they must agree")
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{where} holds values other than 0/1 (True marks a real token)")
    mask = mask.bool()
    empty = ~mask.any(1)
    gaps = (mask[:, 1:] & ~mask[:, :-1]).any(1)
    right_padded = "has a real token after padding; masks are right-padded (the real tokens first)"
    for bad, what in ((empty, "has no real token"), (gaps, right_padded)):
        rows = bad.nonzero().flatten()
        if len(rows):
            raise ValueError(f"{where}: sample {int(rows[0])} {what} ({len(rows)} samples in all)")
    return mask
