"""Run directories: one per run, never shared, never clobbered; and the one reader of their config.json.

Nothing here imports torch or the rest of the engine: reports, plots and trackers read run folders
through this module too."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from segkit.atomic_files import atomic_write
from segkit.errors import DataError, UsageError

CONFIG_FILE = "config.json"


def create_run_dir(out: Path, model: str, loss: str) -> Path:
    """``out/<timestamp>-<model>-<loss>``; a name already taken gets ``-2``, ``-3``, ... (atomic mkdir)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--out {out} exists and is not a folder") from None
    except OSError as error:
        raise UsageError(f"--out {out} cannot be created: {error.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable")
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{loss}"
    for attempt in range(1, 1000):
        candidate = out / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise UsageError(f"cannot create a run folder in {out}: {error.strerror}") from None
        return candidate
    raise UsageError(f"could not find a free run folder name in {out}")


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def read_run_config(run_dir: Path, missing_ok: bool = False) -> dict[str, Any]:
    """A run folder's config.json as a dict; ``{}`` where it has none and ``missing_ok``.

    Every command reads it here (resume, report, plot, the trackers). A missing file is a usage error
    (the folder given is not a run folder); one that cannot be read, is not JSON or holds no JSON object
    is a data error. Each message names the file.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        if missing_ok:
            return {}
        raise UsageError(f"{run_dir} is not a segkit run folder: {path} is missing")
    return read_json_object(path)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object; a data error naming the file when it cannot be read or is not one."""
    try:
        recorded = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise DataError(f"{path} is not valid JSON: {error}") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror or error}") from None
    if not isinstance(recorded, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return recorded


#: A fold run's fold (``segkit.data.folds.fold_record``), in its own folder.
FOLD_FILE = "fold.json"
#: What a parent folder of fold runs holds: the folds, their state and the choices made on them.
FOLDS_FILE = "folds.json"


def read_fold_record(run_dir: Path) -> dict[str, Any] | None:
    """The fold a fold run trains on (its ``fold.json``), or None for an ordinary run."""
    path = Path(run_dir) / FOLD_FILE
    return read_json_object(path) if path.is_file() else None


def is_fold_parent(path: Path) -> bool:
    """Whether ``path`` is the parent folder of a ``--folds`` run (it holds ``folds.json``)."""
    return (Path(path) / FOLDS_FILE).is_file()


#: In a fold run's folder once its training ended (not when a crash or a signal stopped it).
FINISHED_FILE = "finished.json"


def fold_folder(parent: Path, index: int) -> Path:
    """Fold ``index``'s run folder in a parent folder."""
    return Path(parent) / f"fold-{index}"


def finished_folds(parent: Path, folds: int) -> list[int]:
    """The folds of a parent folder whose training ended."""
    return [index for index in range(folds) if (fold_folder(parent, index) / FINISHED_FILE).is_file()]
