"""Built-in augmentation pipelines "none", "default" and "strong" (torchvision transforms v2).

Each builder takes ``image_size`` and ``train`` and returns a transform over
``{"image": tv_tensors.Image, "mask": tv_tensors.Mask}``; with ``train=False`` every pipeline only
resizes and normalises, so validation and test numbers never depend on the augmentation chosen.
Invented pixels (rotation corners, shifts) are black in the image and get the mask fill 0: background
for binary and multilabel masks, ignore for multiclass masks (which pipelines carry as id + 1); see
``segkit.data.transforms``. Masks of every task are ``uint8`` ``tv_tensors.Mask`` (one channel, or one per
label): geometric transforms sample them by nearest neighbour, colour transforms leave them alone.
"""

from __future__ import annotations

import segkit
from segkit.data.transforms import fill_values, resize_and_normalize, to_float_and_normalize
from segkit.lazy import lazy_module

v2 = lazy_module("torchvision.transforms.v2")  # imported when a pipeline is built, not at startup


def build_none(image_size: int, train: bool, crop: bool = False) -> v2.Compose:
    """Resize to image_size x image_size and normalise (ImageNet statistics); no augmentation. On a
    crop (``crop=True``: the sample is already image_size x image_size at native resolution) it only
    normalises."""
    return v2.Compose(to_float_and_normalize()) if crop else resize_and_normalize(image_size)


def build_default(image_size: int, train: bool, crop: bool = False) -> v2.Compose:
    """The seed report's augmentation: flip, random resized crop, small affine, colour jitter. On a
    crop at native resolution (``crop=True``) the resized crop is left out: the scale stays native."""
    if not train:
        return v2.Compose(to_float_and_normalize()) if crop else resize_and_normalize(image_size)
    resize = (
        []
        if crop
        else [
            # Crops keep at least half the photo, so the pet is rarely cut away entirely.
            v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)
        ]
    )
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(p=0.5),
            *resize,
            # Shift up to 10% of the size, scale by 0.9-1.1, rotate up to 15 degrees either way.
            v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=fill_values()),
            # No hue jitter here: its HSV round trip costs three times the rest of the colour step
            # (about 17 ms per 256x256 image on one CPU core); "strong" has it.
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            *to_float_and_normalize(),
        ]
    )


def build_strong(image_size: int, train: bool, crop: bool = False) -> v2.Compose:
    """Heavier augmentation for small datasets: larger crops, rotations and jitter, plus occasional
    vertical flips, greyscale and blur. On a crop at native resolution (``crop=True``) the resized
    crop is left out."""
    if not train:
        return v2.Compose(to_float_and_normalize()) if crop else resize_and_normalize(image_size)
    resize = (
        []
        if crop
        else [v2.RandomResizedCrop(image_size, scale=(0.3, 1.0), ratio=(2 / 3, 3 / 2), antialias=True)]
    )
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomVerticalFlip(p=0.2),
            *resize,
            # Shift up to 15%, scale 0.8-1.25, rotate up to 30 degrees, shear up to 10 degrees.
            v2.RandomAffine(
                degrees=30, translate=(0.15, 0.15), scale=(0.8, 1.25), shear=10, fill=fill_values()
            ),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
            v2.RandomGrayscale(p=0.1),
            # Kernel 5 covers sigma up to about 1.5 px at 256 px, enough to imitate focus blur.
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.3),
            *to_float_and_normalize(),
        ]
    )


@segkit.hookimpl
def register_augmentations(register):
    register("none", build_none, description="resize to image_size and normalise (ImageNet); no augmentation")
    register(
        "default",
        build_default,
        description="flip, RandomResizedCrop(0.5-1), affine (15 deg, 10% shift, x0.9-1.1), colour jitter",
    )
    register(
        "strong",
        build_strong,
        description="default made stronger (crop 0.3-1, 30 deg, shear) plus vertical flip, greyscale, blur",
    )
