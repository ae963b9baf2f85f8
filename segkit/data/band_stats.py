"""Per-band normalisation statistics of a dataset's training photos, computed once and cached.

8-bit RGB photos are normalised with ImageNet's statistics, as always. Photos of other bands
(``segkit.data.geotiff``: RGB + near infrared, 16-bit bands) are normalised with each band's mean and
standard deviation over every pixel of the training photos, in the units ``Raster.pixels`` gives (values
divided by their type's range). The photos are read row band by row band (bounded memory) and the
result is kept in the data folder's cache (``band-statistics.json``, ``segkit.data.data_cache``) keyed by
each photo's path, size, inode and modification time, like the file index: a second split, or the next
run, reads it; a changed photo computes it again. Checkpoints store the statistics
(``normalization``), so predict normalises as training did.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segkit.data import data_cache
from segkit.data.geotiff import open_raster, tiff_facts
from segkit.errors import DataError

STATISTICS_FILE = "band-statistics.json"
STATISTICS_VERSION = 1
#: Rows read at a time while summing a photo's bands.
ROWS_AT_A_TIME = 512
#: Sets of training photos remembered per data folder (one per split seed and fractions, say).
REMEMBERED = 8


def band_statistics(
    photos: Sequence[str | os.PathLike], data_folder: str | os.PathLike | None = None
) -> dict[str, list[float]] | None:
    """``{"mean": [...], "std": [...]}`` of each band over every pixel of ``photos`` when they are band
    photos (population standard deviation); None when none is (8-bit RGB photos: ImageNet's). Photos of
    different bands (a 3-band 8-bit photo beside 4-band 16-bit ones, or 4 bands beside 5) are a
    ``DataError`` naming one of each kind. ``data_folder``: whose cache keeps the result."""
    paths = [Path(photo) for photo in photos]
    kinds = {path: _kind_of(path) for path in paths}
    if all(kind is None for kind in kinds.values()):
        return None
    distinct = dict(zip(kinds.values(), kinds.keys(), strict=False))  # a photo of each kind
    if len(distinct) > 1:
        described = [f"{path} ({_kind(kind)})" for kind, path in distinct.items()]
        raise DataError(
            "the training photos must all have the same bands, to be normalised alike: "
            + " but ".join(described)
        )
    folder = data_cache.cache_folder(data_folder) if data_folder is not None else None
    key = _key(paths)
    cached = data_cache.read_cached(folder, STATISTICS_FILE, STATISTICS_VERSION) or {}
    entries = dict(cached.get("entries") or {})
    found = entries.get(key)
    if isinstance(found, dict) and set(found) == {"mean", "std"}:
        return {"mean": list(found["mean"]), "std": list(found["std"])}
    statistics = compute_band_statistics(paths)
    entries = {name: value for name, value in list(entries.items())[-(REMEMBERED - 1) :]}
    entries[key] = statistics
    data_cache.write_cached(folder, STATISTICS_FILE, STATISTICS_VERSION, {"entries": entries})
    return statistics


def compute_band_statistics(paths: Sequence[Path]) -> dict[str, list[float]]:
    """Each band's mean and population standard deviation over every pixel of the band photos at
    ``paths``, merged chunk by chunk (Chan's parallel update: no sum of squares of large numbers)."""
    count, mean, spread = 0, None, None  # spread: the sum of squared deviations from the mean
    for path in paths:
        raster = open_raster(path)
        if raster is None or not raster.bands:
            raise DataError(f"image {path} is no band photo, unlike the other training photos")
        for top in range(0, raster.height, ROWS_AT_A_TIME):
            rows = min(ROWS_AT_A_TIME, raster.height - top)
            values = raster.pixels(top, 0, rows, raster.width).numpy().astype(np.float64)
            values = values.reshape(values.shape[0], -1)
            chunk_count, chunk_mean = values.shape[1], values.mean(axis=1)
            chunk_spread = ((values - chunk_mean[:, None]) ** 2).sum(axis=1)
            if mean is None or spread is None:
                count, mean, spread = chunk_count, chunk_mean, chunk_spread
                continue
            total = count + chunk_count
            delta = chunk_mean - mean
            mean = mean + delta * chunk_count / total
            spread = spread + chunk_spread + delta**2 * count * chunk_count / total
            count = total
    assert mean is not None and spread is not None
    std = np.sqrt(spread / count)
    # A constant band would divide by zero: it carries no information, so it is only centred.
    std[std == 0] = 1.0
    return {"mean": [float(value) for value in mean], "std": [float(value) for value in std]}


def check_same_bands(photos: Sequence[str | os.PathLike], statistics: dict[str, list[float]] | None) -> None:
    """A ``DataError`` naming the first of ``photos`` whose bands are not those ``statistics`` were
    computed for (None: 8-bit RGB photos); the photos of a valid or test split are checked so, before
    a run starts, against the training photos' statistics."""
    bands = None if statistics is None else len(statistics["mean"])
    for photo in photos:
        kind = _kind_of(Path(photo))
        if (kind and kind[0]) != bands:
            expected = "8-bit RGB photos" if bands is None else f"photos of {bands} bands"
            raise DataError(
                f"image {photo} is {_kind(kind)}, but the training photos are {expected}; "
                "a dataset's photos must all have the same bands"
            )


def _kind_of(path: Path) -> tuple[int, str] | None:
    """``(bands, dtype)`` of a band photo, None for any other photo."""
    facts = tiff_facts(path)
    return (facts.samples - facts.extra_alpha, facts.dtype) if facts and facts.bands else None


def _kind(kind: tuple[int, str] | None) -> str:
    return "8-bit RGB" if kind is None else f"{kind[0]} bands of {kind[1]}"


def _key(paths: Sequence[Path]) -> str:
    """The photos' identity: path, size, inode and modification time of each, hashed."""
    stamps = []
    for path in paths:
        status = path.stat()
        stamps.append([str(path.resolve()), status.st_size, status.st_ino, status.st_mtime_ns])
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()[:32]
