"""Dataset "oxford_pet": the Oxford-IIIT Pet dataset (Parkhi et al., CVPR 2012) in its official layout.

    ROOT/images/<name>.jpg                 photos (a few are really PNG or GIF: decoded by content)
    ROOT/annotations/trimaps/<name>.png    trimaps: 1 = pet, 2 = background, 3 = border
    ROOT/annotations/trainval.txt          "<name> <class-id> <species> <breed-id>" lines, "#" comments
    ROOT/annotations/test.txt              the same, for the test split

Get it with ``segkit data download oxford-pet ROOT``. Splits: ``test`` is test.txt; ``train`` and
``valid`` divide trainval.txt, the **valid** split being every 10th listed image, those at positions
0, 10, 20, ... of the list (``position % 10 == 0``, counting from 0, after dropping comments, blank
lines and repeated names), the other nine in ten training. Files in images/ that no list names (the
official release has .mat files and a few unlisted pictures) are ignored.

Masks (``task="binary"``, the default): pet (1) and border (3) are foreground and background (2) is
background, as in the seed report; ``border="ignore"`` instead marks border pixels in each item's
``"ignore"`` mask, so losses and metrics that honour it skip the uncertain outline.
``task="trimap"`` makes the dataset multiclass with the trimap's three classes, ``TRIMAP_CLASSES``
= ["background", "pet", "border"]: class ids 0 = background (trimap 2), 1 = pet (trimap 1) and
2 = border (trimap 3); items then hold int64 class-id masks (see ``segkit.datasets``), and
``border`` does not apply. Files are checked when the dataset is built and
bad ones skipped with a warning (``strict=True``: an error); a trimap holding another value than 1, 2
or 3 is always an error, found then too; see ``segkit.datasets.PairedImageDataset``.
The download spec (``OXFORD_PET``) is registered with the dataset, for ``segkit data download``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import segkit
from segkit.component_options import Option, choice, parse_component_options
from segkit.data.transforms import BACKGROUND, FOREGROUND, IGNORE_INDEX, build_sample_transform
from segkit.datasets import (
    PAIRED_DATASET_OPTIONS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    default_augment,
)
from segkit.download import Archive, RemoteDataset
from segkit.errors import DataError, UsageError

#: One listed trainval image in this many goes to the validation split (those at positions 0, 10, ...).
VALID_EVERY = 10
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
BORDER_CHOICES = ("foreground", "ignore")
TASK_CHOICES = ("binary", "trimap")
#: Class names of ``task="trimap"``, in id order; class 0 is the background.
TRIMAP_CLASSES = ["background", "pet", "border"]
#: Class id of each trimap value under ``task="trimap"``.
TRIMAP_CLASS_IDS = {TRIMAP_BACKGROUND: 0, TRIMAP_PET: 1, TRIMAP_BORDER: 2}
SPLIT_FILES = {"train": "trainval.txt", "valid": "trainval.txt", "test": "test.txt"}
# The official photos are all named .jpg; other extensions are accepted for re-encoded copies.
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Any label value other than background, foreground and ignore serves as the "invalid" marker.
_NOT_A_TRIMAP_VALUE = 7

#: Where ``segkit data download oxford-pet DIR`` fetches the dataset from (registered as ``download``).
OXFORD_PET = RemoteDataset(
    name="oxford-pet",
    base_url="https://thor.robots.ox.ac.uk/datasets/pets/",
    archives=(
        Archive("images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
        Archive("annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f"),
    ),
    url_env="SEGKIT_OXFORD_PET_URL",
    expected=("images", "annotations/trimaps", "annotations/trainval.txt", "annotations/test.txt"),
    segkit_dataset="oxford_pet",
)

OPTIONS = {
    **PAIRED_DATASET_OPTIONS,
    "border": Option(
        "foreground",
        choice(*BORDER_CHOICES),
        help="trimap border pixels: pet, or ignored by losses and metrics (task=binary only)",
    ),
    "strict": STRICT,
    "task": Option(
        "binary",
        choice(*TASK_CHOICES),
        help="binary: pet vs background; trimap: 3 classes background / pet / border (multiclass)",
    ),
}


class OxfordPetDataset(PairedImageDataset):
    """Oxford-IIIT Pet photos with trimaps turned into binary pet masks, or (``task="trimap"``) into
    three-class masks (see the module docstring)."""

    mask_role = "trimap"

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform,
        border: str,
        strict: bool,
        description: str,
        trimap_task: str = "binary",
    ) -> None:
        self.border = border
        if trimap_task == "trimap":
            super().__init__(
                pairs,
                transform,
                strict=strict,
                description=description,
                task="multiclass",
                class_names=TRIMAP_CLASSES,
            )
            return
        super().__init__(
            pairs, transform, strict=strict, with_ignore=border == "ignore", description=description
        )

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        # One table lookup maps every trimap value; _NOT_A_TRIMAP_VALUE marks values trimaps never hold.
        lookup = np.full(256, _NOT_A_TRIMAP_VALUE, dtype=np.uint8)
        if getattr(self, "task", "binary") == "multiclass":
            lookup[list(TRIMAP_CLASS_IDS)] = list(TRIMAP_CLASS_IDS.values())
        else:
            border_label = IGNORE_INDEX if self.border == "ignore" else FOREGROUND
            lookup[[TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER]] = [FOREGROUND, BACKGROUND, border_label]
        labels = lookup[raw] if raw.dtype == np.uint8 else None
        if labels is None or (labels == _NOT_A_TRIMAP_VALUE).any():
            found = sorted(np.unique(raw).tolist())[:20]
            raise DataError(
                f"trimap {path} holds values {found}; Oxford-IIIT Pet trimaps hold only "
                f"{TRIMAP_PET} (pet), {TRIMAP_BACKGROUND} (background) and {TRIMAP_BORDER} (border)"
            )
        return labels


def build_oxford_pet(root: str | Path | None = None, **options: Any) -> OxfordPetDataset:
    """The Oxford-IIIT Pet dataset from ROOT in its official layout.

    Options (``OPTIONS``): ``split``, ``image_size``, ``augment`` (defaults to "default" for train
    and "none" otherwise), ``border`` ("foreground": the trimap border counts as pet, or "ignore"),
    ``strict`` (True makes unreadable files an error instead of skipping them with a warning),
    ``task`` ("binary", or "trimap": three classes background / pet / border).
    """
    parsed = parse_component_options("dataset", "oxford_pet", {"root": root, **options}, OPTIONS)
    split, border, task = parsed["split"], parsed["border"], parsed["task"]
    if task == "trimap" and "border" in options:
        raise UsageError(
            "oxford_pet option border applies to task=binary only; task=trimap keeps the border as its "
            "own class (id 2, 'border')"
        )
    root = check_root(parsed["root"], "oxford_pet")
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    for folder in (root / "images", root / "annotations" / "trimaps"):
        if not folder.is_dir():
            raise DataError(
                f"oxford_pet folder {folder} does not exist; is {root} the Oxford-IIIT Pet root "
                "(download with `segkit data download oxford-pet DIR`)?"
            )

    split_file = root / "annotations" / SPLIT_FILES[split]
    names = read_split_file(split_file)
    if split != "test":
        train, valid = split_trainval(names)
        names = train if split == "train" else valid
    pairs = [
        Pair(name, photo_path(root, name), root / "annotations" / "trimaps" / f"{name}.png") for name in names
    ]
    return OxfordPetDataset(
        pairs,
        transform,
        border=border,
        strict=parsed["strict"],
        description=f"oxford_pet {root} split {split!r}" + (" (trimap classes)" if task == "trimap" else ""),
        trimap_task=task,
    )


def read_split_file(path: Path) -> list[str]:
    """Image names listed in an official split file, in order, repeats dropped (first one kept)."""
    if not path.is_file():
        raise DataError(f"split file {path} does not exist (the split it defines cannot be loaded)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read split file {path}: {error}") from None
    names: dict[str, None] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name = text.split()[0]
        if "/" in name or "\\" in name or name in (".", ".."):
            raise DataError(f"split file {path} line {number}: {name!r} is not a plain image name")
        names.setdefault(name, None)
    if not names:
        raise DataError(f"split file {path} lists no images")
    return list(names)


def split_trainval(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(train, valid) from the trainval list: position % VALID_EVERY == 0 goes to valid.

    Positions count from 0 over the distinct names in listed order, so every 10th image starting
    with the first is held out and no name lands in both parts.
    """
    distinct = list(dict.fromkeys(names))
    valid = [name for position, name in enumerate(distinct) if position % VALID_EVERY == 0]
    train = [name for position, name in enumerate(distinct) if position % VALID_EVERY != 0]
    return train, valid


def photo_path(root: Path, name: str) -> Path:
    """``images/<name>.jpg``, or the first other accepted extension that exists."""
    for extension in PHOTO_EXTENSIONS:
        candidate = root / "images" / f"{name}{extension}"
        if candidate.is_file():
            return candidate
    return root / "images" / f"{name}{PHOTO_EXTENSIONS[0]}"


@segkit.hookimpl
def register_datasets(register):
    register(
        "oxford_pet",
        build_oxford_pet,
        description="Oxford-IIIT Pet (official layout): pet vs background (task=trimap: 3 classes) from "
        "trimaps; valid = every 10th",
        defaults={"image_size": 256},
        options=OPTIONS,
        download=OXFORD_PET,
    )
