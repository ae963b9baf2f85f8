"""The classic UNet (Ronneberger et al. 2015) as in the seed report: registers model "unet".

Encoder: four double-conv blocks (3x3 conv without bias, BatchNorm, ReLU, twice), each followed by
2x2 max pooling; bottleneck double conv to twice the last width; decoder: per level a 2x2 stride-2
transposed conv, concatenation with the encoder's skip, double conv; head: 1x1 conv to logits.
With the default widths 64, 128, 256, 512 (bottleneck 1024), 3 input and 1 output channel it has
31.0M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import segkit

# The blocks live in the core for any plugin to reuse; kept importable from here.
from segkit.blocks import UpBlock, double_conv, init_logit_head
from segkit.component_options import Option, Parser, parse_component_options, positive_int
from segkit.models import IN_CHANNELS, OUT_CHANNELS, PAD_MODE, AnySizeModel

__all__ = ["UNet", "UpBlock", "build_unet", "double_conv", "init_logit_head", "unet_widths"]

LEVELS = 4  # encoder blocks, each halving the resolution; inputs are padded to a multiple of 2**4


class UNet(AnySizeModel):
    """UNet returning logits. ``widths`` are the channels of the four encoder levels."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        widths: Sequence[int] = (64, 128, 256, 512),
        pad_mode: str = "reflect",
    ):
        super().__init__(in_channels, out_channels, size_multiple=2**LEVELS, pad_mode=pad_mode)
        self.widths = tuple(widths)
        bottleneck_width = 2 * self.widths[-1]
        inputs = (in_channels, *self.widths[:-1])
        self.encoder = nn.ModuleList(double_conv(i, o) for i, o in zip(inputs, self.widths, strict=True))
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.bottleneck = double_conv(self.widths[-1], bottleneck_width)
        coarser = (*self.widths[1:], bottleneck_width)
        self.decoder = nn.ModuleList(
            UpBlock(c, w, w) for c, w in zip(reversed(coarser), reversed(self.widths), strict=True)
        )
        self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)
        init_logit_head(self.head)

    def forward_padded(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        features = images
        for block in self.encoder:
            features = block(features)
            skips.append(features)
            features = self.pool(features)
        features = self.bottleneck(features)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            features = block(features, skip)
        return self.head(features)


#: The widest layer a UNet may have: far beyond any memory already (a 3x3 convolution of this width
#: holds 4.8e10 weights), and small enough that torch's size arithmetic never overflows.
MAX_WIDTH = 2**16


def _width(value: Any) -> int:
    width = positive_int(value)
    if width > MAX_WIDTH:
        raise ValueError(f"{width} > {MAX_WIDTH}")
    return width


def _base_channels(value: Any) -> int | tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != LEVELS:
            raise ValueError(f"{len(value)} widths")
        return tuple(_width(width) for width in value)
    base = _width(value)
    _width(base * 2**LEVELS)  # the bottleneck's width
    return base


BASE_CHANNELS = Option(
    64,
    Parser(
        _base_channels,
        f"a positive integer up to {MAX_WIDTH // 2**LEVELS} or a list of {LEVELS} positive integers "
        f"up to {MAX_WIDTH}",
    ),
    help="b for encoder widths b, 2b, 4b, 8b (bottleneck 16b), or the four widths as a list",
)
OPTIONS = {
    "in_channels": IN_CHANNELS,
    "out_channels": OUT_CHANNELS,
    "base_channels": BASE_CHANNELS,
    "pad_mode": PAD_MODE,
}


def unet_widths(base_channels: int | Sequence[int]) -> tuple[int, ...]:
    """The four encoder widths from a parsed ``base_channels``: an int ``b`` gives ``b, 2b, 4b, 8b``;
    a list of four is taken as the widths themselves."""
    if isinstance(base_channels, (list, tuple)):
        return tuple(base_channels)
    return tuple(base_channels * 2**level for level in range(LEVELS))


def build_unet(**options: Any) -> UNet:
    """Classic UNet (31.0M parameters at base_channels=64); base_channels=16 gives a light 1.9M one.

    Options (``OPTIONS``): ``in_channels`` (3), ``out_channels`` (1), ``base_channels`` (int ``b``
    for widths b, 2b, 4b, 8b and bottleneck 16b, or a list of four widths), ``pad_mode``
    (``"reflect"`` or ``"zeros"``: how inputs whose sides are not multiples of 16 are padded before
    the network and cropped after).
    """
    parsed = parse_component_options("model", "unet", options, OPTIONS)
    return UNet(
        parsed["in_channels"],
        parsed["out_channels"],
        unet_widths(parsed["base_channels"]),
        parsed["pad_mode"],
    )


@segkit.hookimpl
def register_models(register):
    register(
        "unet",
        build_unet,
        description="Classic UNet from scratch (31.0M params; option base_channels, default 64)",
        options=OPTIONS,
    )
