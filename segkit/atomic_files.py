"""Writing files atomically: readers see the old file or the new one, never half of one.

Every file segkit rewrites in place (checkpoints, exported models, ``metrics.csv``, the Excel
workbook, run notes) goes through here. The new contents go to a hidden temporary file in the same
folder (so the final rename never crosses file systems), are flushed and fsync'ed, get the
permissions the umask gives any new file (``mkstemp`` makes temporary files 0600, which would leave
a shared run folder's files unreadable to the group), and are renamed over the target in one step;
the folder is then fsync'ed so the rename itself survives a crash. On any failure, Ctrl-C included,
the temporary file is removed and the old file is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Permission bits of a new file before the umask applies, as ``open(path, "w")`` uses.
NEW_FILE_MODE = 0o666


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(binary_handle)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _move_into_place(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_write``)."""
    data = text.encode(encoding)
    atomic_write(path, lambda handle: handle.write(data))


@contextmanager
def atomic_replace(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """For writers that need a file name rather than a handle (ONNX export, a library's ``save``).

    Yields the path of an empty temporary file beside ``path``; when the block ends normally the
    file is fsync'ed and renamed over ``path``, when it raises the file is removed::

        with atomic_replace(out) as temp:
            torch.onnx.export(model, sample, temp)
            check(temp)  # raising here leaves ``out`` untouched
    """
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    temp = Path(temp_name)
    try:
        yield temp
        with open(temp, "rb+") as stream:  # writable: Windows cannot fsync a read-only handle
            os.fsync(stream.fileno())
        _move_into_place(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def new_file_mode() -> int:
    """The permission bits a file created now gets: ``0o666`` less the process umask."""
    return NEW_FILE_MODE & ~current_umask()


def current_umask() -> int:
    """The process umask. Read from ``/proc`` where Linux offers it; elsewhere by setting it and
    setting it back (which briefly changes it for other threads too, hence the ``/proc`` route)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable on POSIX; Windows cannot open folders and does not need it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _move_into_place(temp: Path, path: Path) -> None:
    os.chmod(temp, new_file_mode())
    os.replace(temp, path)
    fsync_directory(path.parent)
