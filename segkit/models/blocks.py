"""Convolution building blocks for encoder-decoder segmentation networks (UNet and its relatives).

The built-in UNet and ResNet34-UNet are made of these, and a plugin's network can be too::

    from segkit.models.blocks import UpBlock, double_conv, init_logit_head
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UpBlock", "double_conv", "init_logit_head"]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(3x3 conv, BatchNorm, ReLU) twice. The convs have no bias: BatchNorm's shift replaces it."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_logit_head(conv: nn.Conv2d) -> None:
    """Xavier weights and a zero bias for the last conv, so an untrained model's logits are centred
    on 0 (probability 0.5) rather than shifted by a random bias."""
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class UpBlock(nn.Module):
    """Double the resolution with a 2x2 stride-2 transposed conv, concatenate the skip, double conv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = double_conv(out_channels + skip_channels, out_channels)

    def forward(self, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(features)], dim=1))
