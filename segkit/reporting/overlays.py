"""Pictures of predictions: a mask tinted over its photo, with outlines and, for classes, a legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries


def binary_overlay(
    image: Image.Image, mask: np.ndarray, color=(255, 40, 40), alpha: float = 0.45
) -> Image.Image:
    """The photo with the mask tinted over it and the mask outline drawn, as an RGB PIL image."""
    pixels = np.asarray(image, dtype=np.float32).copy()
    tint = np.array(color, dtype=np.float32)
    pixels[mask] = (1 - alpha) * pixels[mask] + alpha * tint
    pixels[find_boundaries(mask, mode="inner")] = tint
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def class_overlay(
    image: Image.Image,
    colours: np.ndarray,
    tinted: np.ndarray,
    labels: np.ndarray,
    legend: Sequence[tuple[str, Sequence[int]]],
    alpha: float = 0.5,
) -> Image.Image:
    """The photo with each pixel's class colour blended in where ``tinted``, class outlines drawn
    (from the ``labels`` image: an id per pixel), and a legend of ``(name, colour)`` in a corner."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    pixels[tinted] = (1 - alpha) * pixels[tinted] + alpha * colours[tinted]
    edges = find_boundaries(labels, mode="inner") & tinted
    pixels[edges] = colours[edges]
    picture = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    row = 12
    for index, (name, colour) in enumerate(legend):
        top = 2 + index * row
        draw.rectangle([2, top, 11, top + 9], fill=tuple(int(v) for v in colour), outline=(255, 255, 255))
        draw.text((15, top - 1), str(name), fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return picture
