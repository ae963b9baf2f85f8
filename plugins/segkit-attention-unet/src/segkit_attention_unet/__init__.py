"""segkit-attention-unet: an example third-party segkit plugin providing model "attention_unet".

segkit finds this module through the entry point declared in this distribution's pyproject.toml
(group ``segkit``) and calls the hooks implemented here with ``@segkit.hookimpl``.
"""

from __future__ import annotations

import segkit
from segkit_attention_unet.model import OPTIONS, AttentionGate, AttentionUNet, build_attention_unet

__all__ = ["AttentionGate", "AttentionUNet", "OPTIONS", "build_attention_unet", "register_models"]


@segkit.hookimpl
def register_models(register):
    register(
        "attention_unet",
        build_attention_unet,
        description="Attention U-Net (Oktay et al. 2018): UNet with attention-gated skips (base_channels=32)",
        options=OPTIONS,
    )
