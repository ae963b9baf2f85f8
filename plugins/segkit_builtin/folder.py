"""Dataset "folder": your own photos and masks in a directory, matched by file stem.

Layouts (``ROOT`` is the ``root`` option)::

    ROOT/images/cat1.jpg   ROOT/masks/cat1.png            one pool, split at random (seeded)
    ROOT/train/images/...  ROOT/train/masks/...           ready-made splits: train/, valid/, test/
    ROOT/valid/images/...  ROOT/valid/masks/...

When any of ``train/``, ``valid/``, ``test/`` exists, those subfolders are the splits. Otherwise the
pool is split at random with ``valid_fraction`` and ``test_fraction`` (each rounded to whole images,
at least one image when the fraction is positive) using ``split_seed``, identically on every
machine. Images and masks pair by file stem (``cat1.jpg`` with ``cat1.png``); files in the folders
whose extension is not an image's, and hidden files, are ignored.

Tasks (option ``task``, default "auto": multilabel when ``labels`` is given, multiclass when
``classes`` is given or ``ROOT/classes.txt`` exists, binary otherwise):

- **binary**: masks are 8-bit or palette PNGs holding 0/1 or 0/255 (palette indices, not colours):
  1 or 255 is foreground.
- **multiclass**: K mutually exclusive classes, named in id order by ``ROOT/classes.txt`` (one name
  per line, the first is id 0; blank lines and lines starting with ``#`` ignored) or by the
  ``classes`` option. Masks are index masks, 8-bit greyscale or palette PNGs whose values are class
  ids 0..K-1, and 255 for pixels to ignore. A value >= K other than 255 is a ``DataError`` naming the
  file and the value, and so is an RGB (colour) mask.
  A class named "background" is what the engine treats as background.
- **multilabel**: K independent, possibly overlapping labels named by the ``labels`` option; label
  ``NAME`` has its own binary mask folder ``masks_NAME/`` beside ``images/`` (instead of ``masks/``)::

      ROOT/images/cat1.jpg   ROOT/masks_cat/cat1.png   ROOT/masks_collar/cat1.png

  Every image needs a mask in every label's folder; each mask is binary as above.

Photos of other bands than 8-bit RGB (TIFFs of RGB + near infrared, 16-bit bands; see
``segkit.data.geotiff``) keep their bands and are normalised with each band's mean and standard
deviation over the training split's photos (``segkit.data.transforms.band_statistics``, computed once
and cached beside the file index), which checkpoints store; a split's photos must all have the bands
of the training photos. 8-bit RGB photos use ImageNet's statistics.

Mask values are checked when the dataset is built, before a run starts: each mask is decoded once for
the values it holds, which the data folder's file index remembers while the mask is unchanged
(``segkit.datasets.PairedImageDataset``). A missing ``images/`` or ``masks/`` is named with what ``ROOT``
holds instead.

``classes`` and ``labels`` take a list of names, a comma-separated string of names, or the path of a
text file laid out like ``classes.txt``. A string is a path when it ends in ``.txt``, contains a
path separator or names an existing file; a relative path not found from the working directory is
looked up under ``ROOT``. ``palette`` optionally gives one ``[r, g, b]`` overlay colour per class
(default: ``segkit.datasets.default_palette``).

The base ``PairedImageDataset`` and the pairing helpers live in ``segkit.datasets``, for any plugin
to reuse; their old names stay importable from here.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import segkit
from segkit.component_options import Option, Parser, choice, integer, optional, parse_component_options
from segkit.component_options import fraction as fraction_parser
from segkit.data.transforms import (
    BACKGROUND,
    FOREGROUND,
    band_statistics,
    build_sample_transform,
    check_same_bands,
)
from segkit.datasets import (  # noqa: F401 - PairedImageDataset, Pair, ... re-exported for old imports
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    PAIRED_DATASET_OPTIONS,
    SPLITS,
    STRICT,
    Pair,
    PairedImageDataset,
    SkippedFilesWarning,
    check_class_names,
    check_palette,
    check_root,
    check_split,
    class_ids_from_mask,
    default_augment,
    files_by_stem,
    match_pairs,
    read_class_names,
)
from segkit.errors import DataError, UsageError

#: The class names file a multiclass folder keeps in its root.
CLASSES_FILE = "classes.txt"
#: Multilabel masks of label NAME live in this folder beside images/.
LABEL_MASKS = "masks_{}"
TASK_CHOICES = ("auto", "binary", "multiclass", "multilabel")


class FolderDataset(PairedImageDataset):
    """Photos and masks from a folder: 0/1 or 0/255 binary masks (binary, and each label of a
    multilabel folder) or index masks of class ids (multiclass); see the module docstring."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if getattr(self, "task", "binary") == "multiclass":
            return class_ids_from_mask(raw, path, len(self.class_names))
        values = np.unique(raw)
        if set(values.tolist()) <= {0, 1}:
            return raw.astype(np.uint8)
        if set(values.tolist()) <= {0, 255}:
            return np.where(raw == 255, FOREGROUND, BACKGROUND).astype(np.uint8)
        hint = ""
        if getattr(self, "task", "binary") == "binary" and len(values) > 2 and values.max() <= 255:
            # Small ids in a folder without classes.txt: most likely a multiclass folder missing it.
            hint = f"; if they are class ids, name the classes in {CLASSES_FILE} (one per line, id 0 first)"
        raise DataError(
            f"mask {path} holds values {_values(values)}; folder masks must be 0/1 or 0/255 "
            f"(8-bit or palette PNG){hint}"
        )


def _fraction_below_one(value: Any) -> float:
    value = fraction_parser(value)
    if value >= 1:
        raise ValueError(f"{value} is not below 1")
    return value


def _names_or_path(value: Any) -> list[str] | Path:
    """A list of names (given as a list, or a string "a,b,c" or "[a, b, c]"), or a names file's path."""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(name, str) for name in value):
            raise TypeError(f"not a list of names: {value!r}")
        return [name.strip() for name in value]
    if isinstance(value, os.PathLike):
        return Path(value).expanduser()
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"not names or a path: {value!r}")
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):  # "--dataset-option classes=[a,b]" arrives unparsed
        return [name.strip().strip("'\"").strip() for name in text[1:-1].split(",")]
    if text.lower().endswith(".txt") or "/" in text or "\\" in text or Path(text).expanduser().is_file():
        return Path(text).expanduser()
    return [name.strip() for name in text.split(",")]


NAMES = optional(Parser(_names_or_path, "a list of names, a comma-separated string of names, or a file path"))


def _palette(value: Any) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"not a list of colours: {value!r}")
    return list(value)


HOLD_OUT = "a number in [0, 1)"
OPTIONS = {
    **PAIRED_DATASET_OPTIONS,
    "valid_fraction": Option(0.1, _fraction_below_one, HOLD_OUT, help="share of a pool held out to validate"),
    "test_fraction": Option(0.1, _fraction_below_one, HOLD_OUT, help="share of a pool held out to test"),
    "split_seed": Option(0, integer, help="seed of the random split of a pool"),
    "strict": STRICT,
    "task": Option(
        "auto",
        choice(*TASK_CHOICES),
        help="binary, multiclass or multilabel; auto: multilabel with labels, multiclass with classes or "
        "ROOT/classes.txt, else binary",
    ),
    "classes": Option(None, NAMES, help="multiclass class names in id order (default: ROOT/classes.txt)"),
    "labels": Option(None, NAMES, help="multilabel label names; label NAME's masks are in masks_NAME/"),
    "palette": Option(
        None,
        optional(Parser(_palette, "a list of [r, g, b] colours")),
        help="overlay colour [r, g, b] of each class (default: a fixed distinct-colour list)",
    ),
}


def build_folder(root: str | Path | None = None, **options: Any) -> FolderDataset:
    """Photos in ROOT/images and masks in ROOT/masks (or train/ valid/ test/ subfolders), by stem.

    Options (``OPTIONS``): ``split``, ``image_size``, ``augment`` (defaults to "default" for train
    and "none" otherwise), ``strict``; without split subfolders the pool is split at random:
    ``valid_fraction`` and ``test_fraction`` of it, seeded by ``split_seed``. ``task``, ``classes``,
    ``labels`` and ``palette`` choose and describe a multiclass or multilabel task (module docstring).
    """
    parsed = parse_component_options("dataset", "folder", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "folder")
    task, class_names = resolve_task(root, parsed["task"], parsed["classes"], parsed["labels"])
    palette = parsed["palette"]
    if palette is not None:
        try:
            palette = check_palette(palette, len(class_names), "folder dataset option 'palette'")
        except DataError as error:
            raise UsageError(str(error)) from None
    mask_dirs = [LABEL_MASKS.format(name) for name in class_names] if task == "multilabel" else ["masks"]
    split, valid_fraction, test_fraction = parsed["split"], parsed["valid_fraction"], parsed["test_fraction"]
    split_seed = parsed["split_seed"]
    if valid_fraction + test_fraction >= 1:
        raise UsageError(
            f"folder options valid_fraction ({valid_fraction}) + test_fraction ({test_fraction}) must be "
            "below 1, leaving images to train on"
        )
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )

    split_dirs = [root / name for name in SPLITS if (root / name).is_dir()]
    if split_dirs:
        folder = root / split
        if not folder.is_dir():
            raise DataError(
                f"folder dataset {root} has split subfolders ({', '.join(d.name for d in split_dirs)}) "
                f"but no {split}/; expected {folder / 'images'} and "
                + " and ".join(str(folder / name) for name in mask_dirs)
            )
        pairs = _pairs(folder, mask_dirs, task)
        description = f"folder dataset {folder}"
        train_folder = root / "train"
        train_pairs = (
            _pairs(train_folder, mask_dirs, task) if split != "train" and train_folder.is_dir() else pairs
        )
    else:
        pool = _pairs(root, mask_dirs, task)
        parts = random_split([pair.name for pair in pool], valid_fraction, test_fraction, split_seed)
        chosen, trained_on = set(parts[SPLITS.index(split)]), set(parts[0])
        pairs = [pair for pair in pool if pair.name in chosen]
        train_pairs = [pair for pair in pool if pair.name in trained_on]
        description = f"folder dataset {root} (split {split!r}, split_seed={split_seed})"
        if not pairs:
            raise DataError(
                f"{description} is empty: {root / 'images'} has too few images for "
                f"valid_fraction={valid_fraction}, test_fraction={test_fraction}"
            )
    if task != "binary":
        description += f" ({task}: {', '.join(class_names)})"
    dataset = FolderDataset(
        pairs,
        transform,
        strict=parsed["strict"],
        description=description,
        task=task,
        class_names=class_names if task != "binary" else None,
        palette=palette,
    )
    use_band_statistics(dataset, [pair.image_path for pair in train_pairs], root)
    return dataset


def use_band_statistics(dataset: FolderDataset, train_photos: list[Path], root: Path) -> None:
    """Band photos: normalise ``dataset`` with the per-band statistics of the training photos (the
    checkpoint stores them as ``normalization``); 8-bit RGB photos keep ImageNet's."""
    statistics = band_statistics(train_photos, root)
    check_same_bands([pair.image_path for pair in dataset.pairs], statistics)
    if statistics is not None:
        dataset.normalization = statistics
        dataset.transform.normalization = statistics


def resolve_task(
    root: Path, task: str, classes: list[str] | Path | None, labels: list[str] | Path | None
) -> tuple[str, list[str]]:
    """The folder's task and class names from the ``task``, ``classes`` and ``labels`` options and
    ``ROOT/classes.txt`` (see the module docstring); contradictions are ``UsageError``."""
    classes_file = root / CLASSES_FILE
    if task == "auto":
        if classes is not None and labels is not None:
            raise UsageError(
                "folder options classes (multiclass) and labels (multilabel) exclude each other; give one, "
                "or task=multiclass / task=multilabel"
            )
        if labels is not None:
            task = "multilabel"
        elif classes is not None or classes_file.is_file():
            task = "multiclass"
        else:
            task = "binary"
    unwanted = {"binary": ("classes", "labels"), "multiclass": ("labels",), "multilabel": ("classes",)}[task]
    for option, value in (("classes", classes), ("labels", labels)):
        if option in unwanted and value is not None:
            needs = {"classes": "task=multiclass", "labels": "task=multilabel"}[option]
            raise UsageError(f"folder option {option} needs {needs}, but task is {task}")
    if task == "binary":
        return task, ["foreground"]
    if task == "multiclass":
        if classes is None and not classes_file.is_file():
            raise UsageError(
                f"folder dataset {root} with task=multiclass needs class names: a {classes_file} file "
                "(one name per line, the first is id 0) or the classes option"
            )
        names = _class_names(root, classes_file if classes is None else classes)
    else:
        if labels is None:
            raise UsageError(
                f"folder dataset {root} with task=multilabel needs the labels option (the label names; "
                f"label NAME's masks are in {LABEL_MASKS.format('NAME')}/)"
            )
        names = _class_names(root, labels)
        for name in names:
            if name.startswith(".") or any(separator in name for separator in "/\\"):
                raise UsageError(
                    f"folder label name {name!r} cannot name a folder {LABEL_MASKS.format(name)}/; "
                    "use letters, digits, - and _"
                )
    try:
        return task, check_class_names(names, task, f"folder dataset {root}")
    except DataError as error:
        raise UsageError(str(error)) from None


def _class_names(root: Path, value: list[str] | Path) -> list[str]:
    if isinstance(value, list):
        return value
    if not value.is_absolute() and not value.exists() and (root / value).exists():
        value = root / value
    return read_class_names(value)


def _pairs(folder: Path, mask_dirs: Sequence[str], task: str) -> list[Pair]:
    """Photo/mask pairs of ``folder/images`` and ``folder/<mask dir>``; one mask per label (multilabel)."""
    _check_layout(folder, ["images"] if task == "multilabel" else ["images", mask_dirs[0]], mask_dirs)
    if task != "multilabel":
        return match_pairs(folder / "images", folder / mask_dirs[0])
    missing = [name for name in mask_dirs if not (folder / name).is_dir()]
    if missing:
        found = sorted(path.name for path in folder.glob(LABEL_MASKS.format("*")) if path.is_dir())
        raise DataError(
            f"multilabel folder dataset {folder} has no mask folder(s) {', '.join(missing)} "
            f"(label NAME's masks go in {LABEL_MASKS.format('NAME')}/); found: {', '.join(found) or 'none'}"
        )
    per_label = [match_pairs(folder / "images", folder / name) for name in mask_dirs]
    return [
        Pair(
            first.name,
            first.image_path,
            first.mask_path,
            channel_masks=tuple(pairs[index].mask_path for pairs in per_label),
        )
        for index, first in enumerate(per_label[0])
    ]


def _check_layout(folder: Path, needed: Sequence[str], mask_dirs: Sequence[str]) -> None:
    """A ``DataError`` for the first of ``needed`` missing from ``folder``, saying what ``folder`` holds
    instead and which folders are expected; when ``folder`` is itself one of a dataset's folders (a
    root one level too deep: ``DIR/images``), it asks whether the root was meant to be ``DIR``."""
    missing = [name for name in needed if not (folder / name).is_dir()]
    if not missing:
        return
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    folders = sorted(f"{entry.name}/" for entry in entries if entry.is_dir())
    images = sum(entry.suffix.lower() in IMAGE_EXTENSIONS for entry in entries if not entry.is_dir())
    held = [*folders[:MAX_LISTED], *(["..."] if len(folders) > MAX_LISTED else [])]
    if images:
        held.append(f"{images} image file(s)")
    expected = " and ".join(f"{name}/" for name in ["images", *mask_dirs])
    message = (
        f"{'image' if missing[0] == 'images' else 'mask'} folder {folder / missing[0]} does not exist; "
        f"{folder} holds {', '.join(held) or 'nothing'}; the folder dataset expects {expected} "
        f"(or {', '.join(f'{split}/' for split in SPLITS)} folders, each holding them)"
    )
    if folder.name in ("images", *mask_dirs) and (folder.parent / "images").is_dir():
        parent = folder.parent
        message += f"; did you mean root={parent.parent if parent.name in SPLITS else parent}?"
    raise DataError(message)


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
        description="your photos in ROOT/images and masks in ROOT/masks, by stem (binary; multiclass with "
        "classes.txt; multilabel with labels=)",
        options=OPTIONS,
    )
