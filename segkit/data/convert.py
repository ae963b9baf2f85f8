"""Any registered dataset written as a ``folder`` dataset (``segkit data convert FORMAT SRC DST``), for
users who want files they can look at::

    DST/train/images/<photo>          the photos, copied byte for byte under their own file names
    DST/train/masks/<photo stem>.png  the labels at the photo's own size: binary 0 background, 255
                                      foreground (8-bit greyscale); multiclass class ids, 255 ignored
                                      (a palette PNG, shown in the classes' colours)
    DST/train/masks_NAME/...          multilabel: one 0/255 mask per label NAME, instead of masks/
    DST/valid/...  DST/test/...       the other splits the dataset has; those it lacks are left out
    DST/classes.txt                   multiclass: the class names in id order, which the folder reads
    DST/labels.txt                    multilabel: the label names (--dataset-option labels=DST/labels.txt)

What a dataset must offer to be converted (``segkit.datasets.PairedImageDataset`` offers all of it):
``len(dataset)``, ``image_path(index)`` (the photo's file), ``original_mask(index)`` (its labels at the
photo's own size, as ``PairedImageDataset.original_mask`` returns them) and the task attributes
``dataset_task_info`` reads. A dataset whose photos are no files (``synthetic``) cannot be converted.

Nothing half-written is left: the folder is written as ``DST.partial-*`` beside DST and renamed to DST
once complete; any error removes it, and an existing DST (replaced only with ``overwrite``) stays as it
was. The folder dataset on DST gives the same masks, names, classes and splits as the dataset read in
place (tests/round_trip.py checks exactly that).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segkit.components import create_dataset
from segkit.data.dataset_options import SPLITS
from segkit.data.labels import dataset_task_info
from segkit.data.pairs import IMAGE_EXTENSIONS
from segkit.data.transforms import IGNORE_INDEX
from segkit.errors import DataError, UsageError
from segkit.progress import progress

#: Dataset options convert sets itself, and where they come from instead.
SET_BY_CONVERT = {
    "root": "the dataset's folder is SRC",
    "split": "every split the dataset has is converted (choose with --split)",
    "augment": "convert never augments",
}
#: The names files of the folder written (the folder dataset reads classes.txt from its root itself).
CLASSES_FILE = "classes.txt"
LABELS_FILE = "labels.txt"
#: The colour of ignored pixels in a multiclass mask's palette.
IGNORED_COLOUR = [255, 255, 255]


@dataclass
class Conversion:
    """What ``convert_to_folder`` wrote: photos per split, the splits left out (and why), the task."""

    destination: Path
    task: str
    class_names: list[str]
    written: dict[str, int]
    left_out: dict[str, str] = field(default_factory=dict)

    def folder_options(self) -> dict[str, str]:
        """The ``folder`` dataset options that read DST as the task it was written for."""
        return {"labels": str(self.destination / LABELS_FILE)} if self.task == "multilabel" else {}

    def masks_description(self) -> str:
        if self.task == "binary":
            return "binary masks in masks/: 0 background, 255 foreground"
        if self.task == "multiclass":
            return (
                f"multiclass masks in masks/: class ids 0..{len(self.class_names) - 1} named in "
                f"{self.destination / CLASSES_FILE}, {IGNORE_INDEX} ignored"
            )
        return (
            f"multilabel masks: 0/255 in masks_NAME/ for each of the {len(self.class_names)} labels named in "
            f"{self.destination / LABELS_FILE}"
        )


def convert_to_folder(
    dataset: str,
    source: str | os.PathLike,
    destination: str | os.PathLike,
    options: dict[str, Any] | None = None,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> Conversion:
    """Write the registered ``dataset`` read from ``source`` (with ``options``) as a folder dataset in
    ``destination``; see the module docstring.

    ``splits``: the splits to convert, each of which must exist (default: every split the dataset
    has; train must exist, a valid or test split that cannot be built is left out and ``log`` says
    why). A ``destination`` that exists and is not empty is refused unless ``overwrite``.
    """
    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    options = dict(options or {})
    for key in SET_BY_CONVERT.keys() & options.keys():
        raise UsageError(f"--dataset-option {key}: {SET_BY_CONVERT[key]}")
    _check_destination(source, destination, overwrite)
    datasets, left_out = _read_splits(dataset, source, options, splits)
    for split, why in left_out.items():
        if log is not None:
            log(f"note: {dataset} has no {split} split here, left out: {why}")
    task, class_names, palette = _common_task(datasets)
    if log is not None and task == "binary" and class_names != ["foreground"]:
        log(f"note: the folder dataset calls the binary class 'foreground' ({dataset}: {class_names[0]!r})")
    _check_names(task, class_names)
    photos = {split: _photo_files(split, data) for split, data in datasets.items()}

    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{destination.name}.partial-", dir=destination.parent))
    except OSError as error:
        raise UsageError(f"DST {destination} cannot be created: {error.strerror or error}") from None
    bar = progress(total=sum(map(len, photos.values())), desc="convert", unit="photo", quiet=quiet)
    try:
        for split, data in datasets.items():
            _write_split(partial / split, data, photos[split], task, class_names, palette, bar)
        if task in ("multiclass", "multilabel"):
            names_file = CLASSES_FILE if task == "multiclass" else LABELS_FILE
            header = f"# {task} names in id order, from {dataset}"
            (partial / names_file).write_text("\n".join([header, *class_names]) + "\n", encoding="utf-8")
        _replace(partial, destination)
    except OSError as error:
        raise DataError(f"cannot write {error.filename or destination}: {error.strerror or error}") from None
    finally:
        bar.close()
        shutil.rmtree(partial, ignore_errors=True)  # gone already when renamed to DST
    written = {split: len(paths) for split, paths in photos.items()}
    return Conversion(destination, task, class_names, written, left_out)


def _check_destination(source: Path, destination: Path, overwrite: bool) -> None:
    if not source.exists():
        raise UsageError(f"SRC {source} does not exist")
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"DST {destination} is a file; give a folder to write the dataset into")
    resolved, within = destination.resolve(), source.resolve()
    if resolved == within or resolved in within.parents:
        raise UsageError(f"DST {destination} is SRC {source} or holds it; give a new folder")
    if destination.is_dir() and any(destination.iterdir()) and not overwrite:
        raise UsageError(
            f"DST {destination} exists and is not empty; give a new folder, or --overwrite to replace it"
        )


def _read_splits(
    name: str, source: Path, options: dict[str, Any], requested: Sequence[str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``({split: dataset}, {split: why it is left out})``; errors of train or a requested split raise."""
    datasets: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for split in requested or SPLITS:
        try:
            dataset = create_dataset(name, root=source, split=split, augment="none", **options)
        except (DataError, UsageError) as error:
            if requested or split == "train":
                raise
            left_out[split] = str(error)
            continue
        if not (
            callable(getattr(dataset, "image_path", None))
            and callable(getattr(dataset, "original_mask", None))
        ):
            raise UsageError(
                f"dataset {name!r} cannot be converted: its photos are not files (convert needs a dataset "
                "with image_path(index) and original_mask(index), as segkit.datasets.PairedImageDataset has)"
            )
        if len(dataset) == 0:
            if requested or split == "train":
                raise DataError(f"the {split} split of dataset {name!r} in {source} is empty")
            left_out[split] = "it is empty"
            continue
        datasets[split] = dataset
    return datasets, left_out


def _common_task(datasets: dict[str, Any]) -> tuple[str, list[str], list[list[int]]]:
    """The task, class names and palette every split shares (a folder dataset has one of each)."""
    infos = {split: dataset_task_info(dataset) for split, dataset in datasets.items()}
    (first, info), *others = infos.items()
    for split, other in others:
        if (other["task"], other["class_names"]) != (info["task"], info["class_names"]):
            raise DataError(
                f"the {split} split is {other['task']} with classes {other['class_names']} but the {first} "
                f"split is {info['task']} with {info['class_names']}; a folder dataset has one class list"
            )
    return info["task"], info["class_names"], info["palette"]


def _check_names(task: str, names: list[str]) -> None:
    """Class names that the names file and (multilabel) the masks_NAME/ folders can hold."""
    if task == "binary":
        return
    for name in names:
        if name.startswith("#") or "\n" in name or "\r" in name:
            raise DataError(
                f"class name {name!r} cannot be written to a names file (one name per line, # comments)"
            )
        if task == "multilabel" and (name.startswith(".") or "/" in name or "\\" in name):
            raise DataError(f"label name {name!r} cannot name a mask folder masks_{name}/")


def _photo_files(split: str, dataset: Any) -> list[Path]:
    """The photo file of every item, checked to be one the folder dataset reads and pairs by stem."""
    paths = [Path(dataset.image_path(index)) for index in range(len(dataset))]
    seen: dict[str, Path] = {}
    for path in paths:
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"photo {path}: the folder dataset reads only visible files ending in "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
            )
        if path.stem in seen:
            raise DataError(
                f"photos {seen[path.stem]} and {path} of the {split} split share the name {path.stem!r}; "
                "a folder dataset pairs photos and masks by name"
            )
        seen[path.stem] = path
    return paths


def _write_split(folder, dataset, photos, task, class_names, palette, bar) -> None:
    (folder / "images").mkdir(parents=True)
    for index, photo in enumerate(photos):
        mask, ignore = dataset.original_mask(index)
        images = mask_images(mask, ignore, task, class_names, palette, photo)
        shutil.copyfile(photo, folder / "images" / photo.name)
        for subfolder, image in images.items():
            (folder / subfolder).mkdir(exist_ok=True)
            image.save(folder / subfolder / f"{photo.stem}.png")
        bar.update(1)


def mask_images(
    mask: np.ndarray,
    ignore: np.ndarray | None,
    task: str,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    photo: Path,
) -> dict[str, Image.Image]:
    """``{mask folder: PNG image}`` of one photo's ``original_mask`` result, as the folder dataset reads
    them back: binary 0/255 in masks/, multiclass ids with ``IGNORE_INDEX`` in masks/ (palette PNG),
    multilabel 0/255 in masks_NAME/ per label. Ignored pixels of a binary or multilabel mask have no
    value in a folder dataset: a ``DataError`` naming the photo."""
    mask = np.asarray(mask)
    ignored = np.zeros(mask.shape, bool) if ignore is None else np.asarray(ignore, bool)
    if task == "multiclass":
        bad = np.unique(mask[~ignored & ((mask < 0) | (mask >= len(class_names)))])
        if bad.size:
            raise DataError(
                f"the mask of {photo} holds {bad[:10].tolist()}, which are not class ids "
                f"(0..{len(class_names) - 1})"
            )
        image = Image.fromarray(np.where(ignored, IGNORE_INDEX, mask).astype(np.uint8))
        colours = [list(colour) for colour in palette] + [[0, 0, 0]] * (IGNORE_INDEX - len(palette))
        image.putpalette([value for colour in [*colours, IGNORED_COLOUR] for value in colour])
        return {"masks": image}
    if ignored.any():
        raise DataError(
            f"the mask of {photo} has {int(ignored.sum())} ignored pixel(s), which a {task} folder dataset "
            "cannot hold (its masks are 0/255); convert with options that leave no pixel ignored, or as "
            "a multiclass task"
        )
    planes = [mask] if task == "binary" else list(mask)
    folders = ["masks"] if task == "binary" else [f"masks_{name}" for name in class_names]
    return {
        folder: Image.fromarray(np.where(plane != 0, 255, 0).astype(np.uint8))
        for folder, plane in zip(folders, planes, strict=True)
    }


def _replace(partial: Path, destination: Path) -> None:
    """Move the written folder to ``destination``, replacing what is there (checked before)."""
    if destination.is_dir() and any(destination.iterdir()):
        old = partial.with_name(partial.name + "-old")
        destination.rename(old)
        try:
            partial.rename(destination)
        except OSError:
            old.rename(destination)  # the folder there before stays as it was
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if destination.is_dir():
        destination.rmdir()
    partial.rename(destination)
