"""Dataset "folder": your own photos and binary masks in a directory, matched by file stem.

Layouts (``ROOT`` is the ``root`` option)::

    ROOT/images/cat1.jpg   ROOT/masks/cat1.png            one pool, split at random (seeded)
    ROOT/train/images/...  ROOT/train/masks/...           ready-made splits: train/, valid/, test/
    ROOT/valid/images/...  ROOT/valid/masks/...

When any of ``train/``, ``valid/``, ``test/`` exists, those subfolders are the splits. Otherwise the
pool is split at random with ``valid_fraction`` and ``test_fraction`` (each rounded to whole images,
at least one image when the fraction is positive) using ``split_seed``, identically on every
machine. Images and masks pair by file stem (``cat1.jpg`` with ``cat1.png``); files in the folders
whose extension is not an image's, and hidden files, are ignored. Masks are 8-bit or palette PNGs
holding 0/1 or 0/255 (palette indices, not colours): 1 or 255 is foreground.

This module also holds ``PairedImageDataset``, the base the Oxford-IIIT Pet dataset shares.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

import segkit
from segkit.errors import DataError, UsageError
from segkit.imageio import check_image_file, read_image, read_mask
from segkit.transforms import (
    BACKGROUND,
    FOREGROUND,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SampleTransform,
    build_sample_transform,
)

SPLITS = ("train", "valid", "test")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
#: How many problem files a warning or error message spells out before summarising the rest.
MAX_LISTED = 20


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
                raise DataError(_size_mismatch(pair, image_size, mask_size, self.mask_role))
            self.pairs.append(pair)
        if self.skipped:
            warnings.warn(
                f"{description}: left out {len(self.skipped)} unreadable file pair(s) "
                f"(strict=True makes this an error): {_listing(self.skipped)}",
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
            raise DataError(_size_mismatch(pair, original_size, raw.shape, self.mask_role))
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


class FolderDataset(PairedImageDataset):
    """Photos and 0/1 or 0/255 masks from a folder (see the module docstring)."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        values = np.unique(raw)
        if set(values.tolist()) <= {0, 1}:
            return raw.astype(np.uint8)
        if set(values.tolist()) <= {0, 255}:
            return np.where(raw == 255, FOREGROUND, BACKGROUND).astype(np.uint8)
        raise DataError(
            f"mask {path} holds values {_values(values)}; folder masks must be 0/1 or 0/255 "
            "(8-bit or palette PNG)"
        )


def build_folder(
    root: str | Path | None = None,
    split: str = "train",
    image_size: int = 256,
    augment: str | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    strict: bool = False,
    **unknown: Any,
) -> FolderDataset:
    """Photos in ROOT/images and masks in ROOT/masks (or train/ valid/ test/ subfolders), by stem.

    ``augment`` defaults to "default" for train and "none" otherwise. Without split subfolders the
    pool is split at random: ``valid_fraction`` and ``test_fraction`` of it, seeded by ``split_seed``.
    """
    reject_unknown_options(unknown, "folder", build_folder)
    root = check_root(root, "folder")
    check_split(split)
    for option, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            raise UsageError(f"folder option {option} must be a number in [0, 1), got {fraction!r}")
    if valid_fraction + test_fraction >= 1:
        raise UsageError(
            f"folder options valid_fraction ({valid_fraction}) + test_fraction ({test_fraction}) must be "
            "below 1, leaving images to train on"
        )
    transform = build_sample_transform(default_augment(augment, split), image_size, train=split == "train")

    split_dirs = [root / name for name in SPLITS if (root / name).is_dir()]
    if split_dirs:
        folder = root / split
        if not folder.is_dir():
            raise DataError(
                f"folder dataset {root} has split subfolders ({', '.join(d.name for d in split_dirs)}) "
                f"but no {split}/; expected {folder / 'images'} and {folder / 'masks'}"
            )
        pairs = match_pairs(folder / "images", folder / "masks")
        description = f"folder dataset {folder}"
    else:
        pairs = match_pairs(root / "images", root / "masks")
        chosen = set(
            random_split([pair.name for pair in pairs], valid_fraction, test_fraction, split_seed)[
                SPLITS.index(split)
            ]
        )
        pairs = [pair for pair in pairs if pair.name in chosen]
        description = f"folder dataset {root} (split {split!r}, split_seed={split_seed})"
        if not pairs:
            raise DataError(
                f"{description} is empty: {root / 'images'} has too few images for "
                f"valid_fraction={valid_fraction}, test_fraction={test_fraction}"
            )
    return FolderDataset(pairs, transform, strict=strict, description=description)


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


def random_split(
    names: Sequence[str], valid_fraction: float, test_fraction: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """Split distinct ``names`` into (train, valid, test) at random, reproducibly for a ``seed``.

    The result depends only on the set of names (they are sorted first), the fractions and the seed.
    Each held-out part gets ``round(n * fraction)`` names, but at least one when its fraction is
    positive and enough names remain to leave one for training.
    """
    ordered = sorted(set(names))
    random.Random(seed).shuffle(ordered)
    counts = []
    remaining = len(ordered)
    for fraction in (test_fraction, valid_fraction):
        count = round(len(ordered) * fraction)
        if fraction > 0:
            count = max(count, 1)
        count = min(count, max(remaining - 1, 0))
        counts.append(count)
        remaining -= count
    n_test, n_valid = counts
    test = ordered[:n_test]
    valid = ordered[n_test : n_test + n_valid]
    train = ordered[n_test + n_valid :]
    return sorted(train), sorted(valid), sorted(test)


def default_augment(augment: str | None, split: str) -> str:
    """The pipeline a dataset uses when none is named: "default" to train, "none" to evaluate."""
    if augment is None:
        return "default" if split == "train" else "none"
    return augment


def check_root(root: str | Path | None, dataset: str) -> Path:
    if root is None:
        raise UsageError(f"dataset {dataset!r} needs root=DIR, the folder holding the data")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"{dataset} root folder {root} is not a folder (it is a file)")
    if not root.is_dir():
        raise DataError(f"{dataset} root folder {root} does not exist")
    return root


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def reject_unknown_options(unknown: dict[str, Any], dataset: str, factory) -> None:
    if unknown:
        import inspect

        accepted = [name for name in inspect.signature(factory).parameters if name != "unknown"]
        raise UsageError(
            f"dataset {dataset!r} has no option(s) {', '.join(sorted(unknown))}; "
            f"its options are {', '.join(accepted)}"
        )


def _size_mismatch(pair: Pair, image_size, mask_size, role: str) -> str:
    return (
        f"{role} {pair.mask_path} is {mask_size[1]}x{mask_size[0]} but its image {pair.image_path} is "
        f"{image_size[1]}x{image_size[0]} (width x height); they must be the same size"
    )


def _listing(skipped: Sequence[tuple[str, str]]) -> str:
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:MAX_LISTED])
    if len(skipped) > MAX_LISTED:
        shown += f"; and {len(skipped) - MAX_LISTED} more (see dataset.skipped)"
    return shown


def _values(values: np.ndarray) -> str:
    listed = ", ".join(str(value) for value in values[:MAX_LISTED].tolist())
    return f"{{{listed}{', ...' if len(values) > MAX_LISTED else ''}}}"


@segkit.hookimpl
def register_datasets(register):
    register(
        "folder",
        build_folder,
        description="your photos in ROOT/images and 0/1 or 0/255 masks in ROOT/masks, matched by stem",
    )
