"""Files laid out as label formats ship them (a plain module, imported by the label-format tests).

Each writer lays files out exactly as the format's own documentation shows, written by PIL (never by
segkit), from seeds, and returns the labels it wrote, for the tests to compare with what the dataset
reads:

- ``write_voc``: a Pascal VOC year folder (``VOCdevkit/VOC2012``): JPEG photos, palette PNG class
  masks with VOC's palette and its 255 border, ``ImageSets/Segmentation`` lists;
- ``write_cityscapes``: ``leftImg8bit/`` and ``gtFine/`` with city folders, 8-bit ``*_labelIds.png``
  holding Cityscapes label ids, beside the ``_color``, ``_instanceIds`` and ``_polygons`` files the
  release ships (which a reader must leave alone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from data_fixtures import photo_array, save
from PIL import Image

# -- Pascal VOC -------------------------------------------------------------------------------------

#: Palette colours of VOC's class ids 0..20, as the VOC2012 devkit's documentation and its masks give
#: them (background black, aeroplane dark red, ...), typed out here rather than computed.
VOC_COLOURS = [
    (0, 0, 0),
    (128, 0, 0),
    (0, 128, 0),
    (128, 128, 0),
    (0, 0, 128),
    (128, 0, 128),
    (0, 128, 128),
    (128, 128, 128),
    (64, 0, 0),
    (192, 0, 0),
    (64, 128, 0),
    (192, 128, 0),
    (64, 0, 128),
    (192, 0, 128),
    (64, 128, 128),
    (192, 128, 128),
    (0, 64, 0),
    (128, 64, 0),
    (0, 192, 0),
    (128, 192, 0),
    (0, 64, 128),
]
#: The colour of index 255, the "void" border VOC draws around every object.
VOC_BORDER_COLOUR = (224, 224, 192)
VOC_BORDER = 255


def voc_palette_bytes() -> list[int]:
    """A 256-entry PNG palette: VOC's 21 class colours, grey for unused indices, the border at 255."""
    colours = [*VOC_COLOURS, *[(96, 96, 96)] * (255 - len(VOC_COLOURS)), VOC_BORDER_COLOUR]
    return [channel for colour in colours for channel in colour]


def voc_mask_array(height: int, width: int, seed: int, classes: Sequence[int] | None = None) -> np.ndarray:
    """uint8 (H, W) VOC labels: background with two object rectangles of ``classes`` (drawn from 1..20
    by default), each outlined by VOC's 255 border ring, one pixel wide."""
    rng = np.random.default_rng(seed)
    classes = (
        list(classes) if classes is not None else rng.choice(np.arange(1, 21), 2, replace=False).tolist()
    )
    mask = np.zeros((height, width), np.uint8)
    for number, class_id in enumerate(classes):
        top = 1 + number * (height // 2)
        bottom = top + max(3, height // 2 - 2)
        left = int(rng.integers(1, max(2, width // 3)))
        right = int(rng.integers(left + 3, width - 1))
        mask[top:bottom, left:right] = VOC_BORDER
        mask[top + 1 : bottom - 1, left + 1 : right - 1] = class_id
    return mask


def voc_mask_image(ids: np.ndarray, palette: list[int] | None = None) -> Image.Image:
    """ids as a palette ("P") image carrying ``palette`` (default: VOC's), as SegmentationClass holds."""
    image = Image.fromarray(ids, mode="L").convert("P")  # "L" to "P" keeps the values as the indices
    image.putpalette(palette if palette is not None else voc_palette_bytes())
    return image


def write_voc(
    root: Path,
    splits: Mapping[str, Sequence[str]],
    size: tuple[int, int] = (36, 44),
    unlisted: Sequence[str] = ("2008_009999",),
) -> dict[str, np.ndarray]:
    """A VOC year folder at ``root`` (``.../VOCdevkit/VOC2012``) as the VOC2012 devkit lays it out::

        ROOT/Annotations/<name>.xml               (detection annotations; not read)
        ROOT/ImageSets/Main/train.txt             (detection lists; not read)
        ROOT/ImageSets/Segmentation/<list>.txt    one name per line, for each list in ``splits``
        ROOT/JPEGImages/<name>.jpg                photos (also ``unlisted`` ones, as VOC has)
        ROOT/SegmentationClass/<name>.png         palette PNGs: ids 0..20, 255 border
        ROOT/SegmentationObject/<name>.png        instance masks (not read)

    ``splits``: VOC's list names ("train", "val", "trainval", "test") and their image names; a
    ``trainval.txt`` of train and val is added when both are given. Returns {name: uint8 ids}.
    """
    height, width = size
    lists = dict(splits)
    if "train" in lists and "val" in lists and "trainval" not in lists:
        lists["trainval"] = [*lists["train"], *lists["val"]]
    names = list(dict.fromkeys(name for listed in lists.values() for name in listed))
    truth = {}
    for seed, name in enumerate(names):
        ids = voc_mask_array(height, width, seed)
        truth[name] = ids
        save(root / "JPEGImages" / f"{name}.jpg", photo_array(height, width, seed), "JPEG", quality=95)
        save(root / "SegmentationClass" / f"{name}.png", voc_mask_image(ids), "PNG")
        instances = Image.fromarray(((ids > 0) & (ids < VOC_BORDER)).astype(np.uint8), mode="L").convert("P")
        save(root / "SegmentationObject" / f"{name}.png", instances, "PNG")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename></annotation>"
        )
    for seed, name in enumerate(unlisted, start=len(names)):
        save(root / "JPEGImages" / f"{name}.jpg", photo_array(height, width, seed), "JPEG")
    for list_name, listed in lists.items():
        write_list(root / "ImageSets" / "Segmentation" / f"{list_name}.txt", listed)
    write_list(root / "ImageSets" / "Main" / "train.txt", names)
    return truth


def write_list(path: Path, names: Sequence[str]) -> Path:
    """A VOC image set: one name per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in names))
    return path


# -- Cityscapes -------------------------------------------------------------------------------------

#: Every label id a Cityscapes labelIds file holds (license plate, -1, is never drawn into one).
CITYSCAPES_IDS = list(range(34))


def cityscapes_ids_array(
    height: int, width: int, seed: int, ids: Sequence[int] = CITYSCAPES_IDS
) -> np.ndarray:
    """uint8 (H, W) label ids in 2x2 blocks, drawn from ``ids``, the first ``len(ids)`` blocks holding
    each of them once when there is room."""
    rng = np.random.default_rng(seed)
    rows, columns = -(-height // 2), -(-width // 2)
    cells = rng.choice(np.asarray(ids, np.uint8), size=rows * columns)
    shown = min(len(ids), cells.size)
    cells[:shown] = np.asarray(ids, np.uint8)[:shown]
    cells = rng.permutation(cells).reshape(rows, columns)
    return np.kron(cells, np.ones((2, 2), np.uint8))[:height, :width].copy()


def cityscapes_frame(city: str, index: int) -> str:
    """A frame name as Cityscapes writes it: ``<city>_<sequence:06d>_<frame:06d>``."""
    return f"{city}_{index:06d}_{19 + index:06d}"


def write_cityscapes(
    root: Path,
    splits: Mapping[str, Mapping[str, int]],
    size: tuple[int, int] = (32, 64),
    ids: Sequence[int] = CITYSCAPES_IDS,
) -> dict[str, np.ndarray]:
    """Cityscapes' layout at ``root``, as leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unpack::

        ROOT/leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png
        ROOT/gtFine/<split>/<city>/<frame>_gtFine_labelIds.png       8-bit greyscale label ids
        ROOT/gtFine/<split>/<city>/<frame>_gtFine_color.png          (not read)
        ROOT/gtFine/<split>/<city>/<frame>_gtFine_instanceIds.png    16-bit (not read)
        ROOT/gtFine/<split>/<city>/<frame>_gtFine_polygons.json      (not read)

    ``splits``: Cityscapes' split folders ("train", "val", "test") to {city: number of frames}; the
    label ids are drawn from ``ids``. Returns {frame: uint8 label ids}.
    """
    height, width = size
    truth = {}
    seed = 0
    for split, cities in splits.items():
        for city, count in cities.items():
            for index in range(count):
                seed += 1
                frame = cityscapes_frame(city, index)
                labels = cityscapes_ids_array(height, width, seed, ids)
                truth[frame] = labels
                photos = root / "leftImg8bit" / split / city
                save(photos / f"{frame}_leftImg8bit.png", photo_array(height, width, seed), "PNG")
                gt = root / "gtFine" / split / city
                save(gt / f"{frame}_gtFine_labelIds.png", Image.fromarray(labels, mode="L"), "PNG")
                colour = np.asarray(np.random.default_rng(seed).integers(0, 256, (256, 3)), np.uint8)[labels]
                save(gt / f"{frame}_gtFine_color.png", colour, "PNG")
                instances = labels.astype(np.uint16) * 1000 + 7  # id * 1000 + instance, as Cityscapes does
                save(gt / f"{frame}_gtFine_instanceIds.png", Image.fromarray(instances), "PNG")
                polygons = {"imgHeight": height, "imgWidth": width, "objects": []}
                (gt / f"{frame}_gtFine_polygons.json").write_text(json.dumps(polygons))
    return truth
