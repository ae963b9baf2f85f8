"""Masks rendered from an annotation file (a COCO JSON, a Label Studio export, ...), kept as PNG files in
the data folder's cache (``segkit.data.data_cache``).

A dataset whose labels live in an annotation file renders each photo's mask once, here, and is then a
``PairedImageDataset`` like any other: the same file checks and file index, the same fingerprint for the
planner, the same crops and decoded cache, evaluation at original resolution. Nothing goes stale: the
rendered folder is named by a key of the annotation files (path, size, modification time), the renderer
and its options, so any change to them renders again into a new folder (the old one is removed). A file
modified within the last seconds (``RACY_SECONDS``: a second write might keep the same mtime) is never
trusted as rendered; it is rendered again next time.

``render(name)`` returns the photo's labels as raw mask values: ``(H, W)`` uint8 (binary 0/1,
class ids, 255 ignored) or, for multilabel, ``(K, H, W)`` uint8, written as ``K`` files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segkit.atomic_files import atomic_write_text
from segkit.data.data_cache import cache_folder

#: Seconds within which a file's modification time cannot tell a later write from this one.
RACY_SECONDS = 2.0
RENDERED = "rendered-masks"
MANIFEST = "rendered.json"

Render = Callable[[str], np.ndarray]


def _key(annotations: Sequence[Path], renderer: str, options: dict[str, Any]) -> tuple[str, bool]:
    """The key of these annotation files as they are now, and whether it can be trusted (no file
    written within ``RACY_SECONDS``)."""
    facts, trusted, now = [], True, time.time()
    for path in annotations:
        status = Path(path).stat()
        facts.append([str(Path(path).resolve()), status.st_size, status.st_mtime_ns, status.st_ino])
        trusted = trusted and now - status.st_mtime > RACY_SECONDS
    text = json.dumps([facts, renderer, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20], trusted


def rendered_masks(
    data_folder: Path,
    annotations: Sequence[Path],
    renderer: str,
    options: dict[str, Any],
    names: Sequence[str],
    render: Render,
) -> dict[str, list[Path]]:
    """``{name: [mask path, ...]}`` (one path, or ``K`` for a multilabel ``(K, H, W)`` render) for every
    name, rendered now or found rendered for exactly these annotation files, renderer and options.

    ``renderer`` names the renderer and its version (``"coco-1"``): change it when its output changes.
    Errors ``render`` raises (a malformed annotation) propagate, and nothing is recorded as rendered."""
    key, trusted = _key(annotations, renderer, options)
    base = cache_folder(data_folder)
    if base is None:  # caching off, or nowhere to write: render into a folder of this process
        return _render_all(Path(tempfile.mkdtemp(prefix="segkit-masks-")), names, render)
    root = base / RENDERED
    folder = root / key
    manifest = _read_manifest(folder)
    if trusted and manifest is not None and set(names) <= set(manifest):
        return {name: [folder / file for file in manifest[name]] for name in names}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        written = _render_all(folder, names, render)
    except BaseException:  # a malformed annotation: leave no half-rendered folder behind
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if trusted:
        record = {name: [path.name for path in paths] for name, paths in written.items()}
        sources = sorted(str(Path(path).resolve()) for path in annotations)
        content = {"renderer": renderer, "annotations": sources, "masks": record}
        atomic_write_text(folder / MANIFEST, json.dumps(content))
        for other in root.iterdir():  # older renders of these same files by this renderer
            if other != folder and _read_source(other) == [renderer, sources]:
                shutil.rmtree(other, ignore_errors=True)
    return written


def _render_all(folder: Path, names: Sequence[str], render: Render) -> dict[str, list[Path]]:
    written: dict[str, list[Path]] = {}
    for index, name in enumerate(names):
        labels = np.asarray(render(name))
        if labels.dtype != np.uint8:
            raise TypeError(f"a renderer must return uint8 labels, got {labels.dtype} for {name!r}")
        # the file names are indices: photo names may hold characters a file name cannot
        planes = [labels] if labels.ndim == 2 else list(labels)
        paths = []
        for plane_index, plane in enumerate(planes):
            path = folder / (f"{index:07d}.png" if labels.ndim == 2 else f"{index:07d}_{plane_index}.png")
            Image.fromarray(np.ascontiguousarray(plane), mode="L").save(path)
            paths.append(path)
        written[name] = paths
    return written


def _read_manifest(folder: Path) -> dict[str, list[str]] | None:
    try:
        content = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        masks = content["masks"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(masks, dict) or not all((folder / f).is_file() for fs in masks.values() for f in fs):
        return None
    return masks


def _read_source(folder: Path) -> list[Any] | None:
    """``[renderer, annotation paths]`` of a rendered folder; None when it records none."""
    try:
        content = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return [content.get("renderer"), content.get("annotations")]
    except (OSError, ValueError, AttributeError):
        return None
