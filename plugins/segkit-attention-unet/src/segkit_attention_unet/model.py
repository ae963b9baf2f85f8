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

from segkit.models import PAD_MODES, AnySizeModel, check_choice, check_positive_int, reject_unknown_options

LEVELS = 4  # encoder levels, each halving the resolution: inputs are padded to multiples of 2**4


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """(3x3 conv, BatchNorm, ReLU) twice."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


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
        self.conv = conv_block(2 * skip_channels, skip_channels)

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
            conv_block(i, o) for i, o in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.bottleneck = conv_block(widths[-1], bottleneck_width)
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


def build_attention_unet(
    in_channels: int = 3,
    out_channels: int = 1,
    base_channels: int = 32,
    pad_mode: str = "reflect",
    **unknown: Any,
) -> AttentionUNet:
    """Attention U-Net (Oktay et al. 2018): UNet with additive attention gates on the skips.

    Options: ``base_channels`` (int ``b``: encoder widths b, 2b, 4b, 8b, bottleneck 16b; default 32),
    ``pad_mode`` (``"reflect"`` or ``"zeros"``, for inputs whose sides are not multiples of 16).
    """
    reject_unknown_options("attention_unet", unknown, ("base_channels", "pad_mode"))
    check_positive_int(in_channels, "in_channels", "attention_unet")
    check_positive_int(out_channels, "out_channels", "attention_unet")
    check_positive_int(base_channels, "base_channels", "attention_unet")
    check_choice(pad_mode, PAD_MODES, "pad_mode", "attention_unet")
    return AttentionUNet(in_channels, out_channels, base_channels, pad_mode)
