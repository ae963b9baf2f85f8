"""Checkpoints: written atomically, loaded safely.

Writing goes through ``segkit.atomic_files.atomic_write``: a temporary file in the same folder, flushed to
disk, then renamed over the old file, so a crash or a full disk leaves the previous checkpoint
intact. Loading uses ``torch.load(weights_only=True)``: a checkpoint crafted to run code when
unpickled fails to load instead. segkit stores only tensors, numbers, strings, lists, tuples and dicts.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

# Re-exported: other modules and tests import (and patch) ``segkit.checkpoint_files.atomic_write``.
from segkit.atomic_files import atomic_write
from segkit.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "atomic_write", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT_VERSION, **payload}
    try:
        atomic_write(Path(path), lambda handle: torch.save(payload, handle))
    except OSError as error:
        raise CheckpointError(f"could not write checkpoint {path}: {error.strerror or error}") from error


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        for candidate in ("best.pt", "last.pt"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise CheckpointError(f"{path} is a folder without best.pt or last.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next(
            (line.strip() for line in str(error).splitlines() if "Unsupported global" in line),
            str(error).splitlines()[0] if str(error) else "",
        )
        raise CheckpointError(
            f"{path} holds objects segkit does not store (refused, nothing was executed): {reason}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        # torch's first sentence says what failed; the rest is general advice about corrupt files
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(payload, dict) or "model_state" not in payload:
        raise CheckpointError(f"{path} is not a segkit checkpoint (no model_state)")
    version = payload.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this segkit reads format {FORMAT_VERSION} and "
            f"older. Upgrade segkit to read it."
        )
    return payload
