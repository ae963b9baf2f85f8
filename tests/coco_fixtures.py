"""COCO datasets written as COCO documents them (a plain module, imported by test_coco.py).

Each annotation carries its own reference mask, made without segkit: an axis-aligned rectangle with
integer corners as a polygon (``[x0, y0, x1, y0, x1, y1, x0, y1]`` covers columns x0..x1-1 and rows
y0..y1-1 in pycocotools' rasterisation: numpy slicing is the reference), or any pixel array written as
RLE by pycocotools' own encoder (compressed) or as the uncompressed column-major counts COCO's format
describes. The JSON follows the COCO spec (info, licenses, images, annotations, categories); the
panoptic PNGs hold segment ids as R + 256 G + 256² B.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_api

#: Categories with ids that are not 0..K-1, as COCO's are not.
CATEGORIES = [
    {"id": 1, "name": "cat", "supercategory": "animal"},
    {"id": 3, "name": "dog", "supercategory": "animal"},
    {"id": 7, "name": "car", "supercategory": "vehicle"},
]


@dataclass
class Shape:
    """One annotation: its JSON segmentation and the reference mask it stands for."""

    category_id: int
    segmentation: list | dict
    pixels: np.ndarray
    iscrowd: int = 0


@dataclass
class Photo:
    file_name: str
    height: int
    width: int
    shapes: list[Shape] = field(default_factory=list)


def rectangle(category_id: int, box: tuple[int, int, int, int], size: tuple[int, int], iscrowd=0) -> Shape:
    """A polygon of the rectangle ``box = (x0, y0, x1, y1)`` in a photo of ``size = (height, width)``."""
    x0, y0, x1, y1 = box
    pixels = np.zeros(size, bool)
    pixels[y0:y1, x0:x1] = True
    return Shape(category_id, [[x0, y0, x1, y0, x1, y1, x0, y1]], pixels, iscrowd)


def rle(category_id: int, pixels: np.ndarray, compressed: bool = True, iscrowd: int = 0) -> Shape:
    """``pixels`` as RLE: compressed by pycocotools, or COCO's uncompressed counts (column-major runs,
    the first one of zeros), as crowd annotations are stored in the official files."""
    pixels = np.asarray(pixels, bool)
    height, width = pixels.shape
    if compressed:
        encoded = mask_api.encode(np.asfortranarray(pixels.astype(np.uint8)))
        segmentation = {"size": [height, width], "counts": encoded["counts"].decode("ascii")}
    else:
        flat = pixels.flatten(order="F").astype(np.int8)
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        counts = np.diff(np.concatenate([[0], changes])).tolist()
        segmentation = {"size": [height, width], "counts": counts}
    return Shape(category_id, segmentation, pixels, iscrowd)


def coco_content(photos: list[Photo], categories=CATEGORIES, first_id: int = 1) -> dict:
    """The COCO JSON object of ``photos`` (image ids from 1, annotation ids from ``first_id``)."""
    images, annotations = [], []
    next_id = first_id
    for image_id, photo in enumerate(photos, start=1):
        images.append(
            {"id": image_id, "file_name": photo.file_name, "height": photo.height, "width": photo.width}
        )
        for shape in photo.shapes:
            rows, cols = np.nonzero(shape.pixels)
            bbox = (
                [int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1]
                if rows.size
                else [0] * 4
            )
            annotations.append(
                {
                    "id": next_id,
                    "image_id": image_id,
                    "category_id": shape.category_id,
                    "segmentation": shape.segmentation,
                    "area": int(shape.pixels.sum()),
                    "bbox": bbox,
                    "iscrowd": shape.iscrowd,
                }
            )
            next_id += 1
    return {
        "info": {"description": "segkit test set", "version": "1.0", "year": 2017},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(category) for category in categories],
    }


def write_photos(folder: Path, photos: list[Photo], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        rng = np.random.default_rng(seed + index)
        pixels = rng.integers(0, 256, (photo.height, photo.width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / photo.file_name)


def write_json(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def write_coco(root: Path, splits: dict[str, list[Photo]], categories=CATEGORIES, year: str = "2017") -> Path:
    """COCO's own layout: ``annotations/instances_{split}{year}.json`` and ``{split}{year}/`` photos
    (``splits`` keyed by COCO's names: train, val)."""
    for index, (split, photos) in enumerate(splits.items()):
        write_json(root / "annotations" / f"instances_{split}{year}.json", coco_content(photos, categories))
        write_photos(root / f"{split}{year}", photos, seed=100 * index)
    return root


def write_roboflow(root: Path, splits: dict[str, list[Photo]], categories=CATEGORIES) -> Path:
    """A Roboflow "COCO Segmentation" export: ``{train,valid,test}/_annotations.coco.json`` beside the
    photos."""
    for index, (split, photos) in enumerate(splits.items()):
        write_json(root / split / "_annotations.coco.json", coco_content(photos, categories))
        write_photos(root / split, photos, seed=100 * index)
    return root


def random_photo(rng: np.random.Generator, name: str, category_ids=(1, 3, 7), shapes: int = 4) -> Photo:
    """A photo of random rectangles and RLE blobs of ``category_ids``, some crowd, overlapping."""
    height, width = int(rng.integers(12, 24)), int(rng.integers(12, 24))
    photo = Photo(f"{name}.png", height, width)
    for _ in range(int(rng.integers(0, shapes + 1))):
        category = int(rng.choice(category_ids))
        crowd = int(rng.random() < 0.2)
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False).tolist())
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False).tolist())
        kind = rng.integers(3)
        if kind == 0 and not crowd:
            photo.shapes.append(rectangle(category, (x0, y0, x1, y1), (height, width)))
        else:
            pixels = rng.random((height, width)) < 0.3
            pixels[y0:y1, x0:x1] = True
            photo.shapes.append(rle(category, pixels, compressed=bool(kind == 1), iscrowd=crowd))
    return photo


def panoptic_png(path: Path, segment_ids: np.ndarray) -> Path:
    """A panoptic PNG as COCO's panopticapi writes it: id = R + 256 G + 256² B."""
    ids = np.asarray(segment_ids, np.uint32)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path)
    return path
