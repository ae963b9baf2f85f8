"""Bases for datasets of photos and label masks on disk, shared by segkit's datasets and plugins'.

- ``PairedImageDataset``: items from ``(photo, mask)`` file pairs, every pair checked when the
  dataset is built (unreadable files skipped with a ``SkippedFilesWarning`` or, with ``strict=True``,
  an error; a photo and mask of different sizes, or a mask holding values that are not labels, always
  an error). A subclass says how raw mask values become labels (``labels_from_mask``, which also
  checks the values each mask holds, ``check_mask_values``); the transform (see
  ``segkit.data.transforms.build_sample_transform``) resizes, augments and normalises.
- ``Pair``, ``match_pairs`` and ``files_by_stem`` (``segkit.data.pairs``): find the pairs in an
  images folder and a masks folder by file stem.
- ``check_root``, ``check_split`` and ``default_augment`` (``segkit.data.dataset_options``): the checks
  and defaults of the common dataset signature ``factory(root=None, split="train", image_size=256,
  augment=None, **options)``, and ``ROOT``, ``SPLIT``, ``IMAGE_SIZE``, ``AUGMENT`` and ``STRICT``:
  those options declared for a factory's option spec (``segkit.config.component_options``).
- Tasks (``segkit.data.labels``): a dataset says which kind of segmentation it is for with the
  attributes ``task`` ("binary" when absent, "multiclass" or "multilabel"), ``class_names``,
  ``palette`` and ``ignore_index``; ``dataset_task_info(dataset)`` reads them with their defaults,
  checked. ``read_class_names`` reads a ``classes.txt``; ``class_ids_from_mask`` checks an index mask.

- ``rendered_masks`` (``segkit.data.rendered_masks``): masks rendered once from an annotation file (a
  COCO JSON, a Label Studio export) into the data folder's cache, for datasets whose masks are no files.

Plugins import all of these from here (``segkit.datasets``, which is this module); each lives in the
module named beside it, with ``DecodedCache`` (``segkit.data.decoded_cache``).

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
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from segkit.data.dataset_options import (
    AUGMENT,
    IMAGE_SIZE,
    PAIRED_DATASET_OPTIONS,
    ROOT,
    SAMPLING,
    SPLIT,
    SPLITS,
    STRICT,
    check_root,
    check_split,
    default_augment,
)
from segkit.data.decoded_cache import DecodedCache
from segkit.data.file_checks import FileFacts, check_files
from segkit.data.imageio import SIXTEEN_BIT_MODES, read_image, read_mask, shown_size
from segkit.data.labels import (
    MAX_CLASSES,
    check_class_names,
    check_index_mask_mode,
    class_ids_from_mask,
    dataset_task_info,
    read_class_names,
)
from segkit.data.pairs import (
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    Pair,
    data_folder,
    files_by_stem,
    folder_listing,
    match_pairs,
)
from segkit.data.rendered_masks import rendered_masks
from segkit.data.transforms import (
    FOREGROUND,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TASKS,
    SampleTransform,
)
from segkit.errors import DataError, UsageError
from segkit.task.palette import BINARY_PALETTE, DISTINCT_COLOURS, check_palette, default_palette

# What plugins import from here (the README's "Writing a plugin"): the paired-image dataset, and the
# pieces it is made of, which live in the modules beside this one.
__all__ = [
    "AUGMENT",
    "MAX_CLASSES",
    "PAIRED_DATASET_OPTIONS",
    "SAMPLING",
    "DecodedCache",
    "check_index_mask_mode",
    "check_palette",
    "data_folder",
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
    "folder_listing",
    "match_pairs",
    "read_class_names",
    "rendered_masks",
    "shown_size",
]


class SkippedFilesWarning(UserWarning):
    """Some listed files were unreadable and left out of a dataset (see ``dataset.skipped``)."""


class PairedImageDataset(Dataset):
    """Items built from (photo, label mask) file pairs, checked when constructed.

    Construction checks every pair (``segkit.data.imageio.check_image_file``, without decoding a
    photo's pixels): files exist, are complete images within the pixel limit, and photo and mask have
    the same size; each mask is also decoded once for the values it holds. What a check finds is kept
    in the data folder's file index and reused while a file's size and modification time stay the
    same; many new files are checked in parallel (``segkit.data.file_checks``). A photo and mask of
    different sizes is always a ``DataError`` naming both files (the annotation belongs to another
    picture), and so is a mask holding values that are not labels (``check_mask_values``): both are
    found before any run starts. Any other bad file is an error with ``strict=True``; by default the
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
        data_root: Path | None = None,
    ) -> None:
        if task not in TASKS:
            raise UsageError(f"{description}: task must be one of {', '.join(TASKS)}, got {task!r}")
        self.transform = transform
        #: Where the file index (and the planner's fingerprint) is kept: ``data_root`` when given (a
        #: dataset whose masks are rendered into a cache elsewhere), else the folder holding every file.
        self.data_root = data_root
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
                f"(--dataset-option strict=true makes this an error): {skipped_listing(self.skipped)}",
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
        root = self.data_root or data_folder(pairs)
        facts = iter(check_files(files, root, description=self.description, mask_roles={self.mask_role}))
        image_facts = [next(facts) for _ in pairs]
        bad_values: list[tuple[Path, str]] = []
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
                problem = self._values_problem(path, mask)
                if problem is not None:
                    bad_values.append((path, problem))
            self.pairs.append(pair)
            self.image_sizes.append(image.size)
        if bad_values:
            raise DataError(bad_values_message(bad_values, self.mask_role))

    def _values_problem(self, path: Path, facts: FileFacts) -> str | None:
        """Why the mask at ``path`` holds no labels (``check_mask_values`` on the values its check
        found), or None."""
        if facts.values_error is not None:
            return facts.values_error
        if facts.values is None:
            return None
        wide = facts.mode in SIXTEEN_BIT_MODES or facts.mode == "I"  # read_mask's uint16 masks
        try:
            self.check_mask_values(np.asarray(facts.values, np.uint16 if wide else np.uint8), path)
        except DataError as error:
            return str(error)
        return None

    def check_mask_values(self, values: np.ndarray, path: Path) -> None:
        """Raise ``DataError`` (naming ``path`` and the values) when a mask holding ``values`` cannot
        become labels; called while the dataset is built, before any run starts.

        ``values``: the distinct raw values of the mask at ``path``, sorted, as ``read_mask`` gives
        them (uint8, or uint16 for 16-bit masks). The default maps them through ``labels_from_mask``
        as one row of pixels, which finds every bad value when that mapping treats each pixel on its
        own, as segkit's datasets do; a dataset whose mapping looks at neighbouring pixels overrides
        this (or makes it do nothing: ``labels_from_mask`` still checks each mask as it is read).
        """
        self.labels_from_mask(values.reshape(1, -1), path)

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


def size_mismatch(
    pair: Pair, image_size: Sequence[int], mask_size: Sequence[int], role: str, mask_path: Path | None = None
) -> str:
    """The message for a photo and mask of different sizes (sizes as ``(height, width)``)."""
    return (
        f"{role} {mask_path or pair.mask_path} is {mask_size[1]}x{mask_size[0]} but its image "
        f"{pair.image_path} is {image_size[1]}x{image_size[0]} (width x height); they must be the same size"
    )


def bad_values_message(bad: Sequence[tuple[Path, str]], role: str = "mask") -> str:
    """The first bad mask's message, and how many more there are, naming the first ``MAX_LISTED``."""
    message = bad[0][1]
    others = [str(path) for path, _ in bad[1:]]
    if others:
        listed = ", ".join(others[:MAX_LISTED]) + (", ..." if len(others) > MAX_LISTED else "")
        message += f"; {len(others)} more {role}(s) hold values that are not labels: {listed}"
    return message


def skipped_listing(skipped: Sequence[tuple[str, str]]) -> str:
    """``name: reason`` for the first ``MAX_LISTED`` skipped files, and how many more there are."""
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:MAX_LISTED])
    if len(skipped) > MAX_LISTED:
        shown += f"; and {len(skipped) - MAX_LISTED} more (see dataset.skipped)"
    return shown
