"""How a photo becomes training samples: resized whole (the default), or cropped at native resolution.

``Sampling`` is what the engine hands a dataset (its ``sampling`` option) and the dataset hands
``segkit.data.transforms.build_sample_transform``:

- ``Sampling()`` (mode ``"resize"``): today's path; the augmentation pipeline resizes the photo to
  ``image_size`` x ``image_size``.
- ``Sampling.crops(size, scale, foreground_fraction)`` (mode ``"crop"``, for training): the photo is
  first rescaled by ``scale`` (1: native resolution), then a random ``size`` x ``size`` crop is cut
  (padded at the bottom and right where the photo is smaller: black pixels whose labels are ignored,
  for every task, so losses never count them; see ``padding_label``), centred with probability
  ``foreground_fraction`` on a foreground pixel, as nnU-Net oversamples foreground. The pipeline
  then augments the crop without resizing it (it is built with ``crop=True``).
- ``Sampling.native(scale)`` (mode ``"native"``, for validation and evaluation): the whole photo,
  rescaled by ``scale``, normalised, never resized to a square. Photos differ in size, so loaders
  batch them one at a time and models see them through tiles (``segkit.inference.tiling``).

Foreground for the crop centre: binary, the foreground pixels; multilabel, pixels of any label;
multiclass, a class chosen uniformly among those the crop's photo holds (the ignore value aside),
then one of its pixels, so small and rare classes (poles, signs) are seen as often as large ones.
Randomness comes from torch's generator, which the engine seeds per epoch and per loader worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segkit.lazy import lazy_module

v2 = lazy_module("torchvision.transforms.v2")  # imported on first use: plugins import this at startup

MODES = ("resize", "crop", "native")
#: Mask value for pixels that count neither as foreground nor as background (segkit.data.transforms, which
#: imports this module, names it too).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Sampling:
    mode: str = "resize"
    size: int | None = None
    scale: float = 1.0
    foreground_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "crop" and (not isinstance(self.size, int) or self.size < 8):
            raise ValueError(f"a crop size must be an integer >= 8, got {self.size!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale!r}")
        if not 0 <= self.foreground_fraction <= 1:
            raise ValueError(f"foreground_fraction must lie in [0, 1], got {self.foreground_fraction!r}")

    @classmethod
    def crops(cls, size: int, scale: float = 1.0, foreground_fraction: float = 0.33) -> Sampling:
        return cls("crop", size, scale, foreground_fraction)

    @classmethod
    def native(cls, scale: float = 1.0) -> Sampling:
        return cls("native", None, scale)

    @property
    def resizes(self) -> bool:
        return self.mode == "resize"


def rescale(pixels: torch.Tensor, mask: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Both rescaled by ``scale`` (the photo bilinearly with antialiasing, the mask by nearest)."""
    if scale == 1.0:
        return pixels, mask
    height, width = pixels.shape[-2:]
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    pixels = v2.functional.resize(pixels, size, antialias=True)
    mask = v2.functional.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
    return pixels, mask


def padding_label(task: str) -> int:
    """The mask value of pixels a crop pads beyond the photo: ignore, for every task (multiclass masks
    are carried shifted by one, so ignore is 0 there). Padding is no evidence of background: counted
    as background, a 128 crop of a 40x56 photo would be 86% "background" the photo never showed."""
    return 0 if task == "multiclass" else IGNORE_INDEX


def foreground_pixels(mask: torch.Tensor, task: str) -> torch.Tensor:
    """``(n, 2)`` row, column of the pixels a crop may centre on (see the module docstring); ``mask``
    is the uint8 mask as pipelines carry it (multiclass ids shifted by one, 0 = ignore)."""
    if task == "multiclass":
        present = [value for value in torch.unique(mask).tolist() if value != 0]
        if not present:
            return torch.zeros(0, 2, dtype=torch.int64)
        chosen = present[int(torch.randint(len(present), ()))]
        return torch.nonzero(mask[0] == chosen)
    return torch.nonzero((mask == 1).any(dim=0))


def random_crop(
    pixels: torch.Tensor, mask: torch.Tensor, size: int, foreground_fraction: float, task: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``size`` x ``size`` crop of both (see the module docstring)."""
    height, width = pixels.shape[-2:]
    if height < size or width < size:  # pad at the bottom and right: black photo, ignored labels
        pad = [0, 0, max(0, size - width), max(0, size - height)]
        pixels = v2.functional.pad(pixels, pad, fill=0)
        mask = v2.functional.pad(mask, pad, fill=padding_label(task))
        height, width = pixels.shape[-2:]
    top = int(torch.randint(height - size + 1, ()))
    left = int(torch.randint(width - size + 1, ()))
    if foreground_fraction > 0 and float(torch.rand(())) < foreground_fraction:
        candidates = foreground_pixels(mask, task)
        if len(candidates):
            row, column = candidates[int(torch.randint(len(candidates), ()))].tolist()
            top = min(max(row - size // 2, 0), height - size)
            left = min(max(column - size // 2, 0), width - size)
    return pixels[..., top : top + size, left : left + size], mask[..., top : top + size, left : left + size]
