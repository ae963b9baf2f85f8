"""Checking a dataset's photos and masks before training, once per file rather than once per run.

``check_files([(path, role), ...], data_folder)`` returns ``FileFacts`` for every file: its displayed
size and colour mode, or the reason it is unusable (the ``DataError`` message of
``segkit.data.imageio.check_image_file``). Files whose role is in ``mask_roles`` are label masks: they
are also decoded once (``segkit.data.imageio.read_mask``) for the distinct values they hold, so that a
dataset refuses values that are not labels before a run starts rather than in its first epoch. Results
are kept in the data folder's index
(``file-index.json`` in ``segkit.data.data_cache.cache_folder``), keyed by the file's path and role, and
reused while the file's size, modification time (nanoseconds) and inode are what they were when it
was checked; only new or changed files are opened. A file modified in the last ``RACY_SECONDS`` when
it is checked is not remembered (as git does with its index): a file system's clock ticks coarser
than a nanosecond, and a same-sized rewrite within one tick would otherwise look unchanged. When
many files need checking they are checked in a pool of processes (every core), with a progress bar
on a terminal.

So the time to a run's first step grows with one ``stat`` per file, not one decode: see
``benchmarks/test_many_files.py`` for the curve over 1k, 10k and 100k files.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import segkit.data.data_cache as data_cache
import segkit.data.imageio as imageio
from segkit.errors import DataError
from segkit.progress import progress

INDEX_NAME = "file-index.json"
#: Bump when what an entry means changes; an index of another version is rebuilt.
INDEX_VERSION = 2
#: A mask's distinct values kept, smallest first. Labels are 8-bit (0..255, 256 values at most), so a
#: mask with more distinct values than that keeps at least one value that is not a label among these.
MAX_VALUES = 257
#: Mask pixels counted at a time (bounds the memory of counting a huge mask's values).
COUNT_CHUNK = 1 << 22
#: Fewer unchecked files than this are checked in this process (a pool costs about a second to start).
PARALLEL_FROM = 400
#: Files a pool worker takes at a time.
CHUNK = 64
#: Files modified this recently when checked are checked again next time (see the module docstring).
RACY_SECONDS = 2.0
# Stored error messages hold this in place of the file's path, so an index still reads right after
# the data folder moves.
_PATH_MARK = "\x00"


@dataclass(frozen=True)
class FileFacts:
    """What checking one file found: ``(height, width)`` and Pillow ``mode``, or ``error``.

    A mask's (when its values were asked for): ``values``, the distinct raw values it holds, sorted
    (the first ``MAX_VALUES``), or ``values_error``, why it holds no labels at all (a colour image).
    """

    height: int = 0
    width: int = 0
    mode: str = ""
    error: str | None = None
    values: tuple[int, ...] | None = None
    values_error: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


def check_file(path: Path, role: str, values: bool = False) -> FileFacts:
    """Check one file (``segkit.data.imageio.image_file_facts``), a ``DataError`` becoming ``error``;
    with ``values``, also decode it as a mask for the distinct values it holds."""
    try:
        height, width, mode = imageio.image_file_facts(path, role)
    except DataError as error:
        return FileFacts(error=str(error))
    if not values:
        return FileFacts(height, width, mode)
    try:
        found = distinct_values(imageio.read_mask(path))
    except DataError as error:
        return FileFacts(height, width, mode, values_error=str(error))
    return FileFacts(height, width, mode, values=tuple(found[:MAX_VALUES].tolist()))


def distinct_values(mask: np.ndarray, chunk: int = COUNT_CHUNK) -> np.ndarray:
    """The distinct values of an 8- or 16-bit mask, sorted: a count per value, ``chunk`` pixels at a
    time (``np.unique`` would sort every pixel, and a count of the whole mask at once would take 8 bytes
    a pixel)."""
    flat = mask.reshape(-1)
    counts = np.zeros(int(np.iinfo(mask.dtype).max) + 1, np.int64)
    for start in range(0, flat.size, chunk):
        counts += np.bincount(flat[start : start + chunk], minlength=counts.size)
    return np.flatnonzero(counts)


def check_files(
    files: Sequence[tuple[Path, str]],
    data_folder: str | os.PathLike | None = None,
    workers: int | None = None,
    description: str = "",
    mask_roles: Collection[str] = (),
) -> list[FileFacts]:
    """``FileFacts`` for each ``(path, role)`` in order; see the module docstring.

    ``data_folder``: the folder whose index holds the results (no index when ``None``). ``workers``:
    processes for the checks (default: the usable cores); 1 checks in this process. ``mask_roles``:
    the roles of label masks, whose values are read too (a remembered check without them is redone).
    """
    folder = data_cache.cache_folder(data_folder) if data_folder is not None else None
    base = Path(data_folder).expanduser().resolve() if data_folder is not None else None
    cached = data_cache.read_cached(folder, INDEX_NAME, INDEX_VERSION)
    entries: dict[str, list[Any]] = {}
    if cached is not None and cached.get("max_pixels") == imageio.MAX_IMAGE_PIXELS:
        entries = dict(cached.get("files") or {})  # a copy: the read is remembered per process
    results: list[FileFacts | None] = [None] * len(files)
    pending: list[tuple[int, str, tuple[int, int, int] | None]] = []
    relative = _Relative(base)
    for position, (path, role) in enumerate(files):
        key = f"{role}:{relative(path)}"
        stamp = _stamp(path)
        entry = entries.get(key)
        if stamp is not None and isinstance(entry, list) and len(entry) == 9 and entry[:3] == list(stamp):
            facts = _facts_from_entry(entry, str(path))
            if role not in mask_roles or facts.error or facts.values is not None or facts.values_error:
                results[position] = facts
                continue
        pending.append((position, key, stamp))
    if pending:
        settled = time.time_ns() - int(RACY_SECONDS * 1e9)
        wanted = [(*files[position], files[position][1] in mask_roles) for position, _, _ in pending]
        checked = _check_all(wanted, workers, description)
        remembered = 0
        for (position, key, stamp), facts in zip(pending, checked, strict=True):
            results[position] = facts
            if stamp is not None and stamp[1] < settled:
                entries[key] = _entry(facts, stamp, Path(files[position][0]))
                remembered += 1
        if remembered:
            data_cache.write_cached(
                folder, INDEX_NAME, INDEX_VERSION, {"max_pixels": imageio.MAX_IMAGE_PIXELS, "files": entries}
            )
    return [facts for facts in results if facts is not None]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_all(
    files: Sequence[tuple[Path, str, bool]], workers: int | None, description: str
) -> list[FileFacts]:
    workers = min(usable_cores(), 16) if workers is None else workers
    show = len(files) >= PARALLEL_FROM
    bar = progress(
        total=len(files),
        desc=f"checking {len(files)} files" + (f" of {description}" if description else ""),
        unit="file",
        quiet=not show,
        leave=False,
    )
    with bar:
        if workers <= 1 or len(files) < PARALLEL_FROM:
            results = []
            for path, role, values in files:
                results.append(check_file(Path(path), role, values))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
            results = []
            paths = [Path(path) for path, _, _ in files]
            roles = [role for _, role, _ in files]
            wanted = [value for _, _, value in files]
            for facts in pool.map(check_file, paths, roles, wanted, chunksize=CHUNK):
                results.append(facts)
                bar.update()
            return results


def _context() -> Any:
    """Fork where there is one (Linux, like torch's DataLoader workers): the workers start at once and,
    unlike spawn and forkserver, do not import the caller's ``__main__``, so a script without an
    ``if __name__ == "__main__"`` guard still works."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _stamp(path: str | os.PathLike) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino


class _Relative:
    """A file's path relative to ``base`` (absolute when outside it), resolving each folder once
    (string operations per file: a ``Path`` per file costs more than the check it saves)."""

    def __init__(self, base: Path | None) -> None:
        self.base = base
        self.folders: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike) -> str:
        folder, name = os.path.split(os.fspath(path))
        relative = self.folders.get(folder)
        if relative is None:
            resolved = Path(folder).resolve()
            relative = str(resolved)
            if self.base is not None:
                try:
                    relative = resolved.relative_to(self.base).as_posix()
                except ValueError:
                    pass
            self.folders[folder] = relative
        return name if relative == "." else f"{relative}/{name}"


def _entry(facts: FileFacts, stamp: tuple[int, int, int], path: Path) -> list[Any]:
    error, values_error = (
        None if text is None else text.replace(str(path), _PATH_MARK)
        for text in (facts.error, facts.values_error)
    )
    values = None if facts.values is None else list(facts.values)
    return [*stamp, facts.height, facts.width, facts.mode, error, values, values_error]


def _facts_from_entry(entry: list[Any], path: str) -> FileFacts:
    _, _, _, height, width, mode, error, values, values_error = entry
    if error is not None:
        return FileFacts(error=str(error).replace(_PATH_MARK, path))
    return FileFacts(
        int(height),
        int(width),
        str(mode),
        values=None if values is None else tuple(int(value) for value in values),
        values_error=None if values_error is None else str(values_error).replace(_PATH_MARK, path),
    )
