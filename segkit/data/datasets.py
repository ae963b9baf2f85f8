"""Bases for datasets of photos and label masks on disk, shared by segkit's datasets and plugins'.

- ``PairedImageDataset``: items from ``(photo, mask)`` file pairs, every pair checked cheaply when
  the dataset is built (unreadable files skipped with a ``SkippedFilesWarning`` or, with
  ``strict=True``, an error; a photo and mask of different sizes always an error). A subclass says
  how raw mask values become labels (``labels_from_mask``); the transform (see
  ``segkit.data.transforms.build_sample_transform``) resizes, augments and normalises.
- ``Pair``, ``match_pairs`` and ``files_by_stem``: find the pairs in an images folder and a masks
  folder by file stem.
- ``check_root``, ``check_split`` and ``default_augment``: the checks and defaults of the common
  dataset signature ``factory(root=None, split="train", image_size=256, augment=None, **options)``,
  and ``ROOT``, ``SPLIT``, ``IMAGE_SIZE``, ``AUGMENT`` and ``STRICT``: those options declared for a
  factory's option spec (``segkit.config.component_options``).
- Tasks: a dataset says which kind of segmentation it is for with the attributes ``task``
  ("binary" when absent, "multiclass" or "multilabel"), ``class_names``, ``palette`` and
  ``ignore_index``; ``dataset_task_info(dataset)`` reads them with their defaults, checked.
  ``read_class_names`` reads a ``classes.txt``; ``class_ids_from_mask`` checks an index mask.

A dataset of your own photos and masks::

    class MyDataset(PairedImageDataset):
        def labels_from_mask(self, raw, path):
            return np.where(raw > 0, FOREGROUND, BACKGROUND).astype(np.uint8)

    pairs = match_pairs(root / "images", root / "masks")
    dataset = MyDataset(pairs, build_sample_transform("none", 256, train=False))
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from segkit.config.component_options import (
    Option,
    Parser,
    boolean,
    choice,
    int_at_least,
    parse_component_options,
)
from segkit.config.component_options import path as path_parser
from segkit.config.component_options import text as text_parser
from segkit.data.file_checks import RACY_SECONDS, check_files
from segkit.data.imageio import read_image, read_mask
from segkit.data.sampling import Sampling
from segkit.data.transforms import (
    FOREGROUND,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_IMAGE_SIZE,
    TASKS,
    SampleTransform,
)
from segkit.errors import DataError, UsageError
from segkit.task.palette import BINARY_PALETTE, DISTINCT_COLOURS, check_palette, default_palette

__all__ = [
    "AUGMENT",
    "BINARY_PALETTE",
    "DISTINCT_COLOURS",
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZE",
    "ROOT",
    "SPLIT",
    "SPLITS",
    "STRICT",
    "Pair",
    "PairedImageDataset",
    "SkippedFilesWarning",
    "check_class_names",
    "check_root",
    "check_split",
    "class_ids_from_mask",
    "dataset_task_info",
    "default_augment",
    "default_palette",
    "files_by_stem",
    "match_pairs",
    "read_class_names",
]

SPLITS = ("train", "valid", "test")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
#: How many problem files a warning or error message spells out before summarising the rest.
MAX_LISTED = 20
#: Most classes a multiclass dataset may have: ids 0..254 fit in a uint8 mask below ``IGNORE_INDEX``.
MAX_CLASSES = IGNORE_INDEX
#: Mask image modes whose pixel values are label values (greyscale, palette indices, 1-bit, 16-bit).
INDEX_MASK_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "LA", "La", "PA"})

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


def _sampling(value: Any) -> Any:

    if value is None or isinstance(value, Sampling):
        return value
    raise TypeError(f"not a segkit.data.sampling.Sampling: {value!r}")


#: How photos become samples (resized whole, or cropped at native resolution): set by the engine
#: from --crop-size, --scale and --foreground-fraction; see ``segkit.data.sampling``.
SAMPLING = Option(
    None, Parser(_sampling, "a segkit.data.sampling.Sampling, or None to resize"), help="set by the engine"
)

#: The options every paired-image dataset takes, which the engine sets from the run's settings
#: (--data-path, the split, --image-size, --augment, --crop-size): a dataset's ``OPTIONS`` starts with
#: them and adds its own, ``{**PAIRED_DATASET_OPTIONS, "strict": STRICT, ...}``.
PAIRED_DATASET_OPTIONS = {
    "root": ROOT,
    "split": SPLIT,
    "image_size": IMAGE_SIZE,
    "augment": AUGMENT,
    "sampling": SAMPLING,
}


#: Decoded photos a split cut into crops keeps in memory, per process (each loader worker has its own).
DECODED_CACHE_BYTES = 1_500_000_000


class DecodedCache:
    """Decoded photos and their labels by photo file, up to ``limit`` bytes (then no more are kept).

    A split cut into crops keeps one of its own (each photo gives many crops an epoch). The engine
    gives the splits it reads every epoch in its own process (no loader workers) one shared cache,
    which outlives the train split's rebuilds at each progressive size: from the second epoch on, no
    photo is decoded again."""

    def __init__(self, limit: int = DECODED_CACHE_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self._items: dict[str, tuple[Any, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> tuple[Any, np.ndarray] | None:
        return self._items.get(key)

    def put(self, key: str, image: Any, labels: np.ndarray) -> None:
        size = image.width * image.height * len(image.getbands()) + labels.nbytes
        if key not in self._items and self.bytes + size <= self.limit:
            image.load()
            self._items[key] = (image, labels)
            self.bytes += size


class SkippedFilesWarning(UserWarning):
    """Some listed files were unreadable and left out of a dataset (see ``dataset.skipped``)."""


@dataclass(frozen=True)
class Pair:
    """One sample on disk: its name, photo and label mask.

    ``channel_masks`` (multilabel datasets): one binary mask file per label, in the order of the
    dataset's ``class_names``; ``mask_path`` is then the first of them.
    """

    name: str
    image_path: Path
    mask_path: Path
    channel_masks: tuple[Path, ...] = ()

    @property
    def mask_paths(self) -> tuple[Path, ...]:
        """Every mask file of the sample: the channel masks, or the one mask."""
        return self.channel_masks or (self.mask_path,)


class PairedImageDataset(Dataset):
    """Items built from (photo, label mask) file pairs, checked cheaply when constructed.

    Construction checks every pair without decoding pixels (``segkit.data.imageio.check_image_file``):
    files exist, are complete images within the pixel limit, and photo and mask have the same size.
    What a check finds is kept in the data folder's file index and reused while a file's size and
    modification time stay the same; many new files are checked in parallel (``segkit.data.file_checks``).
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

    ``task`` (see ``segkit.data.transforms``) changes what a mask means; ``class_names`` (and optionally
    ``palette``) name the classes and become attributes of the same names:

    - "binary" (default): as above.
    - "multiclass": ``labels_from_mask`` returns ``uint8`` class ids ``0..K-1`` and ``IGNORE_INDEX``
      (``class_ids_from_mask`` checks them). Items hold ``"mask"`` int64 ``(1, S, S)`` ids with
      ``IGNORE_INDEX`` kept and, always, ``"ignore"`` bool ``(1, S, S)``. Masks must be index images
      (greyscale or palette): an RGB mask is a ``DataError`` when the dataset is built.
    - "multilabel": each ``Pair`` has ``channel_masks``, one file per class; ``labels_from_mask`` maps
      each to 0 / 1 / ``IGNORE_INDEX`` like a binary mask. Items hold ``"mask"`` float ``(K, S, S)``
      and, with ``with_ignore``, ``"ignore"`` bool ``(K, S, S)``.
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
        task: str = "binary",
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if task not in TASKS:
            raise UsageError(f"{description}: task must be one of {', '.join(TASKS)}, got {task!r}")
        self.transform = transform
        self.with_ignore = with_ignore or task == "multiclass"
        self.description = description
        names = check_class_names(class_names, task, description)
        if task != "binary" or class_names is not None:
            # Binary datasets stay as they were: no attributes beyond the defaults of dataset_task_info.
            self.task = task
            self.class_names = names
            if task == "multiclass":
                self.ignore_index = IGNORE_INDEX
        if palette is not None:
            self.palette = check_palette(palette, len(names), description)
        self.skipped: list[tuple[str, str]] = []
        self.pairs: list[Pair] = []
        #: ``(height, width)`` of each pair's photo (after EXIF rotation), from the file checks.
        self.image_sizes: list[tuple[int, int]] = []
        self._keep_usable(list(pairs), task, names, strict)
        if self.skipped:
            warnings.warn(
                f"{description}: left out {len(self.skipped)} unreadable file pair(s) "
                f"(strict=True makes this an error): {skipped_listing(self.skipped)}",
                SkippedFilesWarning,
                stacklevel=3,
            )
        if not self.pairs:
            raise DataError(f"{description} has no usable image/{self.mask_role} pairs")

    def _keep_usable(self, pairs: list[Pair], task: str, names: list[str], strict: bool) -> None:
        """Check every file of ``pairs`` (``segkit.data.file_checks``, through the data folder's index) and
        keep the usable pairs in ``self.pairs``; the others go to ``self.skipped`` (or raise, strict)."""
        for pair in pairs:
            if task == "multilabel" and len(pair.channel_masks) != len(names):
                raise ValueError(
                    f"pair {pair.name!r} has {len(pair.channel_masks)} channel masks for {len(names)} labels"
                )
        files = [(pair.image_path, "image") for pair in pairs]
        files += [(path, self.mask_role) for pair in pairs for path in pair.mask_paths]
        facts = iter(check_files(files, data_folder(pairs), description=self.description))
        image_facts = [next(facts) for _ in pairs]
        for pair, image in zip(pairs, image_facts, strict=True):
            masks = [(path, next(facts)) for path in pair.mask_paths]
            checks = [image] + [mask for _, mask in masks]
            error = next((checked.error for checked in checks if checked.error), None)
            if error is not None:
                if strict:
                    raise DataError(error)
                self.skipped.append((pair.name, error))
                continue
            for path, mask in masks:
                if image.size != mask.size:
                    raise DataError(size_mismatch(pair, image.size, mask.size, self.mask_role, path))
                if task == "multiclass":
                    check_index_mask_mode(path, self.mask_role, len(names), mask.mode)
            self.pairs.append(pair)
            self.image_sizes.append(image.size)

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map raw mask values to uint8 BACKGROUND / FOREGROUND / IGNORE_INDEX labels (binary and
        each multilabel channel), or to uint8 class ids and IGNORE_INDEX (multiclass)."""
        raise NotImplementedError

    def read_labels(self, pair: Pair, size: tuple[int, int] | None = None) -> np.ndarray:
        """The labels of ``pair`` at the photo's size: ``(H, W)``, or ``(K, H, W)`` for multilabel.

        ``size`` ``(H, W)``, when given, is the photo's: a mask of another size is a ``DataError``.
        """
        channels = []
        for path in pair.mask_paths:
            raw = read_mask(path)
            if size is not None and raw.shape != size:
                raise DataError(size_mismatch(pair, size, raw.shape, self.mask_role, path))
            channels.append(self.labels_from_mask(raw, path))
        if getattr(self, "task", "binary") == "multilabel":
            return np.stack(channels)
        return channels[0]

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
        """The mask at the photo's own size, for evaluation at original resolution.

        Binary: a ``{0, 1}`` uint8 ``(H, W)`` array, and the bool ignore array (or None without
        ``with_ignore``). Multiclass: int64 ``(H, W)`` class ids with ``IGNORE_INDEX`` kept, and the
        bool ``(H, W)`` ignore array (always). Multilabel: ``{0, 1}`` uint8 ``(K, H, W)``, and the
        bool ``(K, H, W)`` ignore array or None.
        """
        labels = self.read_labels(self.pairs[index])
        ignore = labels == IGNORE_INDEX
        if getattr(self, "task", "binary") == "multiclass":
            return labels.astype(np.int64), ignore
        return (labels == FOREGROUND).astype(np.uint8), (ignore if self.with_ignore else None)

    #: Where decoded photos are kept (``DecodedCache``), if anywhere: set by the engine for splits it
    #: reads every epoch in its own process; a split cut into crops makes its own.
    decoded_cache: DecodedCache | None = None

    def _decoded(self, index: int) -> tuple[Any, np.ndarray]:
        """The photo and its labels, decoded, from ``decoded_cache`` when it holds them."""
        cache = self.decoded_cache
        if cache is None:
            sampling = getattr(getattr(self, "transform", None), "sampling", None)
            if sampling is not None and sampling.mode == "crop":
                cache = self.decoded_cache = DecodedCache()
        pair = self.pairs[index]
        key = f"{pair.image_path}\0{pair.mask_path}"
        found = cache.get(key) if cache is not None else None
        if found is not None:
            return found
        image = read_image(pair.image_path)
        labels = self.read_labels(pair, (image.height, image.width))
        if cache is not None:
            cache.put(key, image, labels)
        return image, labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image, labels = self._decoded(index)
        original_size = (image.height, image.width)
        task = getattr(self, "task", "binary")
        if task == "binary":
            sample = self.transform(image, labels)
        else:
            sample = self.transform(image, labels, task=task)
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
    """Image files in ``folder`` by stem; hidden files and non-image extensions are ignored.

    One directory read (no stat per file on most file systems), remembered while the folder's
    modification time, which any added, removed or renamed file changes, stays the same: the splits
    of one run list a folder once. A folder changed in the last ``RACY_SECONDS`` is read again each
    time (its clock may not have ticked since)."""
    if not folder.is_dir():
        raise DataError(f"{role} folder {folder} does not exist")
    modified = folder.stat().st_mtime_ns
    key = (str(folder.resolve()), modified)
    found = _LISTINGS.get(key)
    if found is None:
        found = {}
        with os.scandir(folder) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if not entry.name.startswith(".")
                and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
                and entry.is_file()
            )
        for name in names:
            stem = os.path.splitext(name)[0]
            if stem in found:
                raise DataError(
                    f"two {role} files share the stem {stem!r}: {found[stem]} and {folder / name}"
                )
            found[stem] = folder / name
        if modified < time.time_ns() - int(RACY_SECONDS * 1e9):
            _LISTINGS[key] = found
    if not found:
        raise DataError(
            f"{role} folder {folder} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return dict(found)


#: Folders already listed by this process, by (folder, modification time of the folder).
_LISTINGS: dict[tuple[str, int], dict[str, Path]] = {}


def default_augment(augment: str | None, split: str) -> str:
    """The pipeline a dataset uses when none is named: "default" to train, "none" to evaluate."""
    if augment is None:
        return "default" if split == "train" else "none"
    return augment


def check_root(root: str | Path | None, dataset: str) -> Path:
    """``root`` as a ``Path`` to an existing folder, else a ``UsageError`` (exit code 2): not given,
    missing, or a file. A path that names nothing is a usage error, as click makes it for a missing
    path argument; a folder that exists but holds bad files is a ``DataError`` (exit code 1), which
    the dataset raises when it reads them."""
    if root is None:
        raise UsageError(f"dataset {dataset!r} needs root=DIR, the folder holding the data")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"{dataset} root folder {root} is not a folder (it is a file)")
    if not root.is_dir():
        raise UsageError(f"{dataset} root folder {root} does not exist")
    return root


def check_split(split: Any, dataset: str = "dataset") -> str:
    """``split`` if it is one of ``SPLITS``, else a ``UsageError`` (what the ``SPLIT`` option checks)."""
    return parse_component_options("dataset", dataset, {"split": split}, {"split": SPLIT})["split"]


def size_mismatch(
    pair: Pair, image_size: Sequence[int], mask_size: Sequence[int], role: str, mask_path: Path | None = None
) -> str:
    """The message for a photo and mask of different sizes (sizes as ``(height, width)``)."""
    return (
        f"{role} {mask_path or pair.mask_path} is {mask_size[1]}x{mask_size[0]} but its image "
        f"{pair.image_path} is {image_size[1]}x{image_size[0]} (width x height); they must be the same size"
    )


def skipped_listing(skipped: Sequence[tuple[str, str]]) -> str:
    """``name: reason`` for the first ``MAX_LISTED`` skipped files, and how many more there are."""
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:MAX_LISTED])
    if len(skipped) > MAX_LISTED:
        shown += f"; and {len(skipped) - MAX_LISTED} more (see dataset.skipped)"
    return shown


# -- tasks, classes and palettes --------------------------------------------------------------------


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line in id order (the first line is id 0).

    Surrounding whitespace is stripped; blank lines and lines starting with ``#`` are ignored.
    Raises ``DataError`` naming the file when it is missing or unreadable, names no class, names one
    twice (with both line numbers), or names more than ``MAX_CLASSES``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"class names file {path} does not exist" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read class names file {path}: {error}") from None
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in names:
            raise DataError(
                f"class names file {path} names {name!r} twice (lines {names[name]} and {number}); "
                "class names must be distinct"
            )
        names[name] = number
    if not names:
        raise DataError(f"class names file {path} is empty: it names no class (one name per line)")
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"class names file {path} names {len(names)} classes; at most {MAX_CLASSES} fit in an 8-bit mask "
            f"({IGNORE_INDEX} means ignore)"
        )
    return list(names)


def check_class_names(names: Any, task: str, where: str = "dataset") -> list[str]:
    """``names`` as a list of distinct, non-empty, stripped str, as many as ``task`` allows.

    Binary: ``None`` or one name (``["foreground"]`` when ``None``); multiclass: 2 to
    ``MAX_CLASSES`` names; multilabel: at least one. Raises ``DataError`` naming ``where``.
    """
    if names is None and task == "binary":
        return ["foreground"]
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise DataError(f"{where}: class_names must be a list of str, got {names!r}")
    checked: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise DataError(f"{where}: class name {name!r} is not a non-empty str without surrounding spaces")
        if name in checked:
            raise DataError(f"{where}: class name {name!r} appears twice in {list(names)}")
        checked.append(name)
    least, most = {"binary": (1, 1), "multiclass": (2, MAX_CLASSES), "multilabel": (1, None)}[task]
    if len(checked) < least or (most is not None and len(checked) > most):
        wanted = (
            f"exactly {least}"
            if least == most
            else f"at least {least}" + (f" and at most {most}" if most else "")
        )
        raise DataError(f"{where}: a {task} task needs {wanted} class name(s), got {len(checked)}: {checked}")
    return checked


def dataset_task_info(dataset: Any) -> dict[str, Any]:
    """What a dataset says about its task, with defaults and checks, for the engine and checkpoints.

    Returns ``{"task", "class_names", "palette", "ignore_index"}``: ``task`` from the dataset's
    ``task`` attribute ("binary" when absent); ``class_names`` from ``class_names``
    (``["foreground"]`` for a binary dataset without them); ``palette`` from ``palette`` or
    ``default_palette``; ``ignore_index`` the mask value meaning "ignore" in multiclass items
    (the dataset's ``ignore_index``, ``IGNORE_INDEX`` = 255 by default) and ``None`` for binary and
    multilabel datasets, whose ignore arrives as the separate ``"ignore"`` item. Raises ``DataError``
    when an attribute is malformed (unknown task, duplicate names, a palette of the wrong length, ...).
    """
    where = f"dataset {type(dataset).__name__}"
    task = getattr(dataset, "task", "binary")
    if task not in TASKS:
        raise DataError(f"{where} asks for a {task!r} task; known tasks: {', '.join(TASKS)}")
    class_names = check_class_names(getattr(dataset, "class_names", None), task, where)
    palette = getattr(dataset, "palette", None)
    palette = (
        default_palette(class_names, task)
        if palette is None
        else check_palette(palette, len(class_names), where)
    )
    ignore_index = None
    if task == "multiclass":
        ignore_index = getattr(dataset, "ignore_index", IGNORE_INDEX)
        if (
            isinstance(ignore_index, bool)
            or not isinstance(ignore_index, (int, np.integer))
            or 0 <= ignore_index < len(class_names)
        ):
            raise DataError(
                f"{where}: ignore_index must be an integer that is not a class id "
                f"(0..{len(class_names) - 1}), got {ignore_index!r}"
            )
        ignore_index = int(ignore_index)
    return {"task": task, "class_names": class_names, "palette": palette, "ignore_index": ignore_index}


def class_ids_from_mask(raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """A raw index mask as uint8 class ids, checked: every value must be below ``num_classes`` or be
    ``IGNORE_INDEX``; anything else is a ``DataError`` naming the file and the values."""
    counts = np.bincount(raw.ravel(), minlength=IGNORE_INDEX + 1) if raw.size else np.zeros(1, dtype=np.int64)
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    if bad.size:
        listed = ", ".join(str(value) for value in bad[:MAX_LISTED].tolist())
        more = ", ..." if bad.size > MAX_LISTED else ""
        raise DataError(
            f"mask {path} holds value(s) {{{listed}{more}}}, which are not class ids: this dataset has "
            f"{num_classes} classes (ids 0..{num_classes - 1}) and {IGNORE_INDEX} means ignore"
        )
    return raw.astype(np.uint8)


def check_index_mask_mode(
    path: Path, role: str = "mask", num_classes: int | None = None, mode: str | None = None
) -> None:
    """A ``DataError`` unless the (already checked) mask file is an index image: greyscale or palette.

    ``mode``: the file's Pillow mode when already known; otherwise the header is read. Colour masks
    (RGB, RGBA, ...) hold colours, not class ids.
    """
    if mode is None:
        try:
            with Image.open(path) as image:
                mode = image.mode
        except Exception:  # noqa: BLE001 - check_image_file vetted the file; reading it reports any problem
            return
    if mode not in INDEX_MASK_MODES:
        ids = f"0..{num_classes - 1}" if num_classes else "0..K-1"
        raise DataError(
            f"{role} {path} is a colour ({mode}) image, but this multiclass dataset needs class ids: convert "
            f"it to an index mask, an 8-bit greyscale or palette PNG whose pixel values are the class ids "
            f"({ids}, {IGNORE_INDEX} = ignore)"
        )


def data_folder(pairs: Sequence[Pair]) -> Path | None:
    """The innermost folder holding every file of ``pairs``: where their file index is kept."""
    folders = {os.path.dirname(str(path)) for pair in pairs for path in (pair.image_path, *pair.mask_paths)}
    if not folders:
        return None
    try:
        return Path(os.path.commonpath([os.path.abspath(folder) for folder in folders]))
    except ValueError:  # different drives
        return None
