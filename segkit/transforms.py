"""From a decoded photo and its label mask to the tensors a model trains on.

Augmentation pipelines are plugins (hook ``register_augmentations``; built-ins "none", "default" and
"strong" live in ``segkit_builtin.augmentations``). They are torchvision transforms v2 applied to a
dict ``{"image": tv_tensors.Image, "mask": tv_tensors.Mask}``, so geometric transforms move image and
mask together (masks always with nearest-neighbour interpolation) and colour transforms touch only
the image. ``build_sample_transform`` looks a pipeline up by name and wraps it with the checks and
conversions every dataset needs.

Labels inside a pipeline: the mask is ``uint8`` ``(1, H, W)`` holding ``BACKGROUND`` (0),
``FOREGROUND`` (1) and ``IGNORE_INDEX`` (255, pixels that must not count, e.g. the Oxford-IIIT Pet
trimap border). Pixels a transform invents (rotation corners, shifted-in borders, padding) get
``IMAGE_FILL`` in the image (black) and ``MASK_FILL`` (background) in the mask: they show no object,
so "background" is their true label, and every loss can use them, ignore-aware or not.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit.errors import SegkitError, UsageError

#: Per-channel RGB mean and standard deviation of ImageNet, for images scaled to [0, 1]. Models see
#: ``(image - mean) / std``; checkpoints and exported models record these so inference matches.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKGROUND = 0
FOREGROUND = 1
#: Mask value for pixels that count neither as foreground nor as background.
IGNORE_INDEX = 255
#: Value written into image pixels a geometric transform invents (0 = black, before normalisation).
IMAGE_FILL = 0
#: Label of mask pixels a geometric transform invents: background (see the module docstring).
MASK_FILL = BACKGROUND

#: Smallest ``image_size`` accepted: blur kernels and crops need a few pixels to work with.
MIN_IMAGE_SIZE = 8

FILL = {tv_tensors.Image: IMAGE_FILL, tv_tensors.Mask: MASK_FILL}


def to_float_and_normalize() -> list[v2.Transform]:
    """Scale the uint8 image to [0, 1] floats and normalise with ImageNet statistics; masks untouched."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
    ]


def resize_and_normalize(image_size: int) -> v2.Compose:
    """The evaluation pipeline: resize to ``image_size`` x ``image_size`` (aspect ratio not kept, as
    the models are trained on squares; masks by nearest neighbour) and normalise."""
    return v2.Compose([v2.Resize((image_size, image_size), antialias=True), *to_float_and_normalize()])


def build_sample_transform(augment: str, image_size: int, train: bool) -> SampleTransform:
    """The transform a dataset applies to each ``(photo, labels)`` pair.

    ``augment`` names a registered augmentation pipeline ("none", "default", "strong", or one a
    plugin adds); it is built with ``builder(image_size=..., train=...)``. With ``train=False``
    pipelines only resize and normalise. If no plugin registers "none" (built-ins disabled), the
    core's ``resize_and_normalize`` stands in for it. Raises ``UsageError`` for an unknown name or a
    bad ``image_size``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not isinstance(augment, str):
        raise UsageError(f"augment must be the name of an augmentation pipeline, got {augment!r}")
    from segkit.api import get_component
    from segkit.plugins import get_host

    if augment == "none" and "none" not in get_host().registry("augmentation"):
        pipeline = resize_and_normalize(image_size)
    else:
        pipeline = get_component("augmentation", augment).factory(image_size=image_size, train=train)
    return SampleTransform(pipeline, name=augment, image_size=image_size)


class SampleTransform:
    """Applies an augmentation pipeline to a photo and its labels and returns model-ready tensors.

    Call it as ``transform(image, labels)`` with an RGB ``PIL.Image`` (or a ``uint8`` ``(3, H, W)``
    tensor) and a ``uint8`` ``(H, W)`` array of ``BACKGROUND`` / ``FOREGROUND`` / ``IGNORE_INDEX``.
    It returns ``{"image": float (3, S, S) normalised, "mask": float (1, S, S) in {0, 1},
    "ignore": bool (1, S, S)}`` where ``S`` is ``image_size``.
    """

    def __init__(self, pipeline, name: str, image_size: int) -> None:
        self.pipeline = pipeline
        self.name = name
        self.image_size = image_size

    def __call__(self, image: Image.Image | torch.Tensor, labels: np.ndarray) -> dict[str, torch.Tensor]:
        pixels = v2.functional.pil_to_tensor(image) if isinstance(image, Image.Image) else image
        if tuple(pixels.shape[-2:]) != tuple(labels.shape):
            raise ValueError(
                f"image size {tuple(pixels.shape[-2:])} and label size {tuple(labels.shape)} differ"
            )
        sample = {
            "image": tv_tensors.Image(pixels),
            "mask": tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(labels, dtype=np.uint8))[None]),
        }
        result = self.pipeline(sample)
        return self._checked(result)

    def _checked(self, result) -> dict[str, torch.Tensor]:
        where = f"augmentation pipeline {self.name!r}"
        if not isinstance(result, dict) or "image" not in result or "mask" not in result:
            raise SegkitError(f"{where} must return a dict with 'image' and 'mask'")
        image = result["image"].as_subclass(torch.Tensor)
        labels = result["mask"].as_subclass(torch.Tensor)
        if not image.is_floating_point():
            raise SegkitError(
                f"{where} returned a {image.dtype} image; pipelines must end by converting to float and "
                "normalising (see segkit.transforms.to_float_and_normalize)"
            )
        if image.shape[-2:] != labels.shape[-2:] or labels.dim() != 3 or labels.shape[0] != 1:
            raise SegkitError(
                f"{where} returned image {tuple(image.shape)} and mask {tuple(labels.shape)}; "
                "they must be (3, H, W) and (1, H, W) of the same size"
            )
        foreground = labels == FOREGROUND
        ignore = labels == IGNORE_INDEX
        if bool((~foreground & ~ignore & (labels != BACKGROUND)).any()):
            found = sorted(torch.unique(labels).tolist())
            raise SegkitError(
                f"{where} produced mask values {found}; masks may only hold {BACKGROUND}, {FOREGROUND} and "
                f"{IGNORE_INDEX} (interpolate masks with nearest neighbour)"
            )
        return {"image": image, "mask": foreground.float(), "ignore": ignore}


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo ImageNet normalisation: a float image in about [0, 1], e.g. for overlays and plots."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return image * std + mean
