"""UNets over torchvision ResNets: registers models "resnet34_unet" (the seed report's) and
"resnet18_unet" (its lighter sibling).

Encoder (``model.encoder``): torchvision's ``resnet34()`` (or ``resnet18()``) stem (conv1, bn1, relu),
maxpool and layer1..layer4, under the same attribute names, so torchvision's ImageNet state_dict
loads into it as it is. Bottleneck: double conv 512 -> 512 at 1/32 of the input size. Decoder: four
up-blocks (2x2 stride-2 transposed conv, concatenation with the skip from layer3, layer2, layer1 and
the stem, double conv) back to 1/2 of the input size, of widths 256, 128, 64, 64 (resnet34_unet) or
256, 128, 64, 32 (resnet18_unet). Head: 2x2 stride-2 transposed conv at the last width, BatchNorm,
ReLU, 1x1 conv to logits. 29.2M parameters (resnet34_unet) or 19.0M (resnet18_unet) at 3 in / 1 out.

resnet18_unet trains about 1.7x as many images a second as resnet34_unet on a 2-core CPU (about half
the encoder's work, and the full-resolution half of the decoder at half the width), which is what a
short from-scratch run on a small CPU needs most; ``--recipe auto`` chooses it there.

``pretrained=True`` loads ``ResNet34_Weights.IMAGENET1K_V1`` (``ResNet18_Weights.IMAGENET1K_V1``)
through torchvision's weight API (from the torch hub cache, downloading it once if needed). With
``in_channels != 3`` the pretrained RGB filters of the first conv are averaged over colour and copied
to every input channel, scaled by ``3 / in_channels``, so an image whose channels are all equal gets
the response its grey RGB version would get.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

import segkit
from segkit.blocks import UpBlock, double_conv, init_logit_head
from segkit.component_options import Option, boolean, parse_component_options, positive
from segkit.errors import CheckpointError, SegkitError
from segkit.lazy import lazy_module
from segkit.models import IN_CHANNELS, OUT_CHANNELS, PAD_MODE, AnySizeModel

# torchvision is imported when a model is built, not when segkit starts (segkit.lazy).
tv_models = lazy_module("torchvision.models")


def imagenet_weights(encoder: str = "resnet34"):
    """torchvision's ImageNet weights of ``encoder``: ``ResNet34_Weights.IMAGENET1K_V1`` (also
    ``IMAGENET_WEIGHTS``) or ``ResNet18_Weights.IMAGENET1K_V1``."""
    return {"resnet34": tv_models.ResNet34_Weights, "resnet18": tv_models.ResNet18_Weights}[
        encoder
    ].IMAGENET1K_V1


def __getattr__(name: str):
    if name == "IMAGENET_WEIGHTS":
        return imagenet_weights()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STEM_WIDTH = 64
ENCODER_WIDTHS = (64, 128, 256, 512)  # channels out of layer1..layer4
DECODER_WIDTHS = (256, 128, 64, 64)
#: resnet18_unet's: the decoder's full-resolution half (the last up-block and the head) at half width.
LIGHT_DECODER_WIDTHS = (256, 128, 64, 32)
SIZE_MULTIPLE = 32  # stem conv, maxpool and layer2..4 each halve the resolution
#: The torchvision ResNets an encoder can be (both give 64, 128, 256, 512 channels).
ENCODERS = ("resnet18", "resnet34")


class ResNetEncoder(nn.Module):
    """torchvision's ResNet34 (or ResNet18) without its average pooling and classifier.

    ``forward`` returns the features at strides 2 (stem), 4 (layer1), 8, 16 and 32 (layer4).
    """

    def __init__(self, in_channels: int = 3, encoder: str = "resnet34"):
        super().__init__()
        # Randomly initialised: weights, if any, are loaded afterwards.
        resnet = getattr(tv_models, encoder)()
        self.name = encoder
        self.in_channels = in_channels
        self.conv1 = resnet.conv1
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(images)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.layer4(layer3)
        return [stem, layer1, layer2, layer3, layer4]

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a torchvision ``resnet34`` (``resnet18``) state_dict: the classifier (``fc.*``) is
        dropped and, for ``in_channels != 3``, the RGB stem filters are adapted (see the module docstring)."""
        state = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
        if self.in_channels != 3 and "conv1.weight" in state:
            state["conv1.weight"] = adapt_rgb_filters(state["conv1.weight"], self.in_channels)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"the {self.name} weights do not fit the encoder: {error}") from None


#: The seed report's name for the encoder.
ResNet34Encoder = ResNetEncoder


def adapt_rgb_filters(rgb_weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv filters for ``in_channels`` inputs from RGB ones ``(out, 3, k, k)``: the mean over
    colour, repeated per input channel and scaled by ``3 / in_channels``."""
    mean = rgb_weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels)


class ResNetUNet(AnySizeModel):
    """UNet decoder over a ResNet34 (or ResNet18) encoder, returning logits."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        pad_mode: str = "reflect",
        encoder: str = "resnet34",
        decoder_widths: tuple[int, int, int, int] = DECODER_WIDTHS,
    ):
        super().__init__(in_channels, out_channels, size_multiple=SIZE_MULTIPLE, pad_mode=pad_mode)
        self.encoder = ResNetEncoder(in_channels, encoder)
        self.bottleneck = double_conv(ENCODER_WIDTHS[-1], ENCODER_WIDTHS[-1])
        skip_widths = (ENCODER_WIDTHS[2], ENCODER_WIDTHS[1], ENCODER_WIDTHS[0], STEM_WIDTH)
        inputs = (ENCODER_WIDTHS[-1], *decoder_widths[:-1])
        self.decoder = nn.ModuleList(
            UpBlock(i, s, o) for i, s, o in zip(inputs, skip_widths, decoder_widths, strict=True)
        )
        last = decoder_widths[-1]
        self.head = nn.Sequential(
            nn.ConvTranspose2d(last, last, kernel_size=2, stride=2, bias=False),
            nn.BatchNorm2d(last),
            nn.ReLU(inplace=True),
            nn.Conv2d(last, out_channels, kernel_size=1),
        )
        init_logit_head(self.head[-1])

    def forward_padded(self, images: torch.Tensor) -> torch.Tensor:
        stem, layer1, layer2, layer3, layer4 = self.encoder(images)
        features = self.bottleneck(layer4)
        for block, skip in zip(self.decoder, (layer3, layer2, layer1, stem), strict=True):
            features = block(features, skip)
        return self.head(features)


#: The seed report's model class.
ResNet34UNet = ResNetUNet


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Make every new socket give up after ``seconds`` of silence (urllib has no other knob here)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def weights_file_name(encoder: str = "resnet34") -> str:
    """The file name torch hub's cache gives ``encoder``'s ImageNet weights."""
    return os.path.basename(urlparse(imagenet_weights(encoder).url).path)


def fetch_imagenet_state_dict(timeout_s: float = 30.0, encoder: str = "resnet34") -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet34 (ResNet18) state_dict, from the torch hub cache or downloaded
    into it."""
    weights = imagenet_weights(encoder)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", weights_file_name(encoder))
    model = f"{encoder}_unet"
    try:
        with socket_timeout(timeout_s):
            return weights.get_state_dict(
                progress=False, check_hash=True, map_location="cpu", weights_only=True
            )
    except Exception as error:  # noqa: BLE001 - network, HTTP, hash and unpickling errors all mean the same
        raise SegkitError(
            f"{model}: could not load the pretrained ImageNet weights ({type(error).__name__}: "
            f"{error}). They come from {weights.url} and are cached at {cached}. Either connect "
            f"to the internet and retry, or download that file elsewhere and copy it to {cached} "
            f"(TORCH_HOME moves the cache), or train from scratch with pretrained=False."
        ) from None


OPTIONS = {
    "in_channels": IN_CHANNELS,
    "out_channels": OUT_CHANNELS,
    "pretrained": Option(False, boolean, help="load torchvision's ImageNet weights into the encoder"),
    "pad_mode": PAD_MODE,
    "download_timeout": Option(
        30.0,
        positive,
        "a positive number of seconds",
        help="seconds without an answer before a weight download gives up",
    ),
}


def _build(name: str, encoder: str, decoder_widths: tuple[int, int, int, int], options: dict) -> ResNetUNet:
    parsed = parse_component_options("model", name, options, OPTIONS)
    model = ResNetUNet(
        parsed["in_channels"], parsed["out_channels"], parsed["pad_mode"], encoder, decoder_widths
    )
    if parsed["pretrained"]:
        state = fetch_imagenet_state_dict(parsed["download_timeout"], encoder)
        model.encoder.load_torchvision_state_dict(state)
    return model


def build_resnet34_unet(**options: Any) -> ResNetUNet:
    """UNet with a ResNet34 encoder (29.2M parameters); pretrained=True loads ImageNet weights.

    Options (``OPTIONS``): ``in_channels`` (3), ``out_channels`` (1), ``pretrained`` (bool: load
    ``ResNet34_Weights.IMAGENET1K_V1`` into the encoder), ``pad_mode`` (``"reflect"`` or ``"zeros"``,
    for inputs whose sides are not multiples of 32), ``download_timeout`` (seconds without an answer
    before a weight download gives up).
    """
    return _build("resnet34_unet", "resnet34", DECODER_WIDTHS, options)


def build_resnet18_unet(**options: Any) -> ResNetUNet:
    """UNet with a ResNet18 encoder and a lighter decoder (19.0M parameters); the same options as
    ``build_resnet34_unet`` (``pretrained`` loads ``ResNet18_Weights.IMAGENET1K_V1``)."""
    return _build("resnet18_unet", "resnet18", LIGHT_DECODER_WIDTHS, options)


@segkit.hookimpl
def register_models(register):
    register(
        "resnet34_unet",
        build_resnet34_unet,
        description="UNet with a ResNet34 encoder (29.2M params; pretrained=True loads ImageNet weights)",
        options=OPTIONS,
    )
    register(
        "resnet18_unet",
        build_resnet18_unet,
        description="UNet with a ResNet18 encoder, lighter decoder (19.0M params; ~1.7x resnet34_unet's "
        "training speed on a CPU; pretrained=True loads ImageNet weights)",
        options=OPTIONS,
    )
