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

The base ``PairedImageDataset`` and the pairing helpers live in ``segkit.datasets``, for any plugin
to reuse; their old names stay importable from here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import segkit
from segkit.component_options import Option, integer, parse_component_options
from segkit.component_options import fraction as fraction_parser
from segkit.datasets import (  # noqa: F401 - PairedImageDataset, Pair, ... re-exported for old imports
    AUGMENT,
    IMAGE_EXTENSIONS,
    IMAGE_SIZE,
    MAX_LISTED,
    ROOT,
    SPLIT,
    SPLITS,
    STRICT,
    Pair,
    PairedImageDataset,
    SkippedFilesWarning,
    check_root,
    check_split,
    default_augment,
    files_by_stem,
    match_pairs,
)
from segkit.errors import DataError, UsageError
from segkit.transforms import BACKGROUND, FOREGROUND, build_sample_transform


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


def _fraction_below_one(value: Any) -> float:
    value = fraction_parser(value)
    if value >= 1:
        raise ValueError(f"{value} is not below 1")
    return value


HOLD_OUT = "a number in [0, 1)"
OPTIONS = {
    "root": ROOT,
    "split": SPLIT,
    "image_size": IMAGE_SIZE,
    "augment": AUGMENT,
    "valid_fraction": Option(0.1, _fraction_below_one, HOLD_OUT, help="share of a pool held out to validate"),
    "test_fraction": Option(0.1, _fraction_below_one, HOLD_OUT, help="share of a pool held out to test"),
    "split_seed": Option(0, integer, help="seed of the random split of a pool"),
    "strict": STRICT,
}


def build_folder(root: str | Path | None = None, **options: Any) -> FolderDataset:
    """Photos in ROOT/images and masks in ROOT/masks (or train/ valid/ test/ subfolders), by stem.

    Options (``OPTIONS``): ``split``, ``image_size``, ``augment`` (defaults to "default" for train
    and "none" otherwise), ``strict``; without split subfolders the pool is split at random:
    ``valid_fraction`` and ``test_fraction`` of it, seeded by ``split_seed``.
    """
    parsed = parse_component_options("dataset", "folder", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "folder")
    split, valid_fraction, test_fraction = parsed["split"], parsed["valid_fraction"], parsed["test_fraction"]
    split_seed = parsed["split_seed"]
    if valid_fraction + test_fraction >= 1:
        raise UsageError(
            f"folder options valid_fraction ({valid_fraction}) + test_fraction ({test_fraction}) must be "
            "below 1, leaving images to train on"
        )
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(augment, parsed["image_size"], train=split == "train")

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
    return FolderDataset(pairs, transform, strict=parsed["strict"], description=description)


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


def _values(values: np.ndarray) -> str:
    listed = ", ".join(str(value) for value in values[:MAX_LISTED].tolist())
    return f"{{{listed}{', ...' if len(values) > MAX_LISTED else ''}}}"


@segkit.hookimpl
def register_datasets(register):
    register(
        "folder",
        build_folder,
        description="your photos in ROOT/images and 0/1 or 0/255 masks in ROOT/masks, matched by stem",
        options=OPTIONS,
    )
