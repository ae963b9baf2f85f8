"""The round trip of ``segkit data convert`` (issue 29's "done when"), for every format's tests:

    from round_trip import assert_round_trip

    def test_coco_round_trip(tmp_path):
        root = write_coco_layout(tmp_path / "coco")                       # the format's own files
        assert_round_trip(tmp_path, "coco", root, categories=["cat", "dog"])

It converts the dataset read from ``src`` (with the options given) into a folder dataset, then reads
both, split by split, and checks the folder on DST gives what reading in place gives: the same splits
(a split the source cannot build is absent from DST too), the same task and class names (a binary
folder's one class is always "foreground"), the photos byte for byte under the same file names, the
folder's item names the photos' stems, and for every photo the same ``original_mask`` (labels and
ignored pixels, at the photo's own size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segkit.components import create_dataset
from segkit.data.convert import convert_to_folder
from segkit.datasets import SPLITS, dataset_task_info
from segkit.errors import DataError, UsageError


def assert_round_trip(tmp_path: Path, dataset_name: str, src: Path, **dataset_options: Any) -> Path:
    """Convert ``dataset_name`` read from ``src`` into a new folder under ``tmp_path`` and assert that the
    ``folder`` dataset there gives the same masks as the dataset read in place; returns the folder."""
    destination = _new_folder(tmp_path / f"{dataset_name}-as-folder")
    done = convert_to_folder(dataset_name, src, destination, dataset_options, quiet=True)
    compared = []
    for split in SPLITS:
        source = _split_or_none(dataset_name, src, split, dataset_options)
        converted = None
        if (destination / split).is_dir():  # built for every split written, so its errors surface
            converted = create_dataset("folder", root=destination, split=split, **done.folder_options())
        if source is None:
            assert converted is None, f"{split}: {dataset_name} has no such split, but the folder has one"
            continue
        assert converted is not None, f"{split}: {dataset_name} has this split, the folder on DST has not"
        _assert_same_split(split, source, converted)
        compared.append(split)
    assert compared, f"{dataset_name} in {src} has no split at all"
    assert sorted(done.written) == sorted(compared)
    return destination


def _new_folder(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _split_or_none(name: str, root: Path, split: str, options: dict[str, Any]):
    """The split, or None where the dataset cannot build it (convert leaves such a split out)."""
    try:
        return create_dataset(name, root=root, split=split, augment="none", **options)
    except (DataError, UsageError):
        return None


def _assert_same_split(split: str, source, converted) -> None:
    source_info, converted_info = dataset_task_info(source), dataset_task_info(converted)
    assert converted_info["task"] == source_info["task"], split
    if source_info["task"] != "binary":  # a binary folder names its one class "foreground"
        assert converted_info["class_names"] == source_info["class_names"], split
    photos = {Path(source.image_path(index)).name: index for index in range(len(source))}
    converted_photos = {Path(converted.image_path(index)).name: index for index in range(len(converted))}
    assert sorted(converted_photos) == sorted(photos), split
    assert sorted(converted.names) == sorted(Path(name).stem for name in photos), split
    for photo, index in photos.items():
        other = converted_photos[photo]
        where = f"{split}/{photo}"
        assert (
            Path(converted.image_path(other)).read_bytes() == Path(source.image_path(index)).read_bytes()
        ), where
        mask, ignore = source.original_mask(index)
        converted_mask, converted_ignore = converted.original_mask(other)
        assert converted_mask.dtype == mask.dtype, where
        np.testing.assert_array_equal(converted_mask, mask, err_msg=where)
        if source_info["task"] == "multiclass":
            np.testing.assert_array_equal(converted_ignore, ignore, err_msg=where)
        else:  # a binary or multilabel folder has no ignored pixels; convert refuses a source that has some
            assert ignore is None or not np.any(ignore), where
            assert converted_ignore is None, where
