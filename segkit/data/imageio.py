"""Reading photos and label masks from disk, robustly.

Real data is messy: a GIF or PNG saved under a ``.jpg`` name, CMYK or 16-bit photos, palette masks,
EXIF-rotated phone pictures, truncated downloads. Everything here decodes by content (Pillow sniffs
the format), never by extension, and turns every failure into a ``segkit.errors.DataError`` naming
the file and the problem.

- ``read_image(path)``: an RGB ``PIL.Image``, EXIF orientation applied; a TIFF of other bands than
  8-bit RGB (near infrared, 16-bit bands) or an RGB GeoTIFF is a ``segkit.data.geotiff.Raster``
  instead, read window by window, which keeps its bands.
- ``read_mask(path)``: the raw label array (``uint8`` or ``uint16`` numpy), palette indices not colours.
- ``check_image_file(path)``: a cheap validity check for dataset construction, returning ``(H, W)``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segkit.data.geotiff import Raster, TiffFacts, open_raster, tiff_facts
from segkit.errors import DataError

#: Largest image (width x height, in pixels) segkit decodes. Bigger files are refused before any
#: pixel data is decompressed, so a decompression bomb or a 10000x10000 scan fails cleanly instead
#: of exhausting memory. 50 megapixels is about 150 MB as RGB bytes, and well above any photo a
#: segmentation dataset needs. Change it (``segkit.data.imageio.MAX_IMAGE_PIXELS = ...``) if you must.
MAX_IMAGE_PIXELS = 50_000_000

#: Pillow modes of 16-bit greyscale images (``read_mask`` gives them as uint16).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_OR_PALETTE_MODES = ("RGBA", "RGBa", "LA", "La", "PA", "P")
# EXIF orientation values 5-8 rotate by 90 or 270 degrees, so the displayed image has width and
# height swapped relative to what the file header says.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION_TAG = 0x0112
# A JPEG ends with the EOI marker; a few writers append padding or metadata after it, so the marker
# is looked for in the file's tail rather than in its last two bytes.
_JPEG_TAIL_BYTES = 4096


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, photos up to ``max_pixels`` pixels are decoded (``None``: the default
    ``MAX_IMAGE_PIXELS``); for predict and evaluate's ``--max-pixels`` on very large photos."""
    global MAX_IMAGE_PIXELS
    if max_pixels is None:
        yield
        return
    saved, saved_pillow = MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS
    MAX_IMAGE_PIXELS = int(max_pixels)
    if saved_pillow is not None:  # Pillow's own decompression-bomb guard, raised alike
        Image.MAX_IMAGE_PIXELS = max(saved_pillow, int(max_pixels))
    try:
        yield
    finally:
        MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS = saved, saved_pillow


def read_image(path: str | os.PathLike) -> Image.Image | Raster:
    """Decode the photo at ``path`` as an RGB image, whatever its format, mode or file extension.

    A TIFF whose bands are not an 8-bit RGB picture (4 bands of RGB + near infrared, 16-bit bands), and
    an 8-bit RGB or grey GeoTIFF, is a ``segkit.data.geotiff.Raster`` instead: nothing is decoded until
    a window (a training crop, a band of rows) or the whole photo is asked for, and a band photo keeps
    its bands (see ``segkit.data.geotiff``).

    EXIF orientation is applied, so the result looks as a photo viewer shows it. Conversions:
    greyscale and 1-bit are replicated to three channels; 16-bit greyscale (``I;16``, ``I``) is
    scaled from 0..65535 to 0..255 (not clipped, which would turn most of the picture white);
    palette images use their colours; the alpha channel of RGBA, LA and transparent palette images
    is dropped, keeping the stored colours (as torchvision's decoders do); CMYK and YCbCr use
    Pillow's conversion. Raises ``DataError`` naming the file if it is missing, empty, not an image,
    truncated, larger than ``MAX_IMAGE_PIXELS``, or in a colour mode that cannot be made RGB.
    """
    path = Path(path)
    facts = _raster_facts(path, "image")
    if facts is not None:
        raster = open_raster(path, facts)
        if raster is not None:
            return raster
    with _opened(path, "image") as image:
        image = _decoded(image, path, "image")
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        return _sixteen_bit_to_rgb(image, path)
    try:
        if image.mode in _ALPHA_OR_PALETTE_MODES:
            # Going through RGBA first resolves palette transparency the way Pillow recommends.
            return image.convert("RGBA").convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise DataError(
            f"image {path} has colour mode {image.mode!r}, which cannot be converted to RGB: {error}"
        ) from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode the label mask at ``path`` as a 2-D ``uint8`` or ``uint16`` array of raw label values.

    8-bit greyscale gives its values, palette PNGs give their palette **indices** (not colours),
    16-bit PNGs give ``uint16`` values, 1-bit images give 0/1. A greyscale mask with an alpha band
    uses the grey band; an RGB mask is accepted only if it is grey (all channels equal). EXIF
    orientation is applied, as for ``read_image``, so a mask tagged like its photo stays aligned.
    Raises ``DataError`` naming the file for anything else.
    """
    path = Path(path)
    with _opened(path, "mask") as image:
        image = _decoded(image, path, "mask")
    mode = image.mode
    if mode in ("L", "P"):
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image).astype(np.uint8)
    if mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
            raise DataError(
                f"mask {path} holds 32-bit values from {values.min()} to {values.max()}; "
                "label masks must fit in 8 or 16 bits"
            )
        return values.astype(np.uint16)
    if mode in ("LA", "La", "PA"):
        return np.asarray(image.getchannel(0), dtype=np.uint8).copy()
    if mode in ("RGB", "RGBA", "RGBa"):
        channels = np.asarray(image)[..., :3]
        if np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(
            channels[..., 0], channels[..., 2]
        ):
            return channels[..., 0].copy()
        raise DataError(
            f"mask {path} is a colour ({mode}) image; save label masks as 8-bit greyscale or palette PNG "
            "(colours are ambiguous as labels)"
        )
    raise DataError(
        f"mask {path} has image mode {mode!r}, which is not a label mask (use 8-bit or palette PNG)"
    )


def check_image_file(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """Check cheaply that ``path`` is a complete, decodable image and return its ``(height, width)``.

    The size is the displayed size (after EXIF orientation). Used when a dataset is constructed, so
    bad files are found before training starts rather than inside a DataLoader worker. What is
    checked without decoding pixels: the file exists and is not empty, its header names a known
    format, it is within ``MAX_IMAGE_PIXELS``; PNGs have intact chunks up to the end (CRCs checked)
    and JPEGs end with their end-of-image marker (a JPEG without it is decoded fully to be sure).
    Other formats (GIF, WebP, TIFF, ...) are rare in datasets and decoded fully. ``what`` names the
    file's role in error messages ("image", "mask", "trimap"). Raises ``DataError``.
    """
    height, width, _ = image_file_facts(path, what)
    return height, width


def image_file_facts(path: str | os.PathLike, what: str = "image") -> tuple[int, int, str]:
    """``check_image_file``, also returning the file's colour mode: ``(height, width, mode)``."""
    path = Path(path)
    facts = _raster_facts(path, what)
    if facts is not None and (facts.bands or open_raster(path, facts) is not None):
        mode = f"{facts.samples} bands of {facts.dtype}" if facts.bands else "RGB"
        return facts.height, facts.width, mode
    with _opened(path, what) as image:
        image_format = image.format
        if image_format == "PNG":
            # verify() must run straight after open and leaves the image unusable: reopen below.
            _verify_png(image, path, what)
    with _opened(path, what) as image:
        width, height = image.size
        mode = image.mode
        if _orientation(image, path, what) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        if image_format not in ("PNG", "JPEG") or (image_format == "JPEG" and not _jpeg_has_end_marker(path)):
            _decoded(image, path, what)
    return height, width, mode


def _raster_facts(path: Path, what: str) -> TiffFacts | None:
    """The header facts of a photo that may be read as a ``Raster`` (a band photo, or an RGB GeoTIFF
    when rasterio is installed), checked from the header alone: a huge GeoTIFF is not decoded to be
    checked, and a segment that does not decode is named when it is read. None for any other file
    (Pillow's path). A band photo's check does not need rasterio, so it stays valid once installed."""
    if what != "image" or not path.is_file():
        return None
    facts = tiff_facts(path)
    if facts is None or not facts.raster:
        return None
    _check_pixel_limit(path, what, facts.width, facts.height)
    if facts.truncated:
        raise DataError(f"{what} file {path} is truncated: its pixel data runs past the end of the file")
    return facts


def _check_pixel_limit(path: Path, what: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{what} {path} is {width}x{height} = {width * height:,} pixels, more than "
            f"segkit.data.imageio.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,}; refusing to decode it "
            "(downscale the file, or raise the limit if you trust it)"
        )


@contextmanager
def _opened(path: Path, what: str) -> Iterator[Image.Image]:
    """Open (header only) with errors turned into DataError and the pixel limit enforced."""
    if not path.exists():
        if path.is_symlink():
            raise DataError(f"{what} file {path} is a broken symbolic link to {os.readlink(path)}")
        raise DataError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise DataError(f"{what} path {path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} file {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning fires at 89 Mpx; segkit's limit below is stricter and clearer.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise DataError(
            f"{what} {path} is too large to decode safely (limit segkit.data.imageio.MAX_IMAGE_PIXELS = "
            f"{MAX_IMAGE_PIXELS:,} pixels): {error}"
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{what} file {path} is not an image (unknown or unsupported file format)") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure on untrusted bytes is a data error
        raise DataError(f"cannot read {what} file {path}: {_reason(error)}") from None
    with image:
        width, height = image.size
        _check_pixel_limit(path, what, width, height)
        yield image


def _decoded(image: Image.Image, path: Path, what: str) -> Image.Image:
    """Decode pixel data (first frame) and apply EXIF orientation, with errors named by file."""
    try:
        image.load()
        # In place: without, Pillow returns a copy even when there is nothing to turn (a second 256 MB
        # for an 8000 x 8000 RGB photo, which Pillow holds at 4 bytes a pixel).
        ImageOps.exif_transpose(image, in_place=True)
        return image
    except Exception as error:  # noqa: BLE001 - truncated data raises OSError, broken headers others
        raise DataError(f"cannot decode {what} file {path}: {_reason(error)}") from None


def _orientation(image: Image.Image, path: Path, what: str) -> int | None:
    """The EXIF orientation tag, read from the header without decoding pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixel data.
        return None
    try:
        return image.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception as error:  # noqa: BLE001 - malformed EXIF blocks raise all sorts
        raise DataError(f"cannot read the EXIF data of {what} file {path}: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if "truncated" in reason.lower():
        return f"the file is truncated ({reason})"
    return reason


def _verify_png(image: Image.Image, path: Path, what: str) -> None:
    try:
        image.verify()
    except Exception as error:  # noqa: BLE001 - verify raises SyntaxError, OSError, EOFError, ...
        raise DataError(f"{what} file {path} is a broken or truncated PNG: {_reason(error)}") from None


def _jpeg_has_end_marker(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _JPEG_TAIL_BYTES))
        return b"\xff\xd9" in handle.read()


def _sixteen_bit_to_rgb(image: Image.Image, path: Path) -> Image.Image:
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(
            f"image {path} holds 32-bit values from {values.min()} to {values.max()}; "
            "only 8- and 16-bit greyscale can be converted to RGB"
        )
    # Round to nearest: 65535 -> 255, 0 -> 0, and the scale is exactly linear.
    eight_bit = ((values * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")


def shown_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(height, width)`` of a photo as shown (EXIF turns applied), read from its header only; None
    when it cannot be read (a dataset's file checks then say why). For annotation formats that
    record each photo's size, to compare before rendering."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(_EXIF_ORIENTATION_TAG) in _SWAPPING_ORIENTATIONS
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return (width, height) if turned else (height, width)
