"""Photo and mask files paired by stem: ``Pair``, ``match_pairs`` (an images folder and a masks folder),
``files_by_stem`` (one folder, listed once per process while it is unchanged) and ``data_folder`` (the
folder that holds a dataset's files, where its file index is kept)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segkit.data.file_checks import RACY_SECONDS
from segkit.errors import DataError

#: How many problem files a warning or error message spells out before summarising the rest.
MAX_LISTED = 20

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


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
                # A broken link is listed (its check names it) rather than leaving its partner unpaired.
                and (entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path)))
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


def data_folder(pairs: Sequence[Pair]) -> Path | None:
    """The innermost folder holding every file of ``pairs``: where their file index is kept."""
    folders = {os.path.dirname(str(path)) for pair in pairs for path in (pair.image_path, *pair.mask_paths)}
    if not folders:
        return None
    try:
        return Path(os.path.commonpath([os.path.abspath(folder) for folder in folders]))
    except ValueError:  # different drives
        return None


def folder_listing(folder: Path) -> str:
    """What ``folder`` holds, for a message about a missing file or folder: its entries (folders with a
    trailing ``/``, hidden ones left out), at most ``MAX_LISTED`` of them."""
    if not folder.is_dir():
        return "nothing (it does not exist)"
    entries = sorted(f"{entry.name}/" if entry.is_dir() else entry.name for entry in folder.iterdir())
    entries = [entry for entry in entries if not entry.startswith(".")]
    return ", ".join([*entries[:MAX_LISTED], *(["..."] if len(entries) > MAX_LISTED else [])]) or "nothing"
