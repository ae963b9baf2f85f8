"""Dataset "cityscapes": the Cityscapes street scenes (Cordts et al., CVPR 2016), fine labels, read in place.

    ROOT/leftImg8bit/train/<city>/<city>_<seq>_<frame>_leftImg8bit.png      photos
    ROOT/gtFine/train/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       label ids, 8-bit greyscale
    ROOT/leftImg8bit/val/...   ROOT/gtFine/val/...                           the valid split
    ROOT/leftImg8bit/test/...  ROOT/gtFine/test/...                          the test split

``ROOT`` is the folder holding ``leftImg8bit/`` and ``gtFine/`` (where leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip unpack). Splits: ``train``, ``valid`` (Cityscapes' ``val``) and ``test``, as the
dataset defines them. A photo pairs with the ``*_gtFine_labelIds.png`` of the same city and frame; the
other files of gtFine (``_color.png``, ``_instanceIds.png``, ``_polygons.json``, a ``_labelTrainIds.png``
made by cityscapesScripts) are not read. A photo without its labels, or labels without their photo,
is a ``DataError`` listing them.

The label ids become the 19 training classes of the official table (``LABELS``, cityscapesScripts'
``helpers/labels.py``): each id with a trainId 0..18 is that class, every other id (the void ones,
parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, and license plate, id -1,
which an unsigned 8-bit file holds as 255) is ignored (255). A value that is no label id (34..254, or a
16-bit file such as an ``_instanceIds.png``) is a ``DataError`` naming the file and the value, found
when the dataset is built. Class names and overlay colours are the training classes' own.

The official test split's labels are withheld (the benchmark server scores test predictions): its
gtFine/test masks hold no training id, every pixel unlabelled. A split whose masks all hold no training
id cannot be scored or trained on, so building it is a ``DataError`` saying so (for test, naming the
valid split instead); a test split of your own with labels works like the others.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import segkit
from segkit.component_options import parse_component_options
from segkit.data.transforms import IGNORE_INDEX, build_sample_transform
from segkit.datasets import (
    MAX_LISTED,
    PAIRED_DATASET_OPTIONS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    default_augment,
    folder_listing,
)
from segkit.errors import DataError


class Label(NamedTuple):
    name: str
    id: int
    train_id: int
    colour: tuple[int, int, int]


#: Cityscapes' labels: name, id (the value in *_labelIds.png), trainId (255 = ignored) and colour,
#: copied from ``labels`` in cityscapesScripts' ``cityscapesscripts/helpers/labels.py``
#: (https://github.com/mcordts/cityscapesScripts), leaving out its category and instance columns.
LABELS = [
    Label("unlabeled", 0, 255, (0, 0, 0)),
    Label("ego vehicle", 1, 255, (0, 0, 0)),
    Label("rectification border", 2, 255, (0, 0, 0)),
    Label("out of roi", 3, 255, (0, 0, 0)),
    Label("static", 4, 255, (0, 0, 0)),
    Label("dynamic", 5, 255, (111, 74, 0)),
    Label("ground", 6, 255, (81, 0, 81)),
    Label("road", 7, 0, (128, 64, 128)),
    Label("sidewalk", 8, 1, (244, 35, 232)),
    Label("parking", 9, 255, (250, 170, 160)),
    Label("rail track", 10, 255, (230, 150, 140)),
    Label("building", 11, 2, (70, 70, 70)),
    Label("wall", 12, 3, (102, 102, 156)),
    Label("fence", 13, 4, (190, 153, 153)),
    Label("guard rail", 14, 255, (180, 165, 180)),
    Label("bridge", 15, 255, (150, 100, 100)),
    Label("tunnel", 16, 255, (150, 120, 90)),
    Label("pole", 17, 5, (153, 153, 153)),
    Label("polegroup", 18, 255, (153, 153, 153)),
    Label("traffic light", 19, 6, (250, 170, 30)),
    Label("traffic sign", 20, 7, (220, 220, 0)),
    Label("vegetation", 21, 8, (107, 142, 35)),
    Label("terrain", 22, 9, (152, 251, 152)),
    Label("sky", 23, 10, (70, 130, 180)),
    Label("person", 24, 11, (220, 20, 60)),
    Label("rider", 25, 12, (255, 0, 0)),
    Label("car", 26, 13, (0, 0, 142)),
    Label("truck", 27, 14, (0, 0, 70)),
    Label("bus", 28, 15, (0, 60, 100)),
    Label("caravan", 29, 255, (0, 0, 90)),
    Label("trailer", 30, 255, (0, 0, 110)),
    Label("train", 31, 16, (0, 80, 100)),
    Label("motorcycle", 32, 17, (0, 0, 230)),
    Label("bicycle", 33, 18, (119, 11, 32)),
    Label("license plate", -1, -1, (0, 0, 142)),
]
#: The 19 training classes in trainId order, and their colours.
TRAINING = sorted((label for label in LABELS if 0 <= label.train_id < IGNORE_INDEX), key=lambda x: x.train_id)
CLASSES = [label.name for label in TRAINING]
PALETTE = [list(label.colour) for label in TRAINING]
#: An id's -1 as an unsigned byte: license plate, should a labelIds file hold it.
UNSIGNED_MINUS_ONE = 255
# Marks the byte values that are no Cityscapes label id in the lookup table (never a training id).
_NOT_AN_ID = 254


def _train_ids() -> np.ndarray:
    """The trainId of every byte value, ``_NOT_AN_ID`` for values that are no label id."""
    table = np.full(256, _NOT_AN_ID, dtype=np.uint8)
    for label in LABELS:
        table[label.id if label.id >= 0 else UNSIGNED_MINUS_ONE] = (
            label.train_id if 0 <= label.train_id < IGNORE_INDEX else IGNORE_INDEX
        )
    return table


TRAIN_IDS = _train_ids()
SPLIT_FOLDERS = {"train": "train", "valid": "val", "test": "test"}
PHOTO_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
OPTIONS = {**PAIRED_DATASET_OPTIONS, "strict": STRICT}


class CityscapesDataset(PairedImageDataset):
    """Cityscapes photos with their label ids as the 19 training classes (see the module docstring)."""

    def __init__(self, *args: Any, split: str, **kwargs: Any) -> None:
        self._unlabelled = 0  # masks holding no training id, counted as the base checks their values
        super().__init__(*args, **kwargs)
        if self._unlabelled == len(self.pairs):
            withheld = (
                ": the official test split's labels are withheld (its gtFine/test masks are placeholders; "
                "the benchmark server scores test predictions), val (split valid) is the labelled split to "
                "score"
                if split == "test"
                else ""
            )
            raise DataError(
                f"{self.description}: none of its {len(self.pairs)} labelIds masks holds a training id "
                f"(every pixel is unlabelled or ignored), so it can be neither trained on nor "
                f"scored{withheld}"
            )

    def check_mask_values(self, values: np.ndarray, path: Path) -> None:
        if (self.labels_from_mask(values.reshape(1, -1), path) == IGNORE_INDEX).all():
            self._unlabelled += 1

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.dtype != np.uint8:
            raise DataError(
                f"labelIds mask {path} is a 16-bit image (values up to {int(raw.max())}); Cityscapes' "
                f"*{LABEL_SUFFIX} files are 8-bit greyscale (an *_instanceIds.png is not one)"
            )
        labels = TRAIN_IDS[raw]
        bad = np.unique(raw[labels == _NOT_AN_ID])
        if bad.size:
            listed = ", ".join(str(value) for value in bad[:MAX_LISTED].tolist())
            raise DataError(
                f"labelIds mask {path} holds value(s) {{{listed}}}, which are no Cityscapes label ids "
                f"(0..33, and {UNSIGNED_MINUS_ONE} for -1, license plate)"
            )
        return labels


def build_cityscapes(root: str | Path | None = None, **options: Any) -> CityscapesDataset:
    """Cityscapes' split ``split`` from ROOT (the folder holding leftImg8bit/ and gtFine/).

    Options (``OPTIONS``): ``split``, ``image_size``, ``augment`` (defaults to "default" for train and
    "none" otherwise), ``sampling`` (the engine's crops: Cityscapes photos are 2048x1024), ``strict``
    (True makes unreadable files an error instead of leaving them out with a warning)."""
    parsed = parse_component_options("dataset", "cityscapes", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "cityscapes")
    split = parsed["split"]
    photos_dir = root / "leftImg8bit" / SPLIT_FOLDERS[split]
    labels_dir = root / "gtFine" / SPLIT_FOLDERS[split]
    for folder in (photos_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(missing_folder(root, folder))
    photos = by_frame(photos_dir, PHOTO_SUFFIX)
    labels = by_frame(labels_dir, LABEL_SUFFIX)
    check_pairing(photos, labels, photos_dir, labels_dir)
    pairs = [Pair(frame, photos[frame], labels[frame]) for frame in sorted(photos)]
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    return CityscapesDataset(
        pairs,
        transform,
        split=split,
        strict=parsed["strict"],
        description=f"cityscapes {root} split {split!r}",
        task="multiclass",
        class_names=CLASSES,
        palette=PALETTE,
    )


def by_frame(folder: Path, suffix: str) -> dict[str, Path]:
    """``folder/<city>/<frame><suffix>`` files by frame name (``aachen_000000_000019``)."""
    found: dict[str, Path] = {}
    for city in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
        with os.scandir(city) as entries:
            for entry in entries:
                if entry.name.endswith(suffix) and not entry.name.startswith("."):
                    frame = entry.name[: -len(suffix)]
                    if frame in found:
                        raise DataError(f"two files of frame {frame!r}: {found[frame]} and {entry.path}")
                    found[frame] = Path(entry.path)
    return found


def check_pairing(
    photos: dict[str, Path], labels: dict[str, Path], photos_dir: Path, labels_dir: Path
) -> None:
    """A ``DataError`` when the split holds no photo, or photos and labels do not pair up by frame."""
    if not photos:
        raise DataError(
            f"cityscapes folder {photos_dir} holds no <city>/*{PHOTO_SUFFIX} photos "
            f"(it holds {folder_listing(photos_dir)})"
        )
    problems = []
    for what, files, wanted in (
        ("photo(s) without labels", [photos[f] for f in photos.keys() - labels.keys()], LABEL_SUFFIX),
        ("labels without a photo", [labels[f] for f in labels.keys() - photos.keys()], PHOTO_SUFFIX),
    ):
        if files:
            listed = ", ".join(str(path) for path in sorted(files)[:MAX_LISTED])
            more = ", ..." if len(files) > MAX_LISTED else ""
            problems.append(f"{len(files)} {what} (*{wanted} of the same frame): {listed}{more}")
    if problems:
        raise DataError(
            f"cityscapes photos in {photos_dir} and labels in {labels_dir} do not pair up; "
            + "; ".join(problems)
        )


def missing_folder(root: Path, folder: Path) -> str:
    holder = folder.parent if folder.parent.is_dir() else root
    message = (
        f"cityscapes folder {folder} does not exist; {holder} holds {folder_listing(holder)}; the "
        "cityscapes dataset expects leftImg8bit/{train,val,test}/<city>/ and gtFine/{train,val,test}/<city>/ "
        "in its root"
    )
    if root.name in ("leftImg8bit", "gtFine") or root.parent.name in ("leftImg8bit", "gtFine"):
        top = root.parent if root.name in ("leftImg8bit", "gtFine") else root.parent.parent
        message += f"; did you mean root={top}?"
    return message


@segkit.hookimpl
def register_datasets(register):
    register(
        "cityscapes",
        build_cityscapes,
        description="Cityscapes (leftImg8bit/ + gtFine/ labelIds): the 19 training classes, other ids "
        "ignored; valid = val",
        # Always multi-class: the default loss (bce_dice) is binary, so a plain `segkit run` would be refused.
        defaults={"loss": "ce_dice"},
        options=OPTIONS,
    )
