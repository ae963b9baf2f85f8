"""Where segkit keeps what it learns about a dataset folder, so it is worked out once.

What is cached (each a JSON file, rebuilt when its files change):

- ``file-index.json``: the result of checking every photo and mask (size, colour mode, or why the file
  is unusable), keyed by file and reused while the file's size and modification time are unchanged
  (``segkit.data.file_checks``).
- ``fingerprint.json``: the dataset fingerprint the planner reads (``segkit.planning.fingerprint``).

The cache folder is ``.segkit-cache/`` inside the data folder when that folder is writable (and not
marked read-only: no write permission bit counts as read-only even for root), so it moves and is
deleted with the data; otherwise (a read-only mount, a shared dataset) it is
``<user cache>/segkit/data/<hash of the data folder's absolute path>/``, where the user cache is
``$XDG_CACHE_HOME`` or ``~/.cache``. Setting ``SEGKIT_CACHE_DIR`` sends every dataset's cache under
that folder instead (keyed by the same hash), and ``SEGKIT_CACHE_DIR=off`` turns caching off.
Deleting a cache folder is always safe: it is rebuilt on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from segkit.atomic_files import atomic_write_text

#: Name of the cache folder segkit makes inside a writable data folder.
CACHE_FOLDER = ".segkit-cache"
#: Environment variable: a folder for every dataset's cache, or "off".
CACHE_ENV = "SEGKIT_CACHE_DIR"


def user_cache_root() -> Path:
    """``$SEGKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/segkit``, else ``~/.cache/segkit``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segkit"


def caching_enabled() -> bool:
    return os.environ.get(CACHE_ENV, "").strip().lower() != "off"


def cache_folder(data_folder: str | os.PathLike) -> Path | None:
    """The folder holding ``data_folder``'s cache, created; ``None`` when caching is off or no folder
    can be written (then nothing is cached and every run checks afresh)."""
    if not caching_enabled():
        return None
    data_folder = Path(data_folder).expanduser().resolve()
    candidates = []
    if not os.environ.get(CACHE_ENV) and _meant_to_be_written(data_folder):
        candidates.append(data_folder / CACHE_FOLDER)
    key = hashlib.sha256(str(data_folder).encode()).hexdigest()[:16]
    candidates.append(user_cache_root() / "data" / key)
    for candidate in candidates:
        if _writable_folder(candidate):
            return candidate
    return None


def _meant_to_be_written(folder: Path) -> bool:
    """Whether ``folder`` may be written: it has a write permission bit and this process may write it.
    A folder marked read-only (``chmod a-w``) counts as read-only even for root, who could write it."""
    try:
        return bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def read_cached(folder: Path | None, name: str, version: int) -> dict[str, Any] | None:
    """The JSON object cached as ``name`` when it exists, parses and has this ``version``; else None
    (a damaged or old cache is never an error: it is rebuilt)."""
    if folder is None:
        return None
    path = folder / name
    try:
        status = path.stat()
        key = (str(path), status.st_mtime_ns, status.st_size)
        content = _READ.get(key)
        if content is None:
            content = json.loads(path.read_text(encoding="utf-8"))
            _READ.clear()  # one cache file kept: the one a run's splits read in turn
            _READ[key] = content
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or content.get("version") != version:
        return None
    return dict(content)


#: The last cache file read by this process, by (path, mtime_ns, size): the splits of one run read
#: the same index in turn; a write changes the key.
_READ: dict[tuple[str, int, int], Any] = {}


def write_cached(folder: Path | None, name: str, version: int, content: dict[str, Any]) -> None:
    """Store ``content`` as ``name`` atomically; a failure to write only costs the next run time."""
    if folder is None:
        return
    try:
        atomic_write_text(folder / name, json.dumps({"version": version, **content}, separators=(",", ":")))
    except OSError:
        pass
