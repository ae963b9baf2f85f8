"""Dataset "cvat": CVAT's "Segmentation mask 1.1" export, read in place (unzip it; nothing to convert).

    ROOT/labelmap.txt                         "name:r,g,b:parts:actions", one class a line
    ROOT/ImageSets/Segmentation/default.txt   image names without extension (one list per subset)
    ROOT/SegmentationClass/<name>.png         class masks: each pixel the colour of its class
    ROOT/SegmentationObject/<name>.png        instance masks (not used: segkit segments classes)
    ROOT/JPEGImages/<name>.jpg                the photos, when exported with "Save images"

Classes and their ids are labelmap.txt's lines in file order; CVAT writes the background first (black)
and the other labels after it by name. Without a black class and without one named "background" (any
case), a black "background" class is put first, as CVAT does; without labelmap.txt the classes are
Pascal VOC's 21 in VOC's colours, the VOC border colour (224, 224, 192) ignored. Masks are colour
images (RGB, or palette PNGs whose palette holds the colours); a colour that labelmap.txt does not name
is a ``DataError`` naming the mask and the colour. A greyscale mask holds class ids (line numbers of
labelmap.txt, from 0; 255 ignored), as CVAT imports them. An image CVAT lists without a mask is all
background: CVAT writes no mask for an image without shapes.

Task (``task``): "auto" is binary when labelmap.txt names one class besides the background (the
foreground, 1), multiclass otherwise; "multiclass" keeps even two classes as two.

Splits: subset lists named val, valid or validation are ``valid`` and test is ``test`` (any case);
every other list (train, default, ...) is the training pool, from which a missing ``valid`` or
``test`` is held out at random like the folder dataset's (``valid_fraction``, ``test_fraction``,
``split_seed``). Without ImageSets/Segmentation lists, every mask in SegmentationClass is listed.
Photos are found by name in JPEGImages/ (``images=DIR`` for an export made without images) with any
image extension; a listed name without a photo is a ``DataError`` naming it.

Masks are turned into class-id masks once, in the data folder's cache (``segkit.datasets.
rendered_masks``, rendered again when labelmap.txt, a mask or a photo changes); the dataset is then a
``PairedImageDataset`` with the folder dataset's file checks.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

import segkit
from segkit.component_options import Option, choice, optional, parse_component_options
from segkit.component_options import path as path_parser
from segkit.data.transforms import IGNORE_INDEX, build_sample_transform
from segkit.datasets import (
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    PAIRED_DATASET_OPTIONS,
    SPLITS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    class_ids_from_mask,
    default_augment,
    rendered_masks,
    shown_size,
)
from segkit.errors import DataError
from segkit_builtin.folder import OPTIONS as FOLDER_OPTIONS
from segkit_builtin.folder import random_split

LABELMAP = "labelmap.txt"
SUBSETS = Path("ImageSets") / "Segmentation"
CLASS_MASKS = "SegmentationClass"
PHOTOS = "JPEGImages"
#: Subset list names (lower case) that are segkit's valid and test splits; any other is training.
SUBSET_SPLITS = {"val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
BLACK = (0, 0, 0)
VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor"
).split()
VOC_BORDER = (224, 224, 192)
#: Bump when what a render writes changes, so that older renders are not reused.
RENDERER = "cvat-1"
#: EXIF orientations that turn a photo by 90 or 270 degrees (its shown width is its stored height).

OPTIONS = {
    **PAIRED_DATASET_OPTIONS,
    "valid_fraction": FOLDER_OPTIONS["valid_fraction"],
    "test_fraction": FOLDER_OPTIONS["test_fraction"],
    "split_seed": FOLDER_OPTIONS["split_seed"],
    "strict": STRICT,
    "images": Option(None, optional(path_parser), help="folder of the photos (default: ROOT/JPEGImages)"),
    "task": Option(
        "auto",
        choice("auto", "multiclass"),
        help="auto: binary with one class besides the background, else multiclass",
    ),
}


def voc_colour(index: int) -> tuple[int, int, int]:
    """Pascal VOC's colour of class ``index``: its bits spread over the channels, high bits first."""
    colour = [0, 0, 0]
    for shift in range(7, -1, -1):
        for channel in range(3):
            colour[channel] |= ((index >> channel) & 1) << shift
        index >>= 3
    return colour[0], colour[1], colour[2]


class CvatDataset(PairedImageDataset):
    """Photos and the class-id masks rendered from a CVAT export's colour masks."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return class_ids_from_mask(raw, path, len(self.class_names) + (self.task == "binary"))


def build_cvat(root: str | Path | None = None, **options: Any) -> CvatDataset:
    """A CVAT "Segmentation mask 1.1" export in ROOT (see the module docstring for options and rules)."""
    parsed = parse_component_options("dataset", "cvat", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "cvat")
    split = parsed["split"]
    classes, colours = read_labelmap(root / LABELMAP)
    palette = [None] * len(classes)
    for colour, class_id in colours.items():
        if class_id < len(classes):
            palette[class_id] = list(colour)
    # binary: one class besides a background that comes first (its id 0 is binary's background)
    background_first = palette[0] == list(BLACK) or classes[0].lower() == "background"
    task = "binary" if parsed["task"] == "auto" and len(classes) == 2 and background_first else "multiclass"
    subsets = read_subsets(root)
    images = parsed["images"] if parsed["images"] is not None else root / PHOTOS
    if not images.is_absolute() and not images.exists() and (root / images).exists():
        images = root / images
    photos = find_photos(root, images, sorted({name for names in subsets.values() for name in names}))

    masks = root / CLASS_MASKS
    names = sorted(photos)
    sources = [path for path in [root / LABELMAP] if path.is_file()]
    sources += [masks / f"{name}.png" for name in names if (masks / f"{name}.png").is_file()]
    sources += [photos[name] for name in names if not (masks / f"{name}.png").is_file()]

    def render(name: str) -> np.ndarray:
        return render_mask(masks / f"{name}.png", photos[name], colours, classes)

    rendered = rendered_masks(
        root, sources, RENDERER, {"colours": sorted(colours.items()), "photos": str(images)}, names, render
    )
    chosen = choose_split(
        subsets, split, parsed["valid_fraction"], parsed["test_fraction"], parsed["split_seed"]
    )
    pairs = [Pair(name, photos[name], rendered[name][0]) for name in sorted(chosen)]
    description = f"cvat export {root} (split {split!r}; {task}: {', '.join(classes)})"
    if not pairs:
        raise DataError(f"{description} is empty: no image is listed for it")
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    return CvatDataset(
        pairs,
        transform,
        strict=parsed["strict"],
        description=description,
        task=task,
        class_names=classes[1:] if task == "binary" else classes,
        palette=palette if task == "multiclass" and None not in palette else None,
        data_root=root,  # the file index beside the export, wherever the masks were rendered
    )


def read_labelmap(path: Path) -> tuple[list[str], dict[tuple[int, int, int], int]]:
    """Class names in id order and ``{colour: class id}`` from labelmap.txt (VOC's without one)."""
    if not path.is_file():
        colours = {voc_colour(index): index for index in range(len(VOC_CLASSES))}
        return list(VOC_CLASSES), {**colours, VOC_BORDER: IGNORE_INDEX}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    labels: list[tuple[str, tuple[int, int, int] | None]] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split(":")
        name = fields[0].strip()
        if len(fields) < 2 or not name:
            raise DataError(f"{path} line {number}: {text!r} is not 'name:r,g,b:parts:actions'")
        if name in (label for label, _ in labels):
            raise DataError(f"{path} line {number}: class {name!r} is named twice")
        labels.append((name, _colour(fields[1], path, number)))
    if not labels:
        raise DataError(f"{path} names no class")
    if all(colour is None for _, colour in labels):  # CVAT colours them as VOC does, by position
        labels = [(name, voc_colour(index)) for index, (name, _) in enumerate(labels)]
    if all(colour != BLACK and name.lower() != "background" for name, colour in labels):
        labels.insert(0, ("background", BLACK))
    colours: dict[tuple[int, int, int], int] = {}
    for index, (name, colour) in enumerate(labels):
        if colour in colours:
            other = labels[colours[colour]][0]
            raise DataError(f"{path}: classes {other!r} and {name!r} have the same colour {colour}")
        if colour is not None:
            colours[colour] = index
    return [name for name, _ in labels], colours


def _colour(text: str, path: Path, number: int) -> tuple[int, int, int] | None:
    if not text.strip():
        return None
    try:
        values = tuple(int(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise DataError(f"{path} line {number}: colour {text!r} is not r,g,b (three numbers 0-255)")
    return values[0], values[1], values[2]


def read_subsets(root: Path) -> dict[str, list[str]]:
    """``{subset: image names}`` from ImageSets/Segmentation/*.txt; without lists, every mask's name
    as the subset "default"."""
    lists = sorted((root / SUBSETS).glob("*.txt")) if (root / SUBSETS).is_dir() else []
    if not lists:
        masks = root / CLASS_MASKS
        if not masks.is_dir():
            raise DataError(
                f"cvat export {root} has neither {SUBSETS}/*.txt nor {CLASS_MASKS}/; is it a CVAT "
                "'Segmentation mask 1.1' export (unzipped)?"
            )
        return {
            "default": sorted(
                path.relative_to(masks).with_suffix("").as_posix() for path in masks.rglob("*.png")
            )
        }
    subsets = {}
    for path in lists:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or "\\" in name:
                raise DataError(f"subset list {path}: {name!r} is not an image name inside the export")
        subsets[path.stem] = names
    return subsets


def choose_split(
    subsets: dict[str, list[str]], split: str, valid_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """The names of ``split``: valid and test lists as they are, the rest the training pool, from which
    a split without a list is held out at random (``random_split``, the folder dataset's)."""
    listed: dict[str, set[str]] = {"valid": set(), "test": set()}
    pool: set[str] = set()
    for subset, names in subsets.items():
        target = SUBSET_SPLITS.get(subset.lower())
        (listed[target] if target else pool).update(names)
    pool -= listed["valid"] | listed["test"]
    parts = random_split(
        sorted(pool),
        0.0 if listed["valid"] else valid_fraction,
        0.0 if listed["test"] else test_fraction,
        seed,
    )
    chosen = dict(zip(SPLITS, parts, strict=True))
    for name in ("valid", "test"):
        chosen[name] = sorted(listed[name]) or chosen[name]
    return chosen[split]


def find_photos(root: Path, images: Path, names: list[str]) -> dict[str, Path]:
    """``{name: photo}`` for every listed name: ``images/<name>.<any image extension>``."""
    if not images.is_dir():
        raise DataError(
            f"cvat export {root} has no photo folder {images}: export with 'Save images', or give "
            "images=DIR, the folder holding the photos"
        )
    found, missing = {}, []
    listings: dict[Path, dict[str, Path]] = {}
    for name in names:
        folder = (images / name).parent
        if folder not in listings:
            listings[folder] = {
                path.stem: path
                for path in sorted(folder.iterdir() if folder.is_dir() else [])
                if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            }
        photo = listings[folder].get(PurePosixPath(name).name)
        if photo is None:
            missing.append(name)
        else:
            found[name] = photo
    if missing:
        shown = ", ".join(missing[:MAX_LISTED]) + (", ..." if len(missing) > MAX_LISTED else "")
        raise DataError(
            f"cvat export {root}: {len(missing)} listed image(s) have no photo in {images}: {shown}"
        )
    return found


def render_mask(
    mask: Path, photo: Path, colours: dict[tuple[int, int, int], int], classes: list[str]
) -> np.ndarray:
    """The class ids of one image from its colour mask (all background without one), checked against
    labelmap.txt's colours and the photo's size."""
    size = shown_size(photo)
    if not mask.is_file():  # CVAT writes no mask for an image without shapes
        return np.zeros(size or (1, 1), np.uint8)
    try:
        with Image.open(mask) as image:
            image.load()
            mode = image.mode
            if mode in ("P", "PA", "RGB", "RGBA"):
                pixels = np.asarray(image.convert("RGB"))
            elif mode in ("L", "LA", "1"):
                pixels = np.asarray(image.convert("L"))
            elif mode in ("I", "I;16", "I;16B"):
                pixels = np.asarray(image)
            else:
                raise DataError(
                    f"CVAT mask {mask} has image mode {mode!r}; expected colour (RGB or palette) or grey"
                )
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read CVAT mask {mask}: {error}") from None
    if size is not None and pixels.shape[:2] != size:
        raise DataError(
            f"CVAT mask {mask} is {pixels.shape[1]}x{pixels.shape[0]} but its photo {photo} is "
            f"{size[1]}x{size[0]} (width x height)"
        )
    if pixels.ndim == 2:  # greyscale: class ids, as CVAT imports them
        return class_ids_from_mask(pixels.astype(np.int64), mask, len(classes))
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    found, inverse = np.unique(packed.ravel(), return_inverse=True)
    ids = np.empty(len(found), np.uint8)
    for index, value in enumerate(found.tolist()):
        colour = (value >> 16, (value >> 8) & 255, value & 255)
        if colour not in colours:
            count = int(np.count_nonzero(inverse == index))
            named = ", ".join(
                f"{classes[known] if known < len(classes) else 'ignored'} {known_colour}"
                for known_colour, known in colours.items()
            )
            raise DataError(
                f"CVAT mask {mask} holds the colour {colour} ({count} pixel(s)), which {LABELMAP} names "
                f"for no class; its colours: {named}"
            )
        ids[index] = colours[colour]
    return ids[inverse].reshape(packed.shape)


@segkit.hookimpl
def register_datasets(register):
    register(
        "cvat",
        build_cvat,
        description="CVAT 'Segmentation mask 1.1' export: classes from labelmap.txt, colour masks in "
        "SegmentationClass/, photos in JPEGImages/",
        options=OPTIONS,
    )
