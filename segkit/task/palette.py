"""Overlay colours of classes: the defaults every dataset and task uses, and the check of a palette a
dataset or a user gives. One colour per class, ``[r, g, b]`` integers 0..255."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segkit.errors import DataError

#: The overlay colour of the one class of a binary dataset (what ``segkit predict`` draws).
BINARY_PALETTE = [[255, 40, 40]]
#: Default overlay colours of multiclass and multilabel classes, in order (20 easily told apart; a
#: class named "background" is drawn black instead). Beyond 20 classes colours come from the
#: PASCAL VOC colour map.
DISTINCT_COLOURS = [
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
    [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
]  # fmt: skip


def default_palette(class_names: Sequence[str], task: str = "multiclass") -> list[list[int]]:
    """Overlay colours ``[r, g, b]`` for the classes: ``BINARY_PALETTE`` for binary; otherwise black
    for a class named "background" and ``DISTINCT_COLOURS`` in turn for the others."""
    if task == "binary":
        return [list(colour) for colour in BINARY_PALETTE]
    palette = []
    others = 0
    for name in class_names:
        if name == "background":
            palette.append([0, 0, 0])
            continue
        palette.append(
            list(DISTINCT_COLOURS[others]) if others < len(DISTINCT_COLOURS) else voc_colour(others)
        )
        others += 1
    return palette


def voc_colour(index: int) -> list[int]:
    """Colour ``index`` of the PASCAL VOC colour map (bits of the index spread over r, g and b)."""
    colour = [0, 0, 0]
    for shift in range(8):
        for channel in range(3):
            colour[channel] |= ((index >> (3 * shift + channel)) & 1) << (7 - shift)
    return colour


def check_palette(palette: Any, classes: int, where: str = "dataset") -> list[list[int]]:
    """``palette`` as ``classes`` lists ``[r, g, b]`` of ints in 0..255, else a ``DataError``."""
    problem = None
    if isinstance(palette, (str, bytes)) or not isinstance(palette, Sequence) or len(palette) != classes:
        problem = f"must be a list of {classes} [r, g, b] colours, one per class"
    else:
        for colour in palette:
            if (
                isinstance(colour, (str, bytes))
                or not isinstance(colour, Sequence)
                or len(colour) != 3
                or not all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
                    for v in colour
                )
            ):
                problem = f"has colour {colour!r}; each colour is [r, g, b] with integers 0..255"
                break
    if problem:
        raise DataError(f"{where}: palette {problem}, got {palette!r}")
    return [[int(value) for value in colour] for colour in palette]
