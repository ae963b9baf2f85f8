"""A dataset's fingerprint: what a planner needs to know about the photos and their masks.

``fingerprint(dataset)`` reads the sizes of every photo (from the file checks, no decoding) and the
masks of an even sample of at most ``MASK_SAMPLE`` photos at their own resolution, and returns a
``Fingerprint``: image count, size distribution, channels, task and classes with their pixel shares,
the foreground fraction per image, the share of empty masks, connected objects per image and their
sizes, and how thin the structures are (``structure_width_px``: twice the area over the
number of pixel edges around it, a line's width in pixels; a disc of radius r gives about 0.8 r).

For datasets built from files (``PairedImageDataset``) the result is cached beside the data
(``fingerprint.json`` in ``segkit.data.data_cache.cache_folder``), keyed by every file's size and
modification time, the dataset's description and this module's ``VERSION``: a changed, added or
removed file computes it again. A fingerprint is not kept while any file was modified in the last
``RACY_SECONDS`` (as the file index does, ``segkit.data.file_checks``): a file system's clock ticks coarser
than a nanosecond, and a same-sized rewrite within one tick would otherwise look unchanged.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

import segkit.data.data_cache as data_cache
from segkit.data.file_checks import RACY_SECONDS

VERSION = 3
CACHE_NAME = "fingerprint.json"
#: Masks read (evenly spaced over the split) to measure classes, objects and thinness.
MASK_SAMPLE = 120
#: Fingerprints kept per cache file (one per split and option set).
KEPT = 8
#: Classes covering less of the pixels than this are not weighed when judging thinness.
MIN_CLASS_SHARE = 0.001
#: Classes under this share of the labelled pixels are rare (the plan names them).
RARE_SHARE = 0.01
#: A class whose thickest part is at least this share of a crop's side is seen by the crop as texture.
CONTEXT_THICKNESS = 0.5
#: Objects are 8-connected: a diagonal line is one object.
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


@dataclass
class Fingerprint:
    images: int
    height: list[float]  # [min, median, max] over the photos, pixels
    width: list[float]
    channels: int
    task: str
    class_names: list[str]
    class_share: list[float]  # share of labelled pixels per class (multilabel: per label)
    foreground_fraction: list[float]  # [10th, 50th, 90th percentile] over sampled images
    empty_share: float  # sampled images without foreground
    objects_per_image: float  # median connected foreground objects per sampled image
    object_area: float  # median object area over the photo's area
    structure_width_px: float  # median over images of 2 * area / edges around it, native pixels
    class_width_px: list[float | None] = field(default_factory=list)  # the same per class
    sampled: int = 0
    # Context (how much of a photo tells what a pixel is), per class where the class is present:
    #: median over images of the class's largest connected region, as a share of the photo's area
    class_region_share: list[float | None] = field(default_factory=list)
    #: median over images of the width of the class's thickest part (the widest disc inside it), px:
    #: near class_width_px for a class thin everywhere (a pole, a vessel), far above it for a class
    #: thin only at its borders (a road)
    class_thickest_px: list[float | None] = field(default_factory=list)
    #: median number of classes (background left out) present in an image
    classes_per_image: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(**data)

    @property
    def short_side(self) -> float:
        """The median photo's shorter side, pixels."""
        return min(self.height[1], self.width[1])

    def thinnest_width_px(self) -> float:
        """The narrowest structure width of any class holding at least ``MIN_CLASS_SHARE`` of the
        pixels (the foreground's for binary), native pixels; infinity when there is no foreground."""
        widths = [
            width
            for width, share in zip(self.class_width_px, self.class_share, strict=True)
            if width is not None and share >= MIN_CLASS_SHARE
        ]
        return min(widths) if widths else float("inf")

    def rare_classes(self) -> list[str]:
        """The classes (background left out; multilabel: labels) holding under ``RARE_SHARE`` of the
        labelled pixels; none for a binary task, whose one class is the foreground."""
        if self.task == "binary":
            return []
        return [
            name
            for name, share in zip(self.class_names, self.class_share, strict=True)
            if share < RARE_SHARE and name != "background"
        ]

    def context_classes(self, window_px: float) -> list[str]:
        """The classes (background left out; binary: the foreground) a square window of ``window_px``
        native pixels sees only the inside of: their thickest part is at least ``CONTEXT_THICKNESS``
        of the window wide and their largest region covers more of the median photo than the window
        does. A crop inside a road sees tarmac texture, not the kerb and the cars that make it road."""
        window_share = window_px**2 / max(1.0, self.height[1] * self.width[1])
        if not len(self.class_names) == len(self.class_thickest_px) == len(self.class_region_share):
            return []  # a fingerprint made without the context measures (by hand, in a test)
        return [
            name
            for name, thickest, region in zip(
                self.class_names, self.class_thickest_px, self.class_region_share, strict=True
            )
            if thickest is not None
            and region is not None
            and thickest >= CONTEXT_THICKNESS * window_px
            and region > window_share
        ]

    def share_of(self, names: list[str]) -> float:
        """The share of the labelled pixels the classes ``names`` hold together."""
        shares = zip(self.class_names, self.class_share, strict=True)
        return sum(share for name, share in shares if name in names)

    def summary(self) -> str:
        height, width = self.height[1], self.width[1]
        text = (
            f"{self.images} images, median {width:.0f}x{height:.0f} px, {self.task} "
            f"({len(self.class_names)} class{'es' if len(self.class_names) != 1 else ''}), foreground "
            f"{self.foreground_fraction[1]:.1%} of a median image, {self.objects_per_image:g} object(s) per "
            f"image, thinnest structures ~{self.thinnest_width_px():.1f} px wide"
        )
        if self.task != "binary":
            text += f", {self.classes_per_image:g} classes per image"
            rare = self.rare_classes()
            if rare:
                text += f", rare (under {RARE_SHARE:.0%} of the pixels): {', '.join(rare)}"
        return text


def fingerprint(dataset: Any, sample: int = MASK_SAMPLE) -> Fingerprint:
    """The dataset's fingerprint, from the cache when its files are unchanged (module docstring)."""
    folder, key, newest = _cache_place(dataset, sample)
    cached = data_cache.read_cached(folder, CACHE_NAME, VERSION)
    entries = dict(cached.get("entries", {})) if cached else {}
    if key in entries:
        try:
            return Fingerprint.from_dict(entries[key])
        except TypeError:
            pass
    result = compute_fingerprint(dataset, sample)
    if folder is not None and newest < time.time_ns() - int(RACY_SECONDS * 1e9):
        entries[key] = result.to_dict()
        data_cache.write_cached(folder, CACHE_NAME, VERSION, {"entries": dict(list(entries.items())[-KEPT:])})
    return result


def compute_fingerprint(dataset: Any, sample: int = MASK_SAMPLE) -> Fingerprint:
    from segkit.data.labels import dataset_task_info

    info = dataset_task_info(dataset)
    task, names = info["task"], info["class_names"]
    count = len(dataset)
    sizes = _image_sizes(dataset)
    taken = min(sample, count)
    indices = sorted({round(i * (count - 1) / max(1, taken - 1)) for i in range(taken)})
    background = _background_ids(task, names)
    class_pixels = np.zeros(len(names), dtype=np.float64)
    labelled = 0
    fractions, objects, areas, widths, present = [], [], [], [], []
    class_widths: list[list[float]] = [[] for _ in names]
    class_regions: list[list[float]] = [[] for _ in names]
    class_thickest: list[list[float]] = [[] for _ in names]
    for index in indices:
        labels, ignore = _labels(dataset, index, task)
        channels = _class_channels(labels, task, len(names))
        valid = np.ones(labels.shape[-2:], dtype=bool) if ignore is None else ~_any_ignore(ignore)
        labelled += int(valid.sum())
        for class_id, channel in enumerate(channels):
            class_pixels[class_id] += np.count_nonzero(channel & valid)
            if class_id not in background and channel.any():
                class_widths[class_id].append(_width(channel))
                class_regions[class_id].append(_largest_region_share(channel))
                class_thickest[class_id].append(_thickest_px(channel))
        present.append(sum(1 for c, ch in enumerate(channels) if c not in background and ch.any()))
        foreground = np.zeros(labels.shape[-2:], dtype=bool)
        for class_id, channel in enumerate(channels):
            if class_id not in background:
                foreground |= channel
        fractions.append(float(foreground.mean()))
        components, found = ndimage.label(foreground, structure=EIGHT_NEIGHBOURS)
        objects.append(found)
        if found:
            sizes_px = np.bincount(components.ravel())[1:]
            areas.extend((sizes_px / foreground.size).tolist())
            widths.append(_width(foreground))
    share = (class_pixels / max(1, labelled)).tolist()
    return Fingerprint(
        images=count,
        height=_spread([h for h, _ in sizes]),
        width=_spread([w for _, w in sizes]),
        channels=_channels(dataset),
        task=task,
        class_names=list(names),
        class_share=[round(value, 6) for value in share],
        foreground_fraction=[round(float(v), 5) for v in np.percentile(fractions, [10, 50, 90])],
        empty_share=round(float(np.mean([f == 0 for f in fractions])), 4),
        objects_per_image=float(np.median(objects)),
        object_area=round(float(np.median(areas)) if areas else 0.0, 6),
        structure_width_px=round(float(np.median(widths)) if widths else float("inf"), 3),
        class_width_px=[round(float(np.median(w)), 3) if w else None for w in class_widths],
        sampled=len(indices),
        class_region_share=[round(float(np.median(r)), 6) if r else None for r in class_regions],
        class_thickest_px=[round(float(np.median(t)), 3) if t else None for t in class_thickest],
        classes_per_image=float(np.median(present)),
    )


def _largest_region_share(region: np.ndarray) -> float:
    """The largest 8-connected part of ``region``, as a share of the whole picture's area."""
    components, found = ndimage.label(region, structure=EIGHT_NEIGHBOURS)
    if not found:
        return 0.0
    return float(np.bincount(components.ravel())[1:].max() / region.size)


def _thickest_px(region: np.ndarray) -> float:
    """The width of the widest disc inside ``region``, pixels: ``2 d - 1`` for the largest distance
    ``d`` from a region pixel to the nearest pixel outside it (the picture's border counts as outside),
    so a band of odd width w gives w, of even width w gives w - 1."""
    inside = ndimage.distance_transform_edt(np.pad(region, 1))
    return float(2 * inside.max() - 1)


def _width(region: np.ndarray) -> float:
    """Twice the area over the number of pixel edges between ``region`` and the rest
    (or the border) are counted, so a line of width w gives about w (w = 1 included) and a disc of
    radius r about 0.8 r."""
    padded = np.pad(region, 1)
    edges = np.count_nonzero(padded[1:, :] != padded[:-1, :]) + np.count_nonzero(
        padded[:, 1:] != padded[:, :-1]
    )
    return 2.0 * np.count_nonzero(region) / max(1, edges)


def _background_ids(task: str, names: list[str]) -> set[int]:
    if task == "multiclass":
        return {index for index, name in enumerate(names) if name == "background"}
    return set()


def _labels(dataset: Any, index: int, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    original = getattr(dataset, "original_mask", None)
    if original is not None:
        labels, ignore = original(index)
        return np.asarray(labels), None if ignore is None else np.asarray(ignore)
    item = dataset[index]
    mask = item["mask"].numpy()
    ignore = item.get("ignore")
    ignore = None if ignore is None else ignore.numpy()
    if task == "multiclass":
        return mask[0].astype(np.int64), None if ignore is None else ignore[0]
    if task == "binary":
        return (mask[0] > 0.5).astype(np.uint8), None if ignore is None else ignore[0]
    return (mask > 0.5).astype(np.uint8), ignore


def _class_channels(labels: np.ndarray, task: str, classes: int) -> list[np.ndarray]:
    if task == "multiclass":
        return [labels == class_id for class_id in range(classes)]
    if task == "binary":
        return [labels.astype(bool)]
    return [channel.astype(bool) for channel in labels]


def _any_ignore(ignore: np.ndarray) -> np.ndarray:
    return np.asarray(ignore.any(axis=0) if ignore.ndim == 3 else ignore, dtype=bool)


def _image_sizes(dataset: Any) -> list[tuple[int, int]]:
    sizes = getattr(dataset, "image_sizes", None)
    if sizes:
        return list(sizes)
    first = dataset[0]
    original = first.get("original_size")
    if original is not None:
        return [(int(original[0]), int(original[1]))]
    height, width = first["image"].shape[-2:]
    return [(int(height), int(width))]


def _channels(dataset: Any) -> int:
    return int(dataset[0]["image"].shape[0])


def _spread(values: list[int]) -> list[float]:
    return [float(min(values)), float(np.median(values)), float(max(values))]


def _cache_place(dataset: Any, sample: int) -> tuple[Any, str, int]:
    """The cache folder of a dataset of files, the key of this fingerprint and the newest file's
    modification time (nanoseconds); (None, "", 0) otherwise."""
    from segkit.data.pairs import data_folder

    pairs = getattr(dataset, "pairs", None)
    if not pairs:
        return None, "", 0
    root = getattr(dataset, "data_root", None) or data_folder(pairs)
    if root is None:
        return None, "", 0
    digest = hashlib.sha256()
    digest.update(
        f"{VERSION}|{sample}|{type(dataset).__name__}|{getattr(dataset, 'description', '')}".encode()
    )
    newest = 0
    for pair in pairs:
        for path in (pair.image_path, *pair.mask_paths):
            try:
                status = os.stat(path)
            except OSError:
                continue
            digest.update(f"|{path}|{status.st_size}|{status.st_mtime_ns}".encode())
            newest = max(newest, status.st_mtime_ns)
    return data_cache.cache_folder(root), digest.hexdigest()[:24], newest
