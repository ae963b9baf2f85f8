"""Pictures of predictions: a mask tinted over its photo, with outlines and, for classes, a legend.

Painted band by band (``BAND_ROWS`` rows at a time): the float arithmetic holds one band, never a float
copy of the whole photo (an 8000 x 8000 photo is 192 MB of 8-bit pixels, 768 MB as float32). With
``in_place`` the photo itself is painted (``segkit predict``, done with it), so a huge photo costs no
second copy. A legend goes in a strip below the photo, never over it: the photo's pixels stay where they
are (pixel (x, y) of the overlay is pixel (x, y) of the photo and of its mask), and a small photo is
not hidden by the names of its classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

#: Rows painted at a time.
BAND_ROWS = 256

#: ``rows(top, bottom) -> (colours (rows, W, 3), tinted (rows, W) bool, labels (rows, W) ids)``.
ClassRows = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def binary_overlay(
    image: Image.Image,
    mask: np.ndarray,
    color=(255, 40, 40),
    alpha: float = 0.45,
    *,
    in_place: bool = False,
) -> Image.Image:
    """The photo with the mask tinted over it and the mask outline drawn, as an RGB PIL image (the photo
    itself, painted, when ``in_place`` and it is RGB)."""
    tint = np.array(color, dtype=np.float32)

    def paint(rows: np.ndarray, top: int, bottom: int) -> None:
        inside = mask[top:bottom]
        rows[inside] = (1 - alpha) * rows[inside] + alpha * tint
        rows[band_boundaries(lambda a, b: mask[a:b], len(mask), top, bottom)] = tint

    return _painted(image, paint, in_place)


def class_overlay(
    image: Image.Image,
    rows: ClassRows,
    legend: Sequence[tuple[str, Sequence[int]]],
    alpha: float = 0.5,
    *,
    in_place: bool = False,
) -> Image.Image:
    """The photo with each pixel's class colour blended in where tinted and class outlines drawn (from
    the label ids: an id per pixel); ``rows(top, bottom)`` gives those for a band of rows (see
    ``whole_rows``). A legend of ``(name, colour)``, when given, goes in a strip below the photo."""

    def paint(pixels: np.ndarray, top: int, bottom: int) -> None:
        colours, tinted, _ = rows(top, bottom)
        pixels[tinted] = (1 - alpha) * pixels[tinted] + alpha * colours[tinted]
        edges = band_boundaries(lambda a, b: rows(a, b)[2], image.height, top, bottom) & tinted
        pixels[edges] = colours[edges]

    picture = _painted(image, paint, in_place)
    return with_legend(picture, legend) if legend else picture


def whole_rows(colours: np.ndarray, tinted: np.ndarray, labels: np.ndarray) -> ClassRows:
    """``class_overlay``'s ``rows`` over arrays of the whole photo."""
    return lambda top, bottom: (colours[top:bottom], tinted[top:bottom], labels[top:bottom])


def band_boundaries(
    labels_of: Callable[[int, int], np.ndarray], height: int, top: int, bottom: int
) -> np.ndarray:
    """``find_boundaries(labels, mode="inner")`` for rows ``top .. bottom`` only, computed from those rows
    and one more on either side (the outline looks one pixel away), so it equals the whole image's."""
    above, below = max(top - 1, 0), min(bottom + 1, height)
    edges = find_boundaries(labels_of(above, below), mode="inner")
    return edges[top - above : top - above + bottom - top]


def bands(height: int, rows: int | None = None) -> Iterator[tuple[int, int]]:
    step = rows or BAND_ROWS
    for top in range(0, height, step):
        yield top, min(top + step, height)


def _painted(
    image: Image.Image, paint: Callable[[np.ndarray, int, int], None], in_place: bool
) -> Image.Image:
    """``paint(float rows, top, bottom)`` applied band by band to the photo (a copy unless ``in_place``)."""
    if image.mode != "RGB":
        picture = image.convert("RGB")
    else:
        picture = image if in_place else image.copy()
    for top, bottom in bands(picture.height):
        pixels = np.asarray(picture.crop((0, top, picture.width, bottom)), dtype=np.float32)
        paint(pixels, top, bottom)
        picture.paste(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), (0, top))
    return picture


# -- the legend --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegendEntry:
    """Where one class's swatch and name go in the legend strip (canvas coordinates)."""

    name: str
    colour: tuple[int, int, int]
    swatch: tuple[int, int, int, int]  # left, top, right, bottom
    text: tuple[int, int, int, int]  # the name's drawn box
    anchor: tuple[int, int]  # where the name is drawn from


def legend_font_size(width: int) -> int:
    """Text size for a photo ``width`` pixels wide: readable on a small photo, and still so when a big
    one is viewed whole (scaled down)."""
    return int(min(max(round(width / 60), 11), 64))


def legend_layout(
    names: Sequence[tuple[str, Sequence[int]]], width: int, top: int
) -> tuple[list[LegendEntry], int, int]:
    """Entries laid out left to right below row ``top``, wrapping at ``width`` (wider only for a name
    that does not fit on any line). Returns the entries, the canvas width and height they need."""
    size = legend_font_size(width)
    font = ImageFont.load_default(size=size)
    margin, gap = max(size // 3, 3), size
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries: list[LegendEntry] = []
    x, y, right = margin, top + margin, width
    for name, colour in names:
        left, text_top, text_right, text_bottom = (
            round(v) for v in draw.textbbox((0, 0), str(name), font=font)
        )
        entry_width = size + margin + (text_right - left)
        if x > margin and x + entry_width + margin > width:  # wrap to the next line
            x, y = margin, y + round(size * 1.5)
        swatch = (x, y, x + size, y + size)
        text_x, text_y = x + size + margin, y + (size - (text_bottom - text_top)) // 2 - text_top
        box = [round(v) for v in draw.textbbox((text_x, text_y), str(name), font=font)]
        text = (box[0], box[1], box[2], box[3])
        colour = (int(colour[0]), int(colour[1]), int(colour[2]))
        entries.append(LegendEntry(str(name), colour, swatch, text, (text_x, text_y)))
        right = max(right, x + entry_width + margin)
        x += entry_width + gap
    bottom = max([entry.swatch[3] for entry in entries] + [entry.text[3] for entry in entries] + [top])
    return entries, right, bottom + margin


def with_legend(picture: Image.Image, names: Sequence[tuple[str, Sequence[int]]]) -> Image.Image:
    """``picture`` with a strip below it naming each class beside a swatch of its colour."""
    entries, width, height = legend_layout(names, picture.width, picture.height)
    canvas = Image.new("RGB", (width, height), (32, 32, 32))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=legend_font_size(picture.width))
    for entry in entries:
        draw.rectangle(entry.swatch, fill=entry.colour, outline=(255, 255, 255))
        draw.text(entry.anchor, entry.name, fill=(255, 255, 255), font=font)
    return canvas
