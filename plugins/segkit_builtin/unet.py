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
from segkit.errors import UsageError
from segkit.models import PAD_MODES, AnySizeModel, check_choice, check_positive_int, reject_unknown_options

LEVELS = 4  # encoder blocks, each halving the resolution; inputs are padded to a multiple of 2**4


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


def unet_widths(base_channels: Any, model_name: str = "unet") -> tuple[int, ...]:
    """The four encoder widths from ``base_channels``: an int ``b`` gives ``b, 2b, 4b, 8b``; a list of
    four positive ints is taken as the widths themselves."""
    if isinstance(base_channels, (list, tuple)):
        if len(base_channels) != LEVELS:
            raise UsageError(
                f"{model_name}: option base_channels as a list must give {LEVELS} widths, "
                f"got {len(base_channels)}: {list(base_channels)!r}"
            )
        return tuple(check_positive_int(w, "base_channels", model_name) for w in base_channels)
    if isinstance(base_channels, bool) or not isinstance(base_channels, int) or base_channels < 1:
        raise UsageError(
            f"{model_name}: option base_channels must be a positive integer or a list of {LEVELS} "
            f"positive integers, got {base_channels!r}"
        )
    return tuple(base_channels * 2**level for level in range(LEVELS))


def build_unet(
    in_channels: int = 3,
    out_channels: int = 1,
    base_channels: int | Sequence[int] = 64,
    pad_mode: str = "reflect",
    **unknown: Any,
) -> UNet:
    """Classic UNet (31.0M parameters at base_channels=64); base_channels=16 gives a light 1.9M one.

    Options: ``base_channels`` (int ``b`` for widths b, 2b, 4b, 8b and bottleneck 16b, or a list of
    four widths), ``pad_mode`` (``"reflect"`` or ``"zeros"``: how inputs whose sides are not
    multiples of 16 are padded before the network and cropped after).
    """
    reject_unknown_options("unet", unknown, ("base_channels", "pad_mode"))
    check_positive_int(in_channels, "in_channels", "unet")
    check_positive_int(out_channels, "out_channels", "unet")
    check_choice(pad_mode, PAD_MODES, "pad_mode", "unet")
    return UNet(in_channels, out_channels, unet_widths(base_channels), pad_mode)


@segkit.hookimpl
def register_models(register):
    register(
        "unet",
        build_unet,
        description="Classic UNet from scratch (31.0M params; option base_channels, default 64)",
    )
