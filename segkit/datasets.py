"""Bases for datasets of photos and label masks on disk, shared by segkit's datasets and plugins'.

- ``PairedImageDataset``: items from ``(photo, mask)`` file pairs, every pair checked cheaply when
  the dataset is built (unreadable files skipped with a ``SkippedFilesWarning`` or, with
  ``strict=True``, an error; a photo and mask of different sizes always an error). A subclass says
  how raw mask values become labels (``labels_from_mask``); the transform (see
  ``segkit.transforms.build_sample_transform``) resizes, augments and normalises.
- ``Pair``, ``match_pairs`` and ``files_by_stem``: find the pairs in an images folder and a masks
  folder by file stem.
- ``check_root``, ``check_split`` and ``default_augment``: the checks and defaults of the common
  dataset signature ``factory(root=None, split="train", image_size=256, augment=None, **options)``,
  and ``ROOT``, ``SPLIT``, ``IMAGE_SIZE``, ``AUGMENT`` and ``STRICT``: those options declared for a
  factory's option spec (``segkit.component_options``).

A dataset of your own photos and masks::

    class MyDataset(PairedImageDataset):
        def labels_from_mask(self, raw, path):
            return np.where(raw > 0, FOREGROUND, BACKGROUND).astype(np.uint8)

    pairs = match_pairs(root / "images", root / "masks")
    dataset = MyDataset(pairs, build_sample_transform("none", 256, train=False))
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from segkit.component_options import (
    Option,
    Parser,
    boolean,
    choice,
    int_at_least,
    parse_component_options,
)
from segkit.component_options import path as path_parser
from segkit.component_options import text as text_parser
from segkit.errors import DataError, UsageError
from segkit.imageio import check_image_file, read_image, read_mask
from segkit.transforms import (
    FOREGROUND,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_IMAGE_SIZE,
    SampleTransform,
)

__all__ = [
    "AUGMENT",
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZE",
    "ROOT",
    "SPLIT",
    "SPLITS",
    "STRICT",
    "Pair",
    "PairedImageDataset",
    "SkippedFilesWarning",
    "check_root",
    "check_split",
    "default_augment",
    "files_by_stem",
    "match_pairs",
]

SPLITS = ("train", "valid", "test")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
#: How many problem files a warning or error message spells out before summarising the rest.
MAX_LISTED = 20

# -- the options of the common dataset signature, for a factory's option spec ----------------------
ROOT = Option(
    None,
    # Not ``optional(path)``: a folder may be called "none".
    Parser(lambda value: None if value is None else path_parser(value), "a folder"),
    help="the folder holding the data",
)
SPLIT = Option("train", choice(*SPLITS), help="which part of the data")
IMAGE_SIZE = Option(256, int_at_least(MIN_IMAGE_SIZE), help="side of the square images the network sees")


def _augment(value: Any) -> str | None:
    # Not ``optional(text)``: "none" is a pipeline's name here, not a missing value.
    return None if value is None else text_parser(value)


AUGMENT = Option(
    None,
    Parser(_augment, "the name of an augmentation pipeline"),
    help='augmentation pipeline; unset: "default" to train, "none" otherwise',
)
STRICT = Option(False, boolean, help="make unreadable files an error instead of skipping them")


class SkippedFilesWarning(UserWarning):
    """Some listed files were unreadable and left out of a dataset (see ``dataset.skipped``)."""


@dataclass(frozen=True)
class Pair:
    """One sample on disk: its name, photo and label mask."""

    name: str
    image_path: Path
    mask_path: Path


class PairedImageDataset(Dataset):
    """Items built from (photo, label mask) file pairs, checked cheaply when constructed.

    Construction checks every pair without decoding pixels (``segkit.imageio.check_image_file``):
    files exist, are complete images within the pixel limit, and photo and mask have the same size.
    A photo and mask of different sizes is always a ``DataError`` naming both files (the annotation
    belongs to another picture). Any other bad file is an error with ``strict=True``; by default the
    pair is left out, listed in ``self.skipped`` as ``(name, reason)`` and reported in one
    ``SkippedFilesWarning``.

    A file that passes those checks but still fails to decode in ``__getitem__`` (damage inside the
    compressed data) raises ``DataError`` naming it, in every mode: inside a DataLoader worker the
    error reaches the main process with the file named, and training stops rather than silently
    training on a substitute sample.

    Items: ``"image"`` float ``(3, S, S)`` normalised, ``"mask"`` float ``(1, S, S)`` in {0, 1},
    ``"name"``, ``"original_size"`` ``(H, W)`` of the photo on disk (after EXIF rotation), and
    ``"ignore"`` bool ``(1, S, S)`` when ``with_ignore``. Subclasses define ``labels_from_mask``.
    """

    mask_role = "mask"
    #: Recorded in checkpoints so that inference normalises photos the same way.
    normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: SampleTransform,
        strict: bool = False,
        with_ignore: bool = False,
        description: str = "dataset",
    ) -> None:
        self.transform = transform
        self.with_ignore = with_ignore
        self.description = description
        self.skipped: list[tuple[str, str]] = []
        self.pairs: list[Pair] = []
        for pair in pairs:
            try:
                image_size = check_image_file(pair.image_path, "image")
                mask_size = check_image_file(pair.mask_path, self.mask_role)
            except DataError as error:
                if strict:
                    raise
                self.skipped.append((pair.name, str(error)))
                continue
            if image_size != mask_size:
                raise DataError(size_mismatch(pair, image_size, mask_size, self.mask_role))
            self.pairs.append(pair)
        if self.skipped:
            warnings.warn(
                f"{description}: left out {len(self.skipped)} unreadable file pair(s) "
                f"(strict=True makes this an error): {skipped_listing(self.skipped)}",
                SkippedFilesWarning,
                stacklevel=3,
            )
        if not self.pairs:
            raise DataError(f"{description} has no usable image/{self.mask_role} pairs")

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map raw mask values to uint8 BACKGROUND / FOREGROUND / IGNORE_INDEX labels."""
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        return [pair.name for pair in self.pairs]

    def image_path(self, index: int) -> Path:
        return self.pairs[index].image_path

    def mask_path(self, index: int) -> Path:
        return self.pairs[index].mask_path

    def __len__(self) -> int:
        return len(self.pairs)

    def original_mask(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The mask at the photo's own size, for evaluation at original resolution: a ``{0, 1}``
        uint8 ``(H, W)`` array, and the bool ignore array (or None without ``with_ignore``)."""
        pair = self.pairs[index]
        labels = self.labels_from_mask(read_mask(pair.mask_path), pair.mask_path)
        ignore = labels == IGNORE_INDEX
        return (labels == FOREGROUND).astype(np.uint8), (ignore if self.with_ignore else None)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image = read_image(pair.image_path)
        raw = read_mask(pair.mask_path)
        original_size = (image.height, image.width)
        if raw.shape != original_size:
            raise DataError(size_mismatch(pair, original_size, raw.shape, self.mask_role))
        sample = self.transform(image, self.labels_from_mask(raw, pair.mask_path))
        item = {
            "image": sample["image"],
            "mask": sample["mask"],
            "name": pair.name,
            "original_size": original_size,
        }
        if self.with_ignore:
            item["ignore"] = sample["ignore"]
        return item

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}: {len(self)} items, {len(self.skipped)} skipped>"


def match_pairs(images_dir: Path, masks_dir: Path) -> list[Pair]:
    """Pair the photos in ``images_dir`` with the masks in ``masks_dir`` by file stem, sorted by name.

    Raises ``DataError`` listing every photo without a mask and every mask without a photo.
    """
    images = files_by_stem(images_dir, "image")
    masks = files_by_stem(masks_dir, "mask")
    lonely_images = sorted(str(images[stem]) for stem in images.keys() - masks.keys())
    lonely_masks = sorted(str(masks[stem]) for stem in masks.keys() - images.keys())
    if lonely_images or lonely_masks:
        problems = []
        if lonely_images:
            problems.append(f"{len(lonely_images)} image(s) without a mask: {', '.join(lonely_images)}")
        if lonely_masks:
            problems.append(f"{len(lonely_masks)} mask(s) without an image: {', '.join(lonely_masks)}")
        raise DataError(
            f"images in {images_dir} and masks in {masks_dir} do not pair up by file stem; "
            + "; ".join(problems)
        )
    return [Pair(stem, images[stem], masks[stem]) for stem in sorted(images)]


def files_by_stem(folder: Path, role: str) -> dict[str, Path]:
    """Image files in ``folder`` by stem; hidden files and non-image extensions are ignored."""
    if not folder.is_dir():
        raise DataError(f"{role} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"two {role} files share the stem {path.stem!r}: {found[path.stem]} and {path}")
        found[path.stem] = path
    if not found:
        raise DataError(
            f"{role} folder {folder} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return found


def default_augment(augment: str | None, split: str) -> str:
    """The pipeline a dataset uses when none is named: "default" to train, "none" to evaluate."""
    if augment is None:
        return "default" if split == "train" else "none"
    return augment


def check_root(root: str | Path | None, dataset: str) -> Path:
    """``root`` as a ``Path`` to an existing folder: ``UsageError`` when not given, ``DataError`` when
    it is missing or a file."""
    if root is None:
        raise UsageError(f"dataset {dataset!r} needs root=DIR, the folder holding the data")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"{dataset} root folder {root} is not a folder (it is a file)")
    if not root.is_dir():
        raise DataError(f"{dataset} root folder {root} does not exist")
    return root


def check_split(split: Any, dataset: str = "dataset") -> str:
    """``split`` if it is one of ``SPLITS``, else a ``UsageError`` (what the ``SPLIT`` option checks)."""
    return parse_component_options("dataset", dataset, {"split": split}, {"split": SPLIT})["split"]


def size_mismatch(pair: Pair, image_size: Sequence[int], mask_size: Sequence[int], role: str) -> str:
    """The message for a photo and mask of different sizes (sizes as ``(height, width)``)."""
    return (
        f"{role} {pair.mask_path} is {mask_size[1]}x{mask_size[0]} but its image {pair.image_path} is "
        f"{image_size[1]}x{image_size[0]} (width x height); they must be the same size"
    )


def skipped_listing(skipped: Sequence[tuple[str, str]]) -> str:
    """``name: reason`` for the first ``MAX_LISTED`` skipped files, and how many more there are."""
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:MAX_LISTED])
    if len(skipped) > MAX_LISTED:
        shown += f"; and {len(skipped) - MAX_LISTED} more (see dataset.skipped)"
    return shown
