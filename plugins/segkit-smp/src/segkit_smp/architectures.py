"""The smp architectures segkit registers, and how segkit's options map onto each one's arguments.

Each ``Architecture`` names the smp class, says what ``decoder_channels`` means for it (a list of
widths, one per decoder stage, or one width, or nothing) and, where the architecture cannot be
exported with dynamic height and width, why (``export_blocker``, read by ``segkit export``).
smp's DPT is left out: its ViT encoder takes one fixed input size only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segkit.errors import UsageError

#: Why a model with pyramid pooling cannot be exported with dynamic sizes.
ADAPTIVE_POOLING = (
    "its pyramid pooling (adaptive average pooling to 2x2, 3x3 and 6x6 bins) depends on the input size, "
    "which ONNX and TorchScript tracing freeze; use it from PyTorch (segkit predict) or export another "
    "architecture"
)


@dataclass(frozen=True)
class Architecture:
    """An smp architecture: ``smp_class`` (the attribute of ``segmentation_models_pytorch``),
    ``decoder`` (how ``decoder_channels`` maps: ``"list"``: the ``decoder_channels`` list, one width
    per encoder stage; an argument name: that argument gets the one width; ``""``: not supported),
    ``summary`` (for ``segkit plugins`` / ``segkit models``) and ``export_blocker``."""

    smp_class: str
    summary: str
    decoder: str = ""
    export_blocker: str | None = None
    #: Halvings beyond the encoder's output stride (the padding multiple is stride x this).
    extra_downsampling: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


#: Registered as ``smp_<key>``.
ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("Unet", "U-Net: a decoder stage per encoder stage, skips concatenated", "list"),
    "unetplusplus": Architecture("UnetPlusPlus", "U-Net++: nested, densely connected skips", "list"),
    "manet": Architecture("MAnet", "MA-Net: U-Net with position and multi-scale attention", "list"),
    "linknet": Architecture("Linknet", "LinkNet: light decoder, skips added (no decoder_channels)"),
    "fpn": Architecture(
        "FPN",
        "Feature Pyramid Network: pyramid features merged at 1/4, upsampled",
        "decoder_pyramid_channels",
    ),
    "pspnet": Architecture(
        "PSPNet",
        "PSPNet: pyramid pooling on 1/8 features (encoder_depth 3); not exportable with dynamic sizes",
        "psp_out_channels",
        export_blocker=ADAPTIVE_POOLING,
    ),
    "deeplabv3": Architecture(
        "DeepLabV3", "DeepLabV3: atrous spatial pyramid pooling on dilated 1/8 features", "decoder_channels"
    ),
    "deeplabv3plus": Architecture(
        "DeepLabV3Plus", "DeepLabV3+: ASPP at 1/16 plus a 1/4 skip", "decoder_channels"
    ),
    "pan": Architecture(
        "PAN",
        "Pyramid Attention Network (pads inputs to multiples of 128)",
        "decoder_channels",
        extra_downsampling=8,  # its feature pyramid attention halves the 1/16 features three times
    ),
    "upernet": Architecture(
        "UPerNet",
        "UPerNet: pyramid pooling plus FPN; not exportable with dynamic sizes",
        "decoder_channels",
        export_blocker=ADAPTIVE_POOLING,
    ),
    "segformer": Architecture(
        "Segformer",
        "SegFormer's all-MLP decoder (any encoder; mit_b0..b5 as in the paper)",
        "decoder_segmentation_channels",
    ),
}

#: smp's default decoder widths for the U-Net family, deepest first (the first encoder_depth are used).
UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def decoder_arguments(key: str, decoder_channels: Any, encoder_depth: int) -> dict[str, Any]:
    """The smp keyword arguments for segkit's ``decoder_channels`` option (None: smp's default)."""
    architecture = ARCHITECTURES[key]
    name = f"smp_{key}"
    if architecture.decoder == "list":
        if decoder_channels is None:
            return {"decoder_channels": list(UNET_DECODER_CHANNELS[:encoder_depth])}
        widths = [decoder_channels] if isinstance(decoder_channels, int) else list(decoder_channels)
        if len(widths) != encoder_depth:
            raise UsageError(
                f"model {name!r}: decoder_channels needs one width per decoder stage, {encoder_depth} for "
                f"encoder_depth={encoder_depth} (e.g. decoder_channels="
                f"[{','.join(map(str, UNET_DECODER_CHANNELS[:encoder_depth]))}]), got {decoder_channels!r}"
            )
        return {"decoder_channels": widths}
    if decoder_channels is None:
        return {}
    if not architecture.decoder:
        raise UsageError(f"model {name!r} takes no decoder_channels: its decoder widths follow the encoder's")
    if not isinstance(decoder_channels, int):
        raise UsageError(
            f"model {name!r}: decoder_channels is one width for this architecture "
            f"(e.g. decoder_channels=128), got {decoder_channels!r}"
        )
    arguments = {architecture.decoder: decoder_channels}
    if key == "fpn":  # the segmentation branch at about half the pyramid's width (smp: 256 and 128): a
        # multiple of 32 for its GroupNorm(32), and at least 64 so that a group of a 1x1 map (inputs
        # up to 32 pixels) holds two values
        arguments["decoder_segmentation_channels"] = max(64, decoder_channels // 64 * 32)
    return arguments
