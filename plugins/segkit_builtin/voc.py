"""Dataset "voc": Pascal VOC's segmentation data (Everingham et al., IJCV 2010), read in place.

    ROOT/JPEGImages/<name>.jpg                     photos
    ROOT/SegmentationClass/<name>.png              palette PNGs: class ids 0..20, 255 = border (ignored)
    ROOT/ImageSets/Segmentation/train.txt          one name per line: the train split
    ROOT/ImageSets/Segmentation/val.txt            the valid split

``ROOT`` is a year's folder (``VOCdevkit/VOC2012``). The folder above it (``VOCdevkit``, or the folder
the tar file was unpacked in) is accepted too when it holds exactly one year: the dataset's
description (in every message about its files) names the year folder it found there.

Splits: ``train`` is train.txt, ``valid`` is VOC's ``val`` (val.txt). ``test`` is test.txt where a year
ships labels for it (VOC2007's test set does); VOC2012's test labels are not public (its evaluation
server scores them), so without a test.txt, or with one whose photos have no masks (the VOC2012 test
download), ``split="test"`` is a ``DataError`` naming the valid split instead. A name listed in a split
file whose photo or mask is missing is a bad file like any other: left out with a warning, or with
``strict=True`` an error naming the file.

Masks are read as palette **indices**, not colours (``segkit.data.imageio.read_mask``): the 21
classes ``CLASSES`` (background and VOC's 20 objects) are ids 0..20 and 255 is the "void" border VOC
draws around objects, ignored by losses and metrics. Any other index is a ``DataError`` naming the
file and the value, found when the dataset is built. Overlays use VOC's own colours (``PALETTE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import segkit
from segkit.component_options import parse_component_options
from segkit.data.transforms import build_sample_transform
from segkit.datasets import (
    MAX_LISTED,
    PAIRED_DATASET_OPTIONS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    class_ids_from_mask,
    default_augment,
    folder_listing,
)
from segkit.errors import DataError, UsageError
from segkit_builtin.oxford_pet import read_split_file

#: The 20 object classes of the VOC2012 devkit (its ``VOCopts.classes``), after background (id 0).
CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
PHOTOS, MASKS, LISTS = "JPEGImages", "SegmentationClass", Path("ImageSets", "Segmentation")
#: segkit's split names and the list file (without ".txt") VOC keeps each in.
SPLIT_LISTS = {"train": "train", "valid": "val", "test": "test"}
OPTIONS = {**PAIRED_DATASET_OPTIONS, "strict": STRICT}


def voc_colour(index: int) -> tuple[int, int, int]:
    """The colour VOC's masks give palette index ``index``: the devkit's ``VOClabelcolormap.m``
    spreads the index's bits, three at a time from the lowest, over red, green and blue from each
    byte's top bit down (1 is dark red (128, 0, 0); 255, the border, is (224, 224, 192))."""
    red = green = blue = 0
    for bit in range(8):
        red |= ((index >> (3 * bit)) & 1) << (7 - bit)
        green |= ((index >> (3 * bit + 1)) & 1) << (7 - bit)
        blue |= ((index >> (3 * bit + 2)) & 1) << (7 - bit)
    return red, green, blue


PALETTE = [list(voc_colour(index)) for index in range(len(CLASSES))]


class VocDataset(PairedImageDataset):
    """Pascal VOC photos and their class masks (see the module docstring)."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return class_ids_from_mask(raw, path, len(CLASSES))


def build_voc(root: str | Path | None = None, **options: Any) -> VocDataset:
    """Pascal VOC's segmentation split ``split`` from ROOT (a year's folder, or the one above it).

    Options (``OPTIONS``): ``split``, ``image_size``, ``augment`` (defaults to "default" for train and
    "none" otherwise), ``strict`` (True makes unreadable or missing files an error instead of leaving
    them out with a warning)."""
    parsed = parse_component_options("dataset", "voc", {"root": root, **options}, OPTIONS)
    given = check_root(parsed["root"], "voc")
    root = year_folder(given)
    split = parsed["split"]
    description = f"voc {root} split {split!r}" + (f" (found in root {given})" if root != given else "")
    split_file = root / LISTS / f"{SPLIT_LISTS[split]}.txt"
    if not split_file.is_file():
        raise DataError(missing_split_file(split_file, split))
    pairs = [
        Pair(name, root / PHOTOS / f"{name}.jpg", root / MASKS / f"{name}.png")
        for name in read_split_file(split_file)
    ]
    if split == "test" and not any(pair.mask_path.is_file() for pair in pairs):
        raise DataError(
            f"{description}: none of the {len(pairs)} photos {split_file} lists has a mask in "
            f"{root / MASKS}: VOC2012's test labels are not public (its evaluation server scores them); "
            "the labelled split to score is valid (val.txt)"
        )
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    return VocDataset(
        pairs,
        transform,
        strict=parsed["strict"],
        description=description,
        task="multiclass",
        class_names=CLASSES,
        palette=PALETTE,
    )


def year_folder(root: Path) -> Path:
    """``root`` when it holds VOC's folders; else the one year folder (``VOC2012``) under it or under
    its ``VOCdevkit/``. Several years are a ``UsageError`` asking for one; a folder missing, a
    ``DataError`` saying what its parent holds and what was expected."""
    years = []
    if not any((root / name).is_dir() for name in (PHOTOS, MASKS, "ImageSets")):
        years = sorted(
            folder
            for folder in (*root.glob("VOC*"), *root.glob("VOCdevkit/VOC*"))
            if (folder / PHOTOS).is_dir() or (folder / MASKS).is_dir()
        )
    if len(years) > 1:
        raise UsageError(
            f"voc root {root} holds several VOC years ({', '.join(str(year) for year in years)}); "
            f"did you mean root={years[-1]}?"
        )
    folder = years[0] if years else root
    _check_layout(folder)
    return folder


def _check_layout(root: Path) -> None:
    """A ``DataError`` for the first of VOC's folders missing from ``root``, saying what it holds and,
    for a root inside a VOC year's folder (``VOC2012/JPEGImages``), asking whether the year was meant."""
    for folder in (root / PHOTOS, root / MASKS, root / LISTS):
        if folder.is_dir():
            continue
        message = (
            f"voc folder {folder} does not exist; {folder.parent} holds {folder_listing(folder.parent)}; "
            f"the voc dataset expects {PHOTOS}/, {MASKS}/ and {LISTS}/ in a year's folder (VOCdevkit/VOC2012)"
        )
        year = next((parent for parent in list(root.parents)[:2] if (parent / PHOTOS).is_dir()), None)
        if year is not None:
            message += f"; did you mean root={year}?"
        raise DataError(message)


def missing_split_file(split_file: Path, split: str) -> str:
    """Why a split cannot be read: its list file is missing (for test, because VOC2012 has none)."""
    held = sorted(path.name for path in split_file.parent.glob("*.txt"))
    shown = ", ".join([*held[:MAX_LISTED], *(["..."] if len(held) > MAX_LISTED else [])]) or "no lists"
    message = f"voc split file {split_file} does not exist ({split_file.parent} holds {shown})"
    if split == "test":
        message += (
            "; VOC2012 has no labelled test split (its test labels are not public: its evaluation server "
            "scores them); the labelled split to score is valid (val.txt)"
        )
    return message


@segkit.hookimpl
def register_datasets(register):
    register(
        "voc",
        build_voc,
        description="Pascal VOC (VOCdevkit/VOC2012 layout): 21 classes from SegmentationClass/ palette "
        "masks, 255 ignored; valid = val.txt",
        # Always multi-class: the default loss (bce_dice) is binary, so a plain `segkit run` would be refused.
        defaults={"loss": "ce_dice"},
        options=OPTIONS,
    )
