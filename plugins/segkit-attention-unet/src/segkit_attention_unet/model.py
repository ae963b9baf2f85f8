"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas").

A UNet whose skip connections pass through additive attention gates. At each decoder level the gate
compares the skip features ``x`` (fine) with the gating signal ``g`` (the coarser decoder features
just below) and computes one coefficient per pixel::

    alpha = sigmoid(psi(relu(W_x(x) + W_g(g))))

``W_x`` is a 2x2 stride-2 conv, bringing ``x`` to the grid of ``g``; ``W_g`` and ``psi`` are 1x1
convs. ``alpha`` is upsampled bilinearly to the size of ``x``, and the skip that the decoder
concatenates is ``alpha * x``: features the coarser context deems irrelevant are suppressed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from segkit.blocks import double_conv
from segkit.component_options import Option, parse_component_options, positive_int
from segkit.models import IN_CHANNELS, OUT_CHANNELS, PAD_MODE, AnySizeModel

LEVELS = 4  # encoder levels, each halving the resolution: inputs are padded to multiples of 2**4

#: The factory's options, declared once: checked by ``build_attention_unet``, listed by segkit.
OPTIONS = {
    "in_channels": IN_CHANNELS,
    "out_channels": OUT_CHANNELS,
    "base_channels": Option(32, positive_int, help="encoder widths b, 2b, 4b, 8b; bottleneck 16b"),
    "pad_mode": PAD_MODE,
}


class AttentionGate(nn.Module):
    """Additive attention gate: returns the skip features scaled by per-pixel coefficients in (0, 1)."""

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int):
        super().__init__()
        self.project_skip = nn.Conv2d(skip_channels, inter_channels, kernel_size=2, stride=2, bias=False)
        self.project_gating = nn.Conv2d(gating_channels, inter_channels, kernel_size=1)
        self.psi = nn.Sequential(
            nn.Conv2d(inter_channels, 1, kernel_size=1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )

    def coefficients(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``(N, 1, H, W)`` at the resolution of ``skip``."""
        joint = F.relu(self.project_skip(skip) + self.project_gating(gating))
        alpha = self.psi(joint)
        return F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gating)


class AttentionUpBlock(nn.Module):
    """Gate the skip with the coarse features, upsample the coarse features, concatenate, conv."""

    def __init__(self, coarse_channels: int, skip_channels: int):
        super().__init__()
        self.gate = AttentionGate(skip_channels, coarse_channels, max(1, skip_channels // 2))
        self.up = nn.ConvTranspose2d(coarse_channels, skip_channels, kernel_size=2, stride=2)
        self.conv = double_conv(2 * skip_channels, skip_channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        gated_skip = self.gate(skip, gating=coarse)
        return self.conv(torch.cat([gated_skip, self.up(coarse)], dim=1))


class AttentionUNet(AnySizeModel):
    """Attention U-Net returning logits; encoder widths ``base, 2 base, 4 base, 8 base``."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 1, base_channels: int = 32, pad_mode: str = "reflect"
    ):
        super().__init__(in_channels, out_channels, size_multiple=2**LEVELS, pad_mode=pad_mode)
        widths = [base_channels * 2**level for level in range(LEVELS)]
        bottleneck_width = 2 * widths[-1]
        self.encoder = nn.ModuleList(
            double_conv(i, o) for i, o in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.bottleneck = double_conv(widths[-1], bottleneck_width)
        coarser = [*widths[1:], bottleneck_width]
        self.decoder = nn.ModuleList(
            AttentionUpBlock(c, w) for c, w in zip(reversed(coarser), reversed(widths), strict=True)
        )
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

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


def build_attention_unet(**options: Any) -> AttentionUNet:
    """Attention U-Net (Oktay et al. 2018): UNet with additive attention gates on the skips.

    Options (``OPTIONS``): ``in_channels`` (3), ``out_channels`` (1), ``base_channels`` (int ``b``:
    encoder widths b, 2b, 4b, 8b, bottleneck 16b; default 32), ``pad_mode`` (``"reflect"`` or
    ``"zeros"``, for inputs whose sides are not multiples of 16).
    """
    parsed = parse_component_options("model", "attention_unet", options, OPTIONS)
    return AttentionUNet(**parsed)
