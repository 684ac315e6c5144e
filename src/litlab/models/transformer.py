"""Pre-norm Transformer encoder for token sequences or image patches (ViT-style)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from litlab.models import layers


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``mask`` is ``(B, T)``, True where a token is real."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.net.d_model={d_model} must be divisible by model.net.n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # Padding is masked on the key side only: every query still sees the real tokens.
        attn_mask = None if mask is None else mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """x + attn(LN(x)), then x + FFN(LN(x)): the pre-norm layout that trains without warmup tricks."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), mask))
        return x + self.mlp(self.ln_2(x))


class PatchEmbedding(nn.Module):
    """Cut a ``(B, C, H, W)`` image into non-overlapping patches and project each to ``d_model``."""

    def __init__(self, input_shape: Sequence[int], patch_size: int, d_model: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(
                f"data.input_shape={list(input_shape)}: the Transformer takes images [C, H, W] or token ids"
                " (with data.vocab_size)"
            )
        channels, height, width = input_shape
        if height % patch_size or width % patch_size:
            raise ValueError(f"model.net.patch_size={patch_size} must divide the image size {height}x{width}")
        self.num_patches = (height // patch_size) * (width // patch_size)
        self.proj = nn.Conv2d(channels, d_model, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Transformer(nn.Module):
    """Embedding, learned positions, ``n_layers`` pre-norm blocks, pooling and a linear head.

    With ``vocab_size`` set the input is a ``(B, T)`` tensor of token ids, otherwise an image
    ``(B, C, H, W)`` cut into ``patch_size`` patches. ``mask`` (``(B, T)``, True = real token)
    keeps padding out of attention and out of mean pooling. ``activation_checkpointing`` trades
    compute for memory while training (``torch.utils.checkpoint``).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int | None = None,
        patch_size: int = 4,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        pooling: str = "mean",
        max_len: int | None = None,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"model.net.pooling={pooling!r} is not allowed; choose 'mean' or 'cls'")
        layers.check_args("size", patch_size=patch_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers)
        layers.check_args("size or null", d_ff=d_ff, max_len=max_len)
        layers.check_args("dropout", dropout=dropout)
        self.pooling = pooling
        self.activation_checkpointing = activation_checkpointing
        self.tokens = vocab_size is not None
        if self.tokens:
            self.embed = nn.Embedding(vocab_size, d_model)
            seq_len = max_len or input_shape[-1]
        else:
            self.embed = PatchEmbedding(input_shape, patch_size, d_model)
            seq_len = self.embed.num_patches
        self.max_len = seq_len  # input tokens (or patches) it takes; the CLS token takes one more position
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        self.pos = nn.Parameter(torch.zeros(1, seq_len + (pooling == "cls"), d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff or 4 * d_model, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_outputs)
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        # GPT-2 init: N(0, 0.02), with residual projections scaled down by depth so the
        # residual stream's variance does not grow with the number of layers.
        for name, p in self.named_parameters():
            if p.dim() < 2 and "pos" not in name and "cls" not in name:
                continue
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
            nn.init.normal_(p, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.embed(x)
        if h.shape[1] > self.max_len:
            raise ValueError(f"sequence length {h.shape[1]} exceeds model.net.max_len={self.max_len}")
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = self.drop(h + self.pos[:, : h.shape[1]])
        if mask is not None:
            mask = mask.bool()
        for block in self.blocks:
            if self.activation_checkpointing and self.training:
                # Keep each block's input only and recompute its activations in backward:
                # activation memory of one block instead of n_layers, for about a third more compute.
                h = checkpoint(block, h, mask, use_reentrant=False)
            else:
                h = block(h, mask)
        h = self.ln_f(h)
        if self.cls is not None:
            pooled = h[:, 0]
        elif mask is None:
            pooled = h.mean(dim=1)
        else:
            w = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)
