"""What a model can be asked to predict: image files, folders and glob patterns (``segkit predict``'s
inputs), and, from Python, PIL images and numpy arrays. Each becomes an RGB PIL image here, once."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segkit.data.imageio import read_image
from segkit.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

#: One photo as ``TrainedModel.predict`` takes it.
ImageLike = Any  # str | os.PathLike | PIL.Image.Image | numpy.ndarray


def folder_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collect_inputs(inputs: tuple[str, ...] | list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in the order given, without repeats."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = folder_images(path)
            if not images and (path / "images").is_dir():
                raise UsageError(
                    f"{item} holds no images but an images/ folder: a dataset root? give {path / 'images'}"
                )
            found.extend(images)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise UsageError(f"no file matches {str(item)!r}")
            found.extend(matches)
        else:
            raise UsageError(f"input {item} does not exist")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise UsageError("no input images found in " + ", ".join(map(str, inputs)))
    return unique


def is_path(image: Any) -> bool:
    return isinstance(image, (str, os.PathLike))


def as_rgb_image(image: ImageLike) -> Any:
    """One photo as an RGB PIL image: an image file (read as ``segkit predict`` reads it: a photo with
    more bands than RGB, or a GeoTIFF, is a ``segkit.data.geotiff.Raster`` read on demand), a PIL image
    (converted to RGB), or a numpy array ``(H, W, 3)``, ``(H, W, 4)`` (alpha dropped) or ``(H, W)``
    (grey), of uint8 values 0-255 or floats 0-1. Anything else is a one-line ``UsageError``."""
    if is_path(image):
        path = Path(image)
        if path.is_dir():
            raise UsageError(f"{path} is a folder, not an image")
        if not path.is_file():
            raise UsageError(f"image {path} does not exist")
        return read_image(path)
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        return _array_to_image(image)
    hint = ""
    if type(image).__module__.startswith("torch"):
        hint = " (a tensor (C, H, W): pass tensor.permute(1, 2, 0).cpu().numpy(), values 0-255 or 0-1)"
    raise UsageError(
        f"cannot predict a {type(image).__name__}: give an image path, a folder, a PIL image, a numpy "
        f"array (H, W, C) or a list of these{hint}"
    )


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        channels_first = array.ndim == 3 and array.shape[0] in (1, 3, 4)
        raise UsageError(
            f"a numpy image must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got shape {array.shape}"
            + (" (channels first? use array.transpose(1, 2, 0))" if channels_first else "")
        )
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.bool_:
        pixels = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UsageError(
                f"a float numpy image must hold values from 0 to 1 (found {np.nanmin(array):g} to "
                f"{np.nanmax(array):g}); for 0-255 values use array.astype(numpy.uint8)"
            )
        pixels = np.rint(array * 255).astype(np.uint8)
    else:
        raise UsageError(
            f"a numpy image must be uint8 (0-255) or float (0-1), got {array.dtype}; "
            "for 16-bit photos pass the file's path, which segkit reads as segkit predict does"
        )
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return image if image.mode == "RGB" else image.convert("RGB")
