"""Rasters: TIFF photos read window by window (GeoTIFFs, and photos of other bands than 8-bit RGB), and
masks written as GeoTIFFs on their photo's grid.

Which TIFFs are rasters (``tiff_facts`` decides from the header, with tifffile):

- **band photos**: several samples that are not an 8-bit RGB picture: 16-bit (or wider, or float)
  samples, more than four samples, or greyscale with extra bands that are not alpha (GDAL's layout for
  RGB + near infrared in 16 bits). They keep their bands: ``Raster.pixels`` gives each band's values
  scaled by the type's range (``SCALES``: 8-bit / 255, 16-bit / 65535, floats as they are), which the
  dataset's per-band statistics (``segkit.data.band_stats``) then normalise. One band, 8-bit RGB (with
  alpha, which is dropped) and everything Pillow converts (palette, CMYK, YCbCr) stay RGB photos as
  before. A fourth 8-bit band that the file marks as alpha (GDAL's default for four bands of 8 bits) is
  alpha: write RGB + near infrared in 8 bits with ``photometric="MINISBLACK"`` to keep it as a band.
- **GeoTIFFs** of an 8-bit RGB or grey photo (with or without alpha): read window by window too, so a
  training crop of a huge GeoTIFF decodes the blocks under the crop, never the whole file. Their pixels
  are exactly what ``segkit.data.imageio.read_image`` gives (grey replicated to RGB, alpha dropped).

Rasters are read with rasterio (``pip install segkit[geo]``); without it an RGB GeoTIFF is read whole
as before, and a band photo is a one-line error saying what to install.

``write_georeferenced_mask`` writes a predicted mask with the photo's CRS and transform (rasterio), as
a Cloud-Optimized GeoTIFF (GDAL's COG driver: tiled, deflate, overviews by nearest neighbour), so a GIS
lays it on top of the photo.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import DataError, UsageError
from segkit.lazy import lazy_module

# Imported when a photo is first looked at: every start imports this module (through the datasets).
tifffile = lazy_module("tifffile")

__all__ = [
    "GEO_EXTRA",
    "Raster",
    "TiffFacts",
    "georeferenced",
    "open_raster",
    "rasterio_or_error",
    "tiff_facts",
    "write_georeferenced_mask",
]

#: What to install for rasters.
GEO_EXTRA = "pip install segkit[geo]"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ALPHA = (1, 2)  # associated, unassociated
_ORIENTATION_TAG = 274
_GEO_TAGS = (33550, 33922, 34264, 34735)  # pixel scale, tie points, transformation, GeoKey directory


@dataclass(frozen=True)
class TiffFacts:
    """What a TIFF's first page header says: size, samples, their numpy ``dtype``, whether the photo
    keeps its bands (``bands``) and whether it is georeferenced; ``rgb_raster``: an 8-bit RGB or grey
    GeoTIFF that ``Raster`` reads exactly as ``read_image`` would."""

    height: int
    width: int
    samples: int
    dtype: str
    bands: bool
    georeferenced: bool
    rgb_raster: bool
    extra_alpha: bool
    truncated: bool

    @property
    def raster(self) -> bool:
        return self.bands or self.rgb_raster


def tiff_facts(path: str | os.PathLike) -> TiffFacts | None:
    """The header facts of the TIFF at ``path``, or None for any other file (or a header tifffile
    cannot parse: ``read_image`` then names the problem)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(4) not in _TIFF_MAGIC:
                return None
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            samples, bits = int(page.samplesperpixel), int(page.bitspersample)
            photometric, extras = int(page.photometric), tuple(int(kind) for kind in page.extrasamples)
            dtype = np.dtype(page.dtype).name
            georeferenced = any(tag in page.tags for tag in _GEO_TAGS)
            upright = int(page.tags.valueof(_ORIENTATION_TAG, 1)) == 1
            height, width = int(page.imagelength), int(page.imagewidth)
            segments = zip(page.dataoffsets, page.databytecounts, strict=True)
            end = path.stat().st_size
            truncated = any(count and offset + count > end for offset, count in segments)
    except Exception:  # noqa: BLE001 - not a TIFF tifffile reads: Pillow gets to say what is wrong
        return None
    grey = photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    eight_bit = bits == 8 and dtype == "uint8"
    alpha = len(extras) == 1 and extras[0] in _ALPHA
    picture = eight_bit and (
        (not grey and samples <= 4)  # RGB (alpha dropped), and what Pillow converts: CMYK, YCbCr, ...
        or (grey and samples == 2 and alpha)
    )
    bands = samples > 1 and not picture
    rgb_raster = (
        georeferenced
        and upright
        and eight_bit
        and (
            (photometric == tifffile.PHOTOMETRIC.MINISBLACK and (samples == 1 or (samples == 2 and alpha)))
            or (photometric == tifffile.PHOTOMETRIC.RGB and (samples == 3 or (samples == 4 and alpha)))
        )
    )
    extra_alpha = alpha and samples in (2, 4)
    return TiffFacts(height, width, samples, dtype, bands, georeferenced, rgb_raster, extra_alpha, truncated)


def rasterio_or_error(what: str) -> Any:
    """The rasterio module, or a one-line ``UsageError`` saying ``what`` needs it and how to install it."""
    try:
        import rasterio
    except ImportError:
        raise UsageError(f"{what} needs rasterio, which is not installed: {GEO_EXTRA}") from None
    return rasterio


def _have_rasterio() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def scale_of(dtype: str) -> float:
    """What band values of numpy type ``dtype`` are divided by before normalisation: the type's largest
    value (0..1 for unsigned types, as torchvision's ``ToDtype(scale=True)`` scales); floats: 1."""
    kind = np.dtype(dtype)
    return float(np.iinfo(kind).max) if kind.kind in "iu" else 1.0


@dataclass
class Raster:
    """A TIFF photo read window by window with rasterio (see the module docstring). It answers what
    datasets and predict ask of a photo (``width``, ``height``, ``size``, ``mode``, ``getbands()``,
    ``load()``, and ``read_rows`` as a row source for tiled prediction) and what a crop asks of a pixel
    tensor (``shape`` and ``raster[..., rows, columns]``, reading only that window).

    ``pixels(top, left, rows, columns)``: a ``(C, rows, columns)`` torch tensor: uint8 RGB for an RGB
    GeoTIFF (exactly ``read_image``'s pixels), float32 band values scaled by ``scale`` (band photos)."""

    path: Path
    height: int
    width: int
    samples: int
    dtype: str
    bands: bool
    extra_alpha: bool

    @property
    def channels(self) -> int:
        if not self.bands:
            return 3
        return self.samples - self.extra_alpha

    @property
    def scale(self) -> float:
        return scale_of(self.dtype)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def mode(self) -> str:
        return f"{self.channels} bands of {self.dtype}" if self.bands else "RGB"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def describe(self) -> str:
        return f"{self.channels}-band {self.dtype}" if self.bands else "8-bit RGB"

    def getbands(self) -> tuple[str, ...]:
        return tuple(f"band {index + 1}" for index in range(self.channels))

    def load(self) -> None:
        """Nothing: a raster is read window by window when its pixels are asked for, never whole here."""

    def read(
        self, top: int = 0, left: int = 0, rows: int | None = None, columns: int | None = None
    ) -> np.ndarray:
        """The file's values in a window, ``(C, rows, columns)`` of its own type (RGB: uint8, grey
        replicated, alpha dropped); the whole photo by default."""
        rasterio = rasterio_or_error(f"reading {self.path} ({self.describe()} TIFF)")
        from rasterio.windows import Window

        rows = self.height - top if rows is None else rows
        columns = self.width - left if columns is None else columns
        indexes = list(range(1, self.samples + 1))
        if not self.bands:
            indexes = [1, 1, 1] if self.samples <= 2 else [1, 2, 3]
        elif self.extra_alpha:
            indexes = indexes[:-1]
        try:
            with warnings.catch_warnings():
                # A band photo need not be georeferenced: rasterio's warning about it says nothing here.
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(self.path) as source:
                    values = source.read(indexes, window=Window(left, top, columns, rows))
        except Exception as error:  # noqa: BLE001 - any codec failure on untrusted bytes is a data error
            raise DataError(
                f"cannot decode image file {self.path}: {type(error).__name__}: {error}"
            ) from None
        return values

    def pixels(self, top: int = 0, left: int = 0, rows: int | None = None, columns: int | None = None) -> Any:
        import torch

        values = self.read(top, left, rows, columns)
        if not self.bands:
            return torch.from_numpy(np.ascontiguousarray(values, dtype=np.uint8))
        return torch.from_numpy((values.astype(np.float32) / np.float32(self.scale)).astype(np.float32))

    def __getitem__(self, key: Any) -> Any:
        """``raster[..., top:bottom, left:right]``: that window's ``pixels`` (what a crop cuts)."""
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] is Ellipsis):
            raise TypeError(f"a Raster is cut as raster[..., rows, columns], not raster[{key!r}]")
        (top, bottom, _), (left, right, _) = key[1].indices(self.height), key[2].indices(self.width)
        return self.pixels(top, left, max(0, bottom - top), max(0, right - left))

    def read_rows(self, top: int, bottom: int) -> np.ndarray:
        """Rows ``top .. bottom`` as ``(rows, W, C)`` for tiled prediction, which divides by 255: uint8
        for RGB, float32 band values scaled by ``scale`` and multiplied by 255 for band photos."""
        top, bottom = max(0, top), min(self.height, bottom)
        values = np.moveaxis(self.read(top, 0, max(0, bottom - top), self.width), 0, -1)
        if not self.bands:
            return np.ascontiguousarray(values)
        return values.astype(np.float32) * np.float32(255.0 / self.scale)


def open_raster(path: str | os.PathLike, facts: TiffFacts | None = None) -> Raster | None:
    """A ``Raster`` for a band photo or an RGB GeoTIFF (see the module docstring), None for any other
    photo. A band photo without rasterio installed is a one-line ``DataError`` saying what to install;
    an RGB GeoTIFF without it is None (read whole, as before)."""
    facts = tiff_facts(path) if facts is None else facts
    if facts is None or not facts.raster:
        return None
    if not _have_rasterio():
        if facts.bands:
            raise DataError(
                f"image {path} is a {facts.samples}-band {facts.dtype} TIFF; reading its bands needs "
                f"rasterio, which is not installed: {GEO_EXTRA}"
            )
        return None
    return Raster(
        Path(path), facts.height, facts.width, facts.samples, facts.dtype, facts.bands, facts.extra_alpha
    )


def georeferenced(path: str | os.PathLike) -> bool:
    """Whether the photo at ``path`` is a TIFF with GeoTIFF tags (a CRS or a transform)."""
    facts = tiff_facts(path)
    return facts is not None and facts.georeferenced


def write_georeferenced_mask(
    path: str | os.PathLike, photo: str | os.PathLike, mask: np.ndarray, colormap: np.ndarray | None = None
) -> None:
    """Write the single-channel ``mask`` (``(H, W)`` of the photo's size, uint8 or uint16) at ``path`` as a
    Cloud-Optimized GeoTIFF with ``photo``'s CRS and transform; ``colormap``: a ``(3, 256)`` uint16
    palette (``segkit.data.tiff.write_mask_tiffs``'s) shown by GIS for class ids."""
    rasterio = rasterio_or_error(f"writing the mask of GeoTIFF {photo} with its coordinates")
    with rasterio.open(photo) as source:
        crs, transform = source.crs, source.transform
        if (source.height, source.width) != mask.shape:
            raise ValueError(
                f"mask {mask.shape} is not the size of {photo} ({source.height}, {source.width})"
            )
    profile = {
        "driver": "COG",
        "height": mask.shape[0],
        "width": mask.shape[1],
        "count": 1,
        "dtype": mask.dtype.name,
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
        "blocksize": 256,
        # Overviews of class ids must pick ids, never average them.
        "overview_resampling": "nearest",
    }
    with rasterio.open(path, "w", **profile) as target:
        target.write(mask, 1)
        if colormap is not None:
            palette = (np.asarray(colormap) // 257).astype(int)
            target.write_colormap(1, {index: (*palette[:, index].tolist(), 255) for index in range(256)})
