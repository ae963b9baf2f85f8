"""Helpers every segmentation model shares; no model lives here (models are plugins).

- ``AnySizeModel``: a base class for networks that need H and W divisible by some number (a UNet with
  four poolings needs 16, a ResNet encoder 32). It pads the input up to that multiple and crops the
  logits back, so a 500x375 photo gives a 500x375 mask. ``PadToMultiple`` wraps any existing module
  the same way.
- ``count_parameters``, ``count_flops`` and ``describe_model``: the size and cost figures that
  ``segkit models`` prints.
- ``IN_CHANNELS``, ``OUT_CHANNELS`` and ``PAD_MODE``: the options most model factories share, declared
  with ``segkit.config.component_options`` for a factory's own option spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from segkit.components import get_component
from segkit.config.component_options import Option, choice, parse_component_options, positive_int
from segkit.errors import UsageError

PAD_MODES = ("reflect", "zeros")

#: Options most model factories share, for their option specs: ``{"in_channels": IN_CHANNELS, ...}``.
IN_CHANNELS = Option(3, positive_int, help="channels of the input images (segkit passes the data's)")
OUT_CHANNELS = Option(1, positive_int, help="channels of the logits (1 for a binary mask)")
PAD_MODE = Option(
    "reflect",
    choice(*PAD_MODES),
    help="how inputs whose sides are not multiples of the network's are padded: mirrored or with zeros",
)


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side of an image so that both sides become a multiple of some number.

    The padding is split between the two sides (``top`` gets the smaller half), which keeps the
    object centred in the padded canvas the network sees.
    """

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def to_multiple(cls, height: int, width: int, multiple: int) -> Padding:
        extra_rows = -height % multiple
        extra_cols = -width % multiple
        return cls(
            extra_rows // 2, extra_rows - extra_rows // 2, extra_cols // 2, extra_cols - extra_cols // 2
        )

    @property
    def is_empty(self) -> bool:
        return not (self.top or self.bottom or self.left or self.right)

    def apply(self, images: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
        """Pad an ``(N, C, H, W)`` batch. ``mode`` is ``"reflect"`` (mirror the image, no border
        artefacts) or ``"zeros"``. Reflection needs each pad to be smaller than the side it mirrors;
        images too small for that (a few pixels wide) are padded by repeating their edge pixels."""
        if self.is_empty:
            return images
        pads = (self.left, self.right, self.top, self.bottom)
        if mode == "zeros":
            return F.pad(images, pads, mode="constant", value=0.0)
        height, width = images.shape[-2:]
        if max(self.top, self.bottom) < height and max(self.left, self.right) < width:
            return F.pad(images, pads, mode="reflect")
        return F.pad(images, pads, mode="replicate")

    def remove(self, outputs: torch.Tensor) -> torch.Tensor:
        """Crop what ``apply`` added from an ``(N, C, H', W')`` output of the padded size."""
        if self.is_empty:
            return outputs
        height, width = outputs.shape[-2:]
        return outputs[..., self.top : height - self.bottom, self.left : width - self.right]


class AnySizeModel(nn.Module):
    """Base class for a segmentation network that only works on sizes divisible by ``size_multiple``.

    Subclasses implement ``forward_padded(images)`` for inputs whose H and W are multiples of
    ``size_multiple``; ``forward`` accepts any H and W, checks the input, pads, and crops the logits
    back to the input size.
    """

    def __init__(self, in_channels: int, out_channels: int, size_multiple: int, pad_mode: str = "reflect"):
        super().__init__()
        parse_component_options("model", type(self).__name__, {"pad_mode": pad_mode}, {"pad_mode": PAD_MODE})
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = size_multiple
        self.pad_mode = pad_mode

    def forward_padded(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward_padded(images)")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_input(images, self.in_channels, type(self).__name__)
        padding = Padding.to_multiple(images.shape[-2], images.shape[-1], self.size_multiple)
        logits = self.forward_padded(padding.apply(images, self.pad_mode))
        return padding.remove(logits)


class PadToMultiple(AnySizeModel):
    """Wrap a network that needs sizes divisible by ``size_multiple`` so that it takes any size.

    The wrapped network is the ``network`` submodule, so its state_dict keys gain a ``network.``
    prefix.
    """

    def __init__(
        self,
        network: nn.Module,
        in_channels: int,
        out_channels: int,
        size_multiple: int,
        pad_mode: str = "reflect",
    ):
        super().__init__(in_channels, out_channels, size_multiple, pad_mode)
        self.network = network

    def forward_padded(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)


def check_input(images: Any, in_channels: int, model_name: str) -> None:
    """Refuse, with a ``UsageError``, anything but a floating ``(N, in_channels, H, W)`` tensor."""
    if not isinstance(images, torch.Tensor):
        raise UsageError(f"{model_name} expects a torch.Tensor of images, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != in_channels:
        raise UsageError(
            f"{model_name} expects images shaped (N, {in_channels}, H, W), got {tuple(images.shape)}; "
            f"build the model with in_channels={images.shape[1] if images.dim() == 4 else '...'} "
            f"to match the data"
        )
    if not images.is_floating_point():
        raise UsageError(f"{model_name} expects floating-point images, got dtype {images.dtype}")


# -- size and cost ----------------------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (weights and biases; BatchNorm running statistics are buffers and
    do not count). With ``trainable_only``, only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _as_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    size: tuple[int, ...]
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size = (image_size, image_size)
    else:
        size = tuple(cast("Iterable[int]", image_size))  # a bool lands here too and fails, as before
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise UsageError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return cast("tuple[int, int]", size)  # length 2 checked above


def count_flops(model: nn.Module, in_channels: int, image_size: int | tuple[int, int] = (256, 256)) -> int:
    """Floating-point operations of one forward pass on one ``in_channels x H x W`` image.

    Measured by running the model under ``torch.utils.flop_counter.FlopCounterMode``, which counts
    convolutions, transposed convolutions and matrix products at 2 FLOPs per multiply-add
    (normalisations, activations and pooling are not counted). The model runs in eval mode without
    gradients, on the device of its parameters: a model built on the ``meta`` device is measured
    without computing anything.
    """
    height, width = _as_size(image_size)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    from torch.utils.flop_counter import FlopCounterMode  # imports triton where installed: slow

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, height, width, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def describe_model(
    name: str,
    image_size: int | tuple[int, int] = 256,
    in_channels: int = 3,
    out_channels: int = 1,
    **options: Any,
) -> dict[str, Any]:
    """Size and cost of the registered model ``name`` built with ``options``.

    Returns ``name``, ``distribution``, ``version``, ``parameters`` (count), ``flops`` and ``gflops``
    (per image of ``image_size``, see ``count_flops``), ``image_size`` as ``[H, W]``, ``in_channels``
    and ``out_channels``. The model is built on the ``meta`` device when its factory allows it, so
    describing a 30M-parameter network allocates no weights.
    """

    height, width = _as_size(image_size)
    component = get_component("model", name)

    def build() -> nn.Module:
        return component.factory(in_channels=in_channels, out_channels=out_channels, **options)

    try:
        with torch.device("meta"):
            model = build()
        flops = count_flops(model, in_channels, (height, width))
    except UsageError:
        raise
    except Exception:  # noqa: BLE001 - a plugin model that cannot run on "meta" is measured on the CPU
        model = build()
        flops = count_flops(model, in_channels, (height, width))
    return {
        "name": name,
        "distribution": component.distribution,
        "version": component.version,
        "parameters": count_parameters(model),
        "flops": flops,
        "gflops": flops / 1e9,
        "image_size": [height, width],
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
