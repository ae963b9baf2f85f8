"""TIFF photos read row band by row band, and TIFF masks written tile by tile, for huge images.

PNG and JPEG can only be decoded whole; a TIFF is stored in independent strips or tiles (segments),
so tiled prediction (``segkit.inference.tiling.predict_tiled_mask``) can read just the segments covering the
band it works on, and the photo is never held whole:

- ``open_tiff_rows(path)``: a ``TiffRows`` row source (``height``, ``width``, ``read_rows(top,
  bottom)`` giving uint8 RGB rows ``(rows, W, 3)``, exactly what ``segkit.data.imageio.read_image`` would
  give for those rows) when the file can be streamed, else ``None``. Streamed: 8-bit greyscale, RGB
  and RGBA (alpha dropped), greyscale with alpha, 16-bit greyscale (scaled to 8 bits as
  ``read_image`` does), stripped or tiled, contiguous samples (or one sample), uncompressed or with a
  codec tifffile has without extra packages (deflate, LZMA, PackBits, ...), EXIF orientation 1.
  Anything else (JPEG or LZW compression without ``imagecodecs``, palette, CMYK, YCbCr, separate
  planes, rotated photos, associated alpha, several samples of 16 bits) is ``None``: read it whole.
  The pixel limit (``segkit.data.imageio.MAX_IMAGE_PIXELS``, predict's ``--max-pixels``) is checked
  from the header alone, and segments past the end of the file (a truncated file) are found then
  too; both are a ``DataError`` naming the file, as is a segment that does not decode.
- ``read_photo(path, stream)``: the ``TiffRows`` of a streamable TIFF when ``stream``, else the
  whole ``read_image``; a band photo (``segkit.data.geotiff``) is always its ``Raster``, which is read
  band of rows by band of rows too.
- ``write_tiled_mask(path, bands, height, width)``: a single-channel TIFF written tile by tile
  (256 x 256, deflate) from row bands given in order (``bands`` may be a generator): it holds one
  row of tiles, never a second copy of the whole mask. ``write_mask_tiffs`` writes what ``segkit
  predict --mask-format tiff`` writes for a task's mask: for a georeferenced photo, GeoTIFFs with its
  CRS and transform (``segkit.data.geotiff.write_georeferenced_mask``, rasterio).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
from PIL import Image
from tifffile import TIFF

import segkit.data.imageio as imageio
from segkit.data.geotiff import Raster, tiff_facts, write_georeferenced_mask
from segkit.errors import DataError

if TYPE_CHECKING:
    from segkit.task import Task

__all__ = ["MASK_TILE", "TiffRows", "open_tiff_rows", "read_photo", "write_tiled_mask", "write_mask_tiffs"]

#: Tile size of the masks ``write_tiled_mask`` writes.
MASK_TILE = 256
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_ORIENTATION_TAG = 274
_UNASSOCIATED_OR_UNSPECIFIED_ALPHA = (0, 2)


@dataclass
class TiffRows:
    """Rows of a TIFF photo, decoded segment by segment (see the module docstring). ``read_rows``
    opens the file for each call, so nothing needs closing; ``segments_decoded`` counts the segments
    decoded so far (each band decodes the segments covering its rows, nothing else)."""

    path: Path
    height: int
    width: int
    segment_rows: int  # rows per strip or tile
    segment_columns: int  # the width for strips
    samples: int
    sixteen_bit: bool
    offsets: tuple[int, ...]
    bytecounts: tuple[int, ...]
    decode: Callable[..., Any] = field(repr=False)
    jpegtables: bytes | None = field(default=None, repr=False)
    segments_decoded: int = 0
    #: the last row of segments decoded, as RGB: ``(segment row, pixels)``; bands overlap, so the
    #: next band usually starts inside it
    _last: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def read_rows(self, top: int, bottom: int) -> np.ndarray:
        """Image rows ``top .. bottom`` as uint8 RGB ``(rows, W, 3)``."""
        top, bottom = max(0, top), min(self.height, bottom)
        rows = np.empty((max(0, bottom - top), self.width, 3), dtype=np.uint8)
        if bottom <= top:
            return rows
        with self.path.open("rb") as handle:
            for segment_row in range(top // self.segment_rows, (bottom - 1) // self.segment_rows + 1):
                y = segment_row * self.segment_rows
                pixels = self._segment_row(handle, segment_row)
                first, last = max(top - y, 0), min(bottom - y, pixels.shape[0])
                rows[y + first - top : y + last - top] = pixels[first:last]
        return rows

    def _segment_row(self, handle: Any, segment_row: int) -> np.ndarray:
        """Image rows of one row of segments, as RGB ``(rows, W, 3)`` (the last one kept)."""
        if self._last is not None and self._last[0] == segment_row:
            return self._last[1]
        y = segment_row * self.segment_rows
        pixels = np.empty((min(self.segment_rows, self.height - y), self.width, 3), dtype=np.uint8)
        self._last = None  # never two rows of segments at once
        across = -(-self.width // self.segment_columns)
        for column in range(across):
            segment = self._segment(handle, segment_row * across + column)
            x = column * self.segment_columns
            right = min(segment.shape[1], self.width - x)
            pixels[:, x : x + right] = self._rgb(segment[: pixels.shape[0], :right])
        self._last = (segment_row, pixels)
        return pixels

    def _segment(self, handle: Any, index: int) -> np.ndarray:
        """One decoded segment ``(rows, columns, samples)`` (a missing one is zeros, as tifffile reads it)."""
        shape = (self.segment_rows, self.segment_columns, self.samples)
        if self.bytecounts[index] == 0:
            return np.zeros(shape, dtype=np.uint16 if self.sixteen_bit else np.uint8)
        try:
            handle.seek(self.offsets[index])
            data = handle.read(self.bytecounts[index])
            segment = self.decode(data, index, jpegtables=self.jpegtables)[0]
        except Exception as error:  # noqa: BLE001 - any codec failure on untrusted bytes is a data error
            raise DataError(
                f"cannot decode image file {self.path}: segment {index} is broken "
                f"({type(error).__name__}: {error})"
            ) from None
        self.segments_decoded += 1
        return np.asarray(segment).reshape(-1, *segment.shape[-2:])

    def _rgb(self, pixels: np.ndarray) -> np.ndarray:
        if self.sixteen_bit:  # as segkit.data.imageio.read_image: round to nearest, exactly linear
            pixels = ((pixels.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
        if self.samples <= 2:  # greyscale, with or without alpha
            return np.repeat(pixels[..., :1], 3, axis=-1)
        return pixels[..., :3]


def read_photo(path: str | os.PathLike, stream: bool) -> Image.Image | TiffRows | Raster:
    """With ``stream``, the ``TiffRows`` of a TIFF that can be streamed; otherwise (or for any other
    file) the photo as ``segkit.data.imageio.read_image`` gives it. A band photo is always a ``Raster``
    (its bands kept, read row band by row band when tiled): ``TiffRows`` would make it RGB."""
    facts = tiff_facts(path) if stream else None
    rows = open_tiff_rows(path) if facts is not None and not facts.bands else None
    return rows if rows is not None else imageio.read_image(path)


def open_tiff_rows(path: str | os.PathLike) -> TiffRows | None:
    """A ``TiffRows`` of the first image in the TIFF at ``path``, or ``None`` when the file is no
    TIFF or not one this module streams (read it with ``read_image``). Raises ``DataError`` naming
    the file when it is larger than the pixel limit or its segments run past the end of the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(4) not in _TIFF_MAGIC:
                return None
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            facts = _streamable(page)
            if facts is None:
                return None
            height, width = int(page.imagelength), int(page.imagewidth)
            _check_pixels(path, height, width)
            offsets, bytecounts = tuple(map(int, page.dataoffsets)), tuple(map(int, page.databytecounts))
            decode = page.decode
            jpegtables = page.jpegtables
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - a header tifffile cannot parse: read_image names the problem
        return None
    segment_rows, segment_columns = facts
    if len(offsets) != -(-height // segment_rows) * -(-width // segment_columns):
        return None
    size = path.stat().st_size
    if any(count and offset + count > size for offset, count in zip(offsets, bytecounts, strict=True)):
        raise DataError(f"image file {path} is truncated: its pixel data runs past the end of the file")
    return TiffRows(
        path=path,
        height=height,
        width=width,
        segment_rows=segment_rows,
        segment_columns=segment_columns,
        samples=int(page.samplesperpixel),
        sixteen_bit=int(page.bitspersample) == 16,
        offsets=offsets,
        bytecounts=bytecounts,
        decode=decode,
        jpegtables=jpegtables,
    )


def _streamable(page: Any) -> tuple[int, int] | None:
    """``(segment rows, segment columns)`` of a page this module reads segment by segment, or None."""
    samples, bits = int(page.samplesperpixel), int(page.bitspersample)
    photometric = int(page.photometric)
    if photometric == tifffile.PHOTOMETRIC.MINISBLACK and samples in (1, 2):
        pass
    elif photometric == tifffile.PHOTOMETRIC.RGB and samples in (3, 4) and not page.is_subsampled:
        pass
    else:
        return None
    if samples > 1 and int(page.planarconfig) != tifffile.PLANARCONFIG.CONTIG:
        return None
    extras = tuple(int(kind) for kind in page.extrasamples)
    if samples in (2, 4) and not (len(extras) == 1 and extras[0] in _UNASSOCIATED_OR_UNSPECIFIED_ALPHA):
        return None  # associated (premultiplied) alpha: Pillow un-premultiplies, read it whole
    if (
        not (bits == 8 or (bits == 16 and samples == 1))
        or int(page.sampleformat) != tifffile.SAMPLEFORMAT.UINT
    ):
        return None
    if int(page.tags.valueof(_ORIENTATION_TAG, 1)) != 1 or int(page.fillorder) != 1:
        return None
    if int(page.imagedepth) != 1 or page.compression not in TIFF.DECOMPRESSORS:
        return None
    if int(page.predictor) != 1 and page.predictor not in TIFF.UNPREDICTORS:
        return None
    if page.is_tiled:
        if int(page.tiledepth) != 1:
            return None
        return int(page.tilelength), int(page.tilewidth)
    return min(int(page.rowsperstrip) or int(page.imagelength), int(page.imagelength)), int(page.imagewidth)


def _check_pixels(path: Path, height: int, width: int) -> None:
    if width * height > imageio.MAX_IMAGE_PIXELS:
        raise DataError(
            f"image {path} is {width}x{height} = {width * height:,} pixels, more than "
            f"segkit.data.imageio.MAX_IMAGE_PIXELS = {imageio.MAX_IMAGE_PIXELS:,}; refusing to decode it "
            "(downscale the file, or raise the limit if you trust it)"
        )


# -- writing masks -----------------------------------------------------------------------------------------


def write_tiled_mask(
    path: str | os.PathLike,
    bands: Iterable[np.ndarray],
    height: int,
    width: int,
    *,
    dtype: Any = np.uint8,
    tile: int = MASK_TILE,
    colormap: np.ndarray | None = None,
) -> None:
    """Write a single-channel ``height`` x ``width`` TIFF, ``tile`` x ``tile`` tiles, deflate, from
    row bands ``(rows, width)`` given top to bottom (of any heights summing to ``height``; converted to
    ``dtype``). Holds one row of tiles at a time. ``colormap``: a ``(3, 2**bits)`` uint16 palette
    (the file is then a palette image whose pixel values are indices)."""
    dtype = np.dtype(dtype)
    extra: dict[str, Any] = {"photometric": "minisblack"}
    if colormap is not None:
        extra = {"photometric": "palette", "colormap": colormap}
    tifffile.imwrite(
        path,
        _tiles(bands, height, width, tile, dtype),
        shape=(height, width),
        dtype=dtype,
        tile=(tile, tile),
        compression="zlib",
        **extra,
    )


def _tiles(
    bands: Iterable[np.ndarray], height: int, width: int, tile: int, dtype: np.dtype
) -> Iterator[np.ndarray]:
    """Full ``tile`` x ``tile`` tiles, row-major, from row bands (edge tiles zero-padded)."""
    pending: list[np.ndarray] = []
    held = done = 0
    for band in bands:
        band = np.asarray(band)
        if band.ndim != 2 or band.shape[1] != width:
            raise ValueError(f"mask bands must be (rows, {width}) arrays, got shape {band.shape}")
        pending.append(band)
        held += band.shape[0]
        if done + held > height:
            raise ValueError(f"mask bands hold more than {height} rows")
        while held >= tile or (held and done + held == height):
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            rows = min(tile, held)
            yield from _tile_row(block[:rows], width, tile, dtype)
            pending = [block[rows:]] if held > rows else []
            held -= rows
            done += rows
    if done != height:
        raise ValueError(f"mask bands hold {done + held} rows, not {height}")


def _tile_row(rows: np.ndarray, width: int, tile: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    for left in range(0, width, tile):
        piece = np.zeros((tile, tile), dtype=dtype)
        block = rows[:, left : left + tile]
        piece[: block.shape[0], : block.shape[1]] = block
        yield piece


def write_mask_tiffs(
    out: Path, stem: str, task: Task, mask: np.ndarray, georeference: str | os.PathLike | None = None
) -> None:
    """What ``segkit predict --mask-format tiff`` writes: ``<stem>_mask.tif`` (binary: 0/255;
    multiclass: class ids, a palette image in the task's colours up to 256 classes) or, multilabel,
    ``<stem>_mask_<class>.tif`` (0/255) per class; tile by tile, without another whole-mask copy.
    ``georeference``: the georeferenced photo whose CRS and transform the masks carry (Cloud-Optimized
    GeoTIFFs written by rasterio, ``segkit.data.geotiff.write_georeferenced_mask``)."""
    layers = (
        {f"mask_{name}": mask[index] for index, name in enumerate(task.class_names)}
        if task.kind == "multilabel"
        else {"mask": mask}
    )
    height, width = mask.shape[-2:]
    for suffix, layer in layers.items():
        colormap = None
        if task.kind == "multiclass" and layer.dtype == np.uint8:
            colormap = np.zeros((3, 256), dtype=np.uint16)
            colours = np.asarray(task.palette, dtype=np.uint16)[:256]  # type: ignore[union-attr]
            colormap[:, : len(colours)] = colours.T * 257
        if georeference is not None:
            values = layer.astype(np.uint8) * 255 if layer.dtype == bool else layer
            write_georeferenced_mask(out / f"{stem}_{suffix}.tif", georeference, values, colormap)
            continue
        write_tiled_mask(
            out / f"{stem}_{suffix}.tif",
            _bands(layer, scale=255 if layer.dtype == bool else 1),
            height,
            width,
            dtype=np.uint8 if layer.dtype == bool else layer.dtype,
            colormap=colormap,
        )


def _bands(layer: np.ndarray, scale: int) -> Iterator[np.ndarray]:
    for top in range(0, layer.shape[0], MASK_TILE):
        band = layer[top : top + MASK_TILE]
        yield band.astype(np.uint8) * scale if scale != 1 else band
