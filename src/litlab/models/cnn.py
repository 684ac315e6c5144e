"""Convolutional network for images of any size and channel count."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from litlab.models import layers


class CNN(nn.Module):
    """Conv blocks (conv, [BatchNorm], activation, [max-pool]) then global pooling and a head.

    Global average pooling makes the head independent of the input's height and width, so
    the same config runs on 8x8 digits, 28x28 MNIST and 32x32 CIFAR. ``channels_last`` keeps
    weights and inputs in NHWC, the layout tensor cores and cuDNN's fastest kernels want.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = True,
        pool: bool = True,
        dropout: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"data.input_shape={list(input_shape)}: the CNN takes images, [C, H, W]")
        layers.check_args("sizes", channels=channels)
        layers.check_args("size", kernel_size=kernel_size)
        layers.check_args("dropout", dropout=dropout)
        in_ch, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_ch in channels:
            blocks.append(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_ch))
            blocks.append(layers.activation(activation))
            # Stop pooling once a side reaches 2 pixels, so deep stacks still fit small images.
            if pool and min(height, width) >= 4:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(in_ch, num_outputs),
        )
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))
