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
so "background" is their true label, and every loss can use them, ignore-aware or not. A crop larger
than the photo (``--crop-size``, ``segkit.data.sampling.random_crop``) is different: its padding, a band
beyond the photo that may be most of the crop, is ignored for every task (as torchvision's
segmentation reference pads masks with 255), so it never teaches "background".

The three kinds of task (``TASKS``) differ only in what the mask holds; pipelines see the same
``uint8`` ``tv_tensors.Mask`` and need not know which (geometric transforms move every mask channel
with nearest-neighbour sampling, colour transforms never touch masks):

- ``"binary"``: ``(1, H, W)`` as above.
- ``"multiclass"``: ``(1, H, W)`` class ids ``0..K-1`` and ``IGNORE_INDEX``, carried through the
  pipeline **shifted by one** (``encode_class_ids``: id ``i`` as ``i + 1``, ignore as 0) and shifted
  back afterwards. A pixel a transform invents gets the mask fill 0 and so comes out as
  ``IGNORE_INDEX``: no class can claim it (a multiclass dataset need not have a background class).
- ``"multilabel"``: ``(K, H, W)``, one binary 0/1/255 channel per label; invented pixels are 0 in
  every channel (no label), as for binary.

Photos of other bands than 8-bit RGB (``segkit.data.geotiff.Raster``: RGB + near infrared, 16-bit
bands) keep their bands: ``SampleTransform`` normalises them with its ``normalization`` (the dataset's
per-band statistics, ``segkit.data.band_stats``) before the pipeline and hands them over as a
``BandImage`` (``band_image_type()``), an image that geometric transforms move as any other, while
colour transforms and the pipeline's final conversion and normalisation leave it as it is: colours mean
nothing to a near-infrared band, and it is normalised already. Pixels a geometric transform invents in
it are 0, the band's mean. A crop of a ``Raster`` reads only its window from the file.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from segkit.components import get_component, list_components

# For plugins (this module is public): the per-band statistics SampleTransform.normalization takes.
from segkit.data.band_stats import band_statistics, check_same_bands  # noqa: F401
from segkit.data.geotiff import Raster
from segkit.data.sampling import IGNORE_INDEX, Sampling, random_crop, rescale
from segkit.errors import DataError, SegkitError, UsageError
from segkit.lazy import lazy_module

#: Per-channel RGB mean and standard deviation of ImageNet, for images scaled to [0, 1]. Models see
#: ``(image - mean) / std``; checkpoints and exported models record these so inference matches.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKGROUND = 0
FOREGROUND = 1
# IGNORE_INDEX (255, defined in segkit.data.sampling, which this module imports): the mask value for
# pixels that count neither as foreground nor as background.
#: Value written into image pixels a geometric transform invents (0 = black, before normalisation).
IMAGE_FILL = 0
#: Label of mask pixels a geometric transform invents: background (see the module docstring).
MASK_FILL = BACKGROUND

#: Smallest ``image_size`` accepted: blur kernels and crops need a few pixels to work with.
MIN_IMAGE_SIZE = 8

# torchvision is imported on first use (segkit.lazy): plugin modules import this one at every start.
tv_tensors = lazy_module("torchvision.tv_tensors")
v2 = lazy_module("torchvision.transforms.v2")


def __getattr__(name: str):
    if name == "FILL":
        return fill_values()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fill_values() -> dict:
    """``FILL``: the value a geometric transform writes into pixels it invents, per tv_tensor type
    (``{tv_tensors.Image: IMAGE_FILL, tv_tensors.Mask: MASK_FILL}``, and 0 for a ``BandImage``: the
    band's mean, as it is normalised already; built when first asked for)."""
    return {tv_tensors.Image: IMAGE_FILL, tv_tensors.Mask: MASK_FILL, band_image_type(): 0}


#: The torchvision functionals a ``BandImage`` passes through unchanged: colour transforms, and the
#: conversion and normalisation every pipeline ends with.
BAND_PASSTHROUGH = (
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "adjust_gamma",
    "adjust_sharpness",
    "autocontrast",
    "equalize",
    "invert",
    "posterize",
    "solarize",
    "rgb_to_grayscale",
    "grayscale_to_rgb",
    "permute_channels",
    "to_dtype",
    "normalize",
)


@functools.cache
def band_image_type() -> type:
    """``BandImage``: a ``tv_tensors.Image`` of bands normalised already (see the module docstring).
    Made, and its pass-through kernels registered with torchvision, when first asked for."""

    from torchvision.tv_tensors import Image as TvImage  # torchvision is imported lazily here too

    class BandImage(TvImage):
        """Normalised bands of a photo that is not 8-bit RGB: moved by geometric transforms, left
        alone by colour transforms and by the pipeline's conversion and normalisation."""

    def unchanged(image: Any, *args: Any, **kwargs: Any) -> Any:
        return image

    for name in BAND_PASSTHROUGH:
        functional = getattr(v2.functional, name, None)
        if functional is not None:
            v2.functional.register_kernel(functional, BandImage)(unchanged)
    return BandImage


#: The kinds of task a dataset can ask for (its ``task`` attribute; "binary" when it has none).
TASKS = ("binary", "multiclass", "multilabel")


def encode_class_ids(labels: torch.Tensor) -> torch.Tensor:
    """``uint8`` class ids (``IGNORE_INDEX`` for ignore) as a pipeline carries them: id + 1, ignore 0."""
    return labels + 1  # uint8 arithmetic wraps: 255 (ignore) becomes 0, the mask fill


def decode_class_ids(encoded: torch.Tensor) -> torch.Tensor:
    """Undo ``encode_class_ids``: 0 (ignore, or a pixel a transform invented) becomes ``IGNORE_INDEX``."""
    return encoded - 1


def to_float_and_normalize() -> list[Any]:
    """Scale the uint8 image to [0, 1] floats and normalise with ImageNet statistics; masks untouched."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
    ]


def resize_and_normalize(image_size: int) -> Any:
    """The evaluation pipeline: resize to ``image_size`` x ``image_size`` (aspect ratio not kept, as
    the models are trained on squares; masks by nearest neighbour) and normalise."""
    return v2.Compose([v2.Resize((image_size, image_size), antialias=True), *to_float_and_normalize()])


def build_sample_transform(
    augment: str, image_size: int, train: bool, sampling: Sampling | None = None
) -> SampleTransform:
    """The transform a dataset applies to each ``(photo, labels)`` pair.

    ``augment`` names a registered augmentation pipeline ("none", "default", "strong", or one a
    plugin adds); it is built with ``builder(image_size=..., train=...)``. With ``train=False``
    pipelines only resize and normalise. If no plugin registers "none" (built-ins disabled), the
    core's ``resize_and_normalize`` stands in for it. Raises ``UsageError`` for an unknown name or a
    bad ``image_size``.

    ``sampling`` (``segkit.data.sampling.Sampling``; default: resize) switches to native resolution: for
    ``Sampling.crops(...)`` the photo is cropped first and the pipeline is built with
    ``builder(image_size=crop size, train=True, crop=True)``, meaning "augment this crop, do not
    resize it"; for ``Sampling.native(...)`` no pipeline runs, the photo is only normalised.
    """
    sampling = sampling or Sampling()
    if sampling.mode == "crop":
        image_size = int(sampling.size)  # type: ignore[arg-type]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not isinstance(augment, str):
        raise UsageError(f"augment must be the name of an augmentation pipeline, got {augment!r}")
    if sampling.mode == "native":
        pipeline = v2.Compose(to_float_and_normalize())
    elif augment == "none" and "none" not in {c.name for c in list_components("augmentation")}:
        pipeline = (
            v2.Compose(to_float_and_normalize())
            if sampling.mode == "crop"
            else resize_and_normalize(image_size)
        )
    else:
        builder = get_component("augmentation", augment).factory
        if sampling.mode == "crop":
            if "crop" not in inspect.signature(builder).parameters:
                raise UsageError(
                    f"augmentation {augment!r} does not take crop=True (its builder cannot augment crops "
                    "without resizing them); use --augment none, default or strong with --crop-size"
                )
            pipeline = builder(image_size=image_size, train=train, crop=True)
        else:
            pipeline = builder(image_size=image_size, train=train)
    return SampleTransform(pipeline, name=augment, image_size=image_size, sampling=sampling)


class SampleTransform:
    """Applies an augmentation pipeline to a photo and its labels and returns model-ready tensors.

    Call it as ``transform(image, labels)`` (binary) or ``transform(image, labels, task=...)`` with an
    RGB ``PIL.Image`` (or a ``uint8`` ``(3, H, W)`` tensor, or a ``segkit.data.geotiff.Raster``) and, by
    task (see the module docstring):

    - ``"binary"``: a ``uint8`` ``(H, W)`` array of ``BACKGROUND`` / ``FOREGROUND`` / ``IGNORE_INDEX``;
      returns ``{"image": float (3, S, S) normalised, "mask": float (1, S, S) in {0, 1},
      "ignore": bool (1, S, S)}`` where ``S`` is ``image_size``.
    - ``"multiclass"``: an integer ``(H, W)`` array of class ids ``0..254`` and ``IGNORE_INDEX``;
      returns ``"mask"`` int64 ``(1, S, S)`` of ids and ``IGNORE_INDEX`` (also where the pipeline
      invented pixels), and ``"ignore"`` bool ``(1, S, S)``, True exactly where the mask is
      ``IGNORE_INDEX``.
    - ``"multilabel"``: a ``uint8`` ``(K, H, W)`` array, each channel 0 / 1 / ``IGNORE_INDEX``;
      returns ``"mask"`` float ``(K, S, S)`` in {0, 1} and ``"ignore"`` bool ``(K, S, S)``.

    ``normalization``: the per-band statistics ``{"mean", "std"}`` of a dataset of band photos
    (``Raster``s that keep their bands), which the dataset sets; None for 8-bit RGB photos (ImageNet's,
    in the pipeline). The image is then ``(C, S, S)``, C the photo's bands.
    """

    def __init__(self, pipeline, name: str, image_size: int, sampling: Sampling | None = None) -> None:
        self.pipeline = pipeline
        self.name = name
        self.image_size = image_size
        self.sampling = sampling or Sampling()
        self.normalization: dict[str, list[float]] | None = None

    def __call__(
        self, image: Image.Image | torch.Tensor, labels: np.ndarray, task: str = "binary"
    ) -> dict[str, torch.Tensor]:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if isinstance(image, Raster):
            pixels = self._raster_pixels(image)
        elif isinstance(image, Image.Image):
            pixels = v2.functional.pil_to_tensor(image)
        else:
            pixels = image
        if self.normalization is not None and not isinstance(image, Raster):
            raise DataError(
                f"an 8-bit RGB photo came among photos of {len(self.normalization['mean'])} bands; "
                "a dataset's photos must all have the same bands"
            )
        label_size = tuple(labels.shape[-2:]) if task == "multilabel" else tuple(labels.shape)
        if tuple(pixels.shape[-2:]) != label_size or (task == "multilabel" and labels.ndim != 3):
            raise ValueError(
                f"image size {tuple(pixels.shape[-2:])} and label size {tuple(labels.shape)} differ"
            )
        if task == "binary":
            mask = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.uint8))[None]
        elif task == "multiclass":
            mask = encode_class_ids(_uint8_labels(labels, "class ids")[None])
        else:
            mask = _uint8_labels(labels, "multilabel labels")
        if not self.sampling.resizes:
            pixels, mask = rescale(pixels, mask, self.sampling.scale)
        if self.sampling.mode == "crop":
            size, fraction = int(self.sampling.size), self.sampling.foreground_fraction  # type: ignore[arg-type]
            pixels, mask = random_crop(pixels, mask, size, fraction, task)
        bands = isinstance(image, Raster) and image.bands
        pixels = self._normalised_bands(pixels) if bands else tv_tensors.Image(pixels)
        with warnings.catch_warnings():
            if bands:  # ToDtype(scale=True) says it leaves a BandImage unscaled: it is normalised already
                warnings.filterwarnings("ignore", "scale was set to True but no dtype", UserWarning)
            result = self.pipeline({"image": pixels, "mask": tv_tensors.Mask(mask)})
        if task == "multiclass":
            return self._checked_class_ids(result, present=_values_present(mask))
        if task == "multilabel":
            return self._checked_labels(result, channels=mask.shape[0])
        return self._checked(result)

    def _raster_pixels(self, raster: Raster) -> Any:
        """The raster itself where a crop at native scale is cut from it (only that window is read),
        else its whole pixels. Its bands are checked against ``normalization``."""
        bands = None if self.normalization is None else len(self.normalization["mean"])
        if raster.bands and bands != raster.channels:
            wanted = "per-band statistics" if bands is None else f"photos of {bands} bands, like the others"
            raise DataError(
                f"image {raster.path} has {raster.channels} bands of {raster.dtype}, but its dataset "
                f"normalises {wanted} (a dataset's photos must all have the same bands)"
            )
        if not raster.bands and bands is not None:
            raise DataError(
                f"image {raster.path} is an 8-bit RGB photo among photos of {bands} bands; a dataset's "
                "photos must all have the same bands"
            )
        size = self.sampling.size or 0
        if (
            self.sampling.mode == "crop"
            and self.sampling.scale == 1.0
            and min(raster.height, raster.width) >= size
        ):
            return raster
        return raster.pixels()

    def _normalised_bands(self, pixels: torch.Tensor) -> Any:
        assert self.normalization is not None
        mean = torch.tensor(self.normalization["mean"], dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.normalization["std"], dtype=torch.float32).view(-1, 1, 1)
        return band_image_type()((pixels - mean) / std)

    def _image_and_mask(self, result, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        where = f"augmentation pipeline {self.name!r}"
        if not isinstance(result, dict) or "image" not in result or "mask" not in result:
            raise SegkitError(f"{where} must return a dict with 'image' and 'mask'")
        image = result["image"].as_subclass(torch.Tensor)
        labels = result["mask"].as_subclass(torch.Tensor)
        if not image.is_floating_point():
            raise SegkitError(
                f"{where} returned a {image.dtype} image; pipelines must end by converting to float and "
                "normalising (see segkit.data.transforms.to_float_and_normalize)"
            )
        if image.shape[-2:] != labels.shape[-2:] or labels.dim() != 3 or labels.shape[0] != channels:
            raise SegkitError(
                f"{where} returned image {tuple(image.shape)} and mask {tuple(labels.shape)}; "
                f"they must be (C, H, W) and ({channels}, H, W) of the same size"
            )
        return image, labels

    def _checked_class_ids(self, result, present: torch.Tensor) -> dict[str, torch.Tensor]:
        image, encoded = self._image_and_mask(result)
        if encoded.dtype != torch.uint8:
            raise SegkitError(
                f"augmentation pipeline {self.name!r} turned the {torch.uint8} mask into {encoded.dtype}; "
                "pipelines must leave the mask's dtype alone"
            )
        # Nearest-neighbour sampling only copies values: anything new is an interpolated (or filled) id.
        # The fill (encoded 0) is ignore, always allowed.
        produced = _values_present(encoded)
        produced[0] = False
        if bool((produced & ~present).any()):
            found = sorted((torch.nonzero(produced & ~present)[:, 0] - 1).tolist())
            raise SegkitError(
                f"augmentation pipeline {self.name!r} produced class ids {found} that the mask did not hold "
                "(interpolate masks with nearest neighbour, and fill invented mask pixels with 0)"
            )
        ids = decode_class_ids(encoded)
        return {"image": image, "mask": ids.long(), "ignore": ids == IGNORE_INDEX}

    def _checked_labels(self, result, channels: int) -> dict[str, torch.Tensor]:
        image, labels = self._image_and_mask(result, channels)
        foreground = labels == FOREGROUND
        ignore = labels == IGNORE_INDEX
        if bool((~foreground & ~ignore & (labels != BACKGROUND)).any()):
            found = sorted(torch.unique(labels).tolist())
            raise SegkitError(
                f"augmentation pipeline {self.name!r} produced mask values {found}; multilabel masks may "
                f"only hold {BACKGROUND}, {FOREGROUND} and {IGNORE_INDEX} (interpolate masks with nearest "
                "neighbour)"
            )
        return {"image": image, "mask": foreground.float(), "ignore": ignore}

    def _checked(self, result) -> dict[str, torch.Tensor]:
        where = f"augmentation pipeline {self.name!r}"
        image, labels = self._image_and_mask(result)
        foreground = labels == FOREGROUND
        ignore = labels == IGNORE_INDEX
        if bool((~foreground & ~ignore & (labels != BACKGROUND)).any()):
            found = sorted(torch.unique(labels).tolist())
            raise SegkitError(
                f"{where} produced mask values {found}; masks may only hold {BACKGROUND}, {FOREGROUND} and "
                f"{IGNORE_INDEX} (interpolate masks with nearest neighbour)"
            )
        return {"image": image, "mask": foreground.float(), "ignore": ignore}


def _uint8_labels(labels: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """Integer ``labels`` (any integer dtype, values 0..255) as a new contiguous ``uint8`` tensor."""
    values = np.asarray(labels)
    if values.dtype.kind not in "iu":
        raise ValueError(f"{what} must be an integer array, got {values.dtype}")
    if values.dtype != np.uint8 and values.size and (values.min() < 0 or values.max() > IGNORE_INDEX):
        raise ValueError(f"{what} must lie in 0..{IGNORE_INDEX}, got {values.min()}..{values.max()}")
    return torch.from_numpy(values.astype(np.uint8))  # a copy, C-contiguous


def _values_present(mask: torch.Tensor) -> torch.Tensor:
    """A bool ``(256,)`` table of the values a ``uint8`` mask holds."""
    return torch.bincount(mask.flatten().to(torch.int64), minlength=256) > 0


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo ImageNet normalisation: a float image in about [0, 1], e.g. for overlays and plots."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return image * std + mean
