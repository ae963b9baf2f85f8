"""Mask values checked when a dataset is built (``PairedImageDataset.check_mask_values``), before any run
folder exists, for every task, and remembered in the file index (``segkit.data.file_checks``) while the
mask is unchanged.

The reference for which values a mask holds is the array the test wrote, counted with plain Python
(``sorted(set(...))``); the reference for which values are labels is each dataset's documented rule,
written out here.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    rewrite_in_place,
    save,
    stored_png,
    write_folder_layout,
    write_multiclass_folder,
    write_multilabel_folder,
    write_oxford_layout,
)
from fixtures import error_line, invoke, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.data import file_checks, imageio
from segkit.errors import DataError

NAMES = [f"p{index}" for index in range(6)]
SIZE = (20, 28)
HOUR_AGO = time.time() - 3600


def age(root: Path) -> None:
    """Every file under ``root`` modified an hour ago: past the index's racy window, so remembered."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (HOUR_AGO, HOUR_AGO))


def banded(values, size=SIZE, dtype=np.uint8) -> np.ndarray:
    """A mask holding exactly ``values``, in horizontal bands."""
    bands = np.arange(size[0]) * len(values) // size[0]
    return np.asarray(values, dtype)[bands][:, None].repeat(size[1], axis=1)


def colour(size=SIZE) -> np.ndarray:
    mask = np.zeros((*size, 3), np.uint8)
    mask[4:12, 5:15] = (255, 0, 0)
    return mask


def folder(root: Path, **options):
    options.setdefault("image_size", 16)
    return segkit.create_dataset(
        "folder", root=root, split="train", valid_fraction=0, test_fraction=0, **options
    )


# -- through `segkit run`: refused before "Run folder:", nothing written ------------------------------


def binary(root: Path, mask: np.ndarray) -> tuple[Path, list[str]]:
    write_folder_layout(root, NAMES)
    save(root / "masks" / "p3.png", mask, "PNG")
    return root / "masks" / "p3.png", []


def multiclass(root: Path, mask: np.ndarray) -> tuple[Path, list[str]]:
    write_multiclass_folder(root, NAMES, ("background", "cat", "dog"))
    save(root / "masks" / "p3.png", mask, "PNG")
    return root / "masks" / "p3.png", ["--loss", "ce"]


def multilabel(root: Path, mask: np.ndarray) -> tuple[Path, list[str]]:
    write_multilabel_folder(root, NAMES, ["cat", "collar"])
    save(root / "masks_collar" / "p3.png", mask, "PNG")
    return root / "masks_collar" / "p3.png", ["--dataset-option", "labels=cat,collar"]


BAD_MASKS = {
    "binary-rgb": (binary, colour(), r"is a colour \(RGB\) image"),
    "binary-17": (
        binary,
        banded([0, 17, 255]),
        r"holds values \{0, 17, 255\}; folder masks must be 0/1 or 0/255",
    ),
    "multiclass-7": (multiclass, banded([0, 2, 7]), r"holds value\(s\) \{7\}, which are not class ids"),
    "multiclass-300": (multiclass, banded([0, 300], dtype=np.uint16), r"holds value\(s\) \{300\}"),
    "multilabel-17": (multilabel, banded([0, 17]), r"holds values \{0, 17\}; folder masks must be 0/1"),
    "multilabel-rgb": (multilabel, colour(), r"is a colour \(RGB\) image"),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
def test_bad_mask_values_stop_segkit_run_before_the_run_folder_exists(tmp_path, case):
    writer, mask, message = BAD_MASKS[case]
    culprit, extra = writer(tmp_path / "data", mask)
    out = tmp_path / "runs"
    # test_fraction=0: every picture is in train or valid, the splits a run builds.
    args = tiny_run(batch_size=2, epochs=1, callbacks=("csv",), quiet=False)
    result = invoke(
        "run", *args, "--dataset", "folder", "--data-path", tmp_path / "data", "--out", out,
        "--dataset-option", "test_fraction=0", *extra,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(culprit) in line and re.search(message, line), line
    assert "Run folder" not in result.output
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))


# -- the values found against the array written, and the rule of each task ------------------------------


def binary_rule(values: list[int]) -> bool:
    return set(values) <= {0, 1} or set(values) <= {0, 255}


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.sampled_from([0, 1, 2, 17, 128, 254, 255, 256, 1000, 65535]), min_size=1, max_size=5)
)
def test_a_binary_folder_accepts_exactly_the_masks_of_its_rule_and_names_the_values(values):
    dtype = np.uint16 if max(values) > 255 else np.uint8
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_folder_layout(root, NAMES[:3])
        save(root / "masks" / "p1.png", banded(values, dtype=dtype), "PNG")
        expected = sorted(set(values))
        if binary_rule(expected):
            assert folder(root).names == NAMES[:3]
            return
        with pytest.raises(DataError) as caught:
            folder(root)
        listed = "{" + ", ".join(map(str, expected)) + "}"
        assert f"{root / 'masks' / 'p1.png'} holds values {listed}" in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(
    classes=st.integers(2, 6),
    values=st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 200, 254, 255]), min_size=1, max_size=6),
)
def test_a_multiclass_folder_accepts_ids_below_its_class_count_and_255_only(classes, values):
    names = ["background", *[f"class{index}" for index in range(1, classes)]]
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_multiclass_folder(root, NAMES[:3], names)
        save(root / "masks" / "p2.png", banded(values), "PNG")
        bad = sorted({value for value in values if value >= classes and value != 255})
        if not bad:
            assert folder(root).names == NAMES[:3]
            return
        with pytest.raises(DataError) as caught:
            folder(root)
        listed = "{" + ", ".join(map(str, bad)) + "}"
        expected = f"{root / 'masks' / 'p2.png'} holds value(s) {listed}, which are not class ids"
        assert expected in str(caught.value)


def test_every_bad_mask_is_counted_in_the_one_message(tmp_path):
    write_folder_layout(tmp_path, NAMES)
    for name in ("p1", "p4", "p5"):
        save(tmp_path / "masks" / f"{name}.png", banded([0, 3]), "PNG")
    with pytest.raises(DataError) as caught:
        folder(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"mask {tmp_path / 'masks' / 'p1.png'} holds values {{0, 3}}")
    assert "2 more mask(s)" in message and "p4.png" in message and "p5.png" in message


def test_a_mask_with_more_distinct_values_than_labels_can_hold_is_refused(tmp_path):
    """A 16-bit mask with 1000 distinct values: the index keeps only some of them, never all good ones."""
    write_multiclass_folder(tmp_path, NAMES[:3], ("background", "cat", "dog"))
    values = np.arange(1000, dtype=np.uint16)
    save(tmp_path / "masks" / "p1.png", np.resize(values, SIZE).astype(np.uint16), "PNG")
    with pytest.raises(DataError, match=r"p1\.png holds value\(s\) \{3, 4, 5"):
        folder(tmp_path)


def test_an_oxford_pet_trimap_holding_another_value_is_refused_when_the_dataset_is_built(tmp_path):
    root = write_oxford_layout(tmp_path, [f"dog_{index}" for index in range(10)], ["cat_0", "cat_1"])
    save(root / "annotations" / "trimaps" / "cat_1.png", banded([1, 2, 7], (24, 32)), "PNG")
    for task in ("binary", "trimap"):
        with pytest.raises(DataError, match=r"trimap .*cat_1\.png holds values \[1, 2, 7\]"):
            segkit.create_dataset("oxford_pet", root=root, split="test", image_size=16, task=task)
    segkit.create_dataset("oxford_pet", root=root, split="valid", image_size=16)  # other splits build


# -- remembered in the file index ---------------------------------------------------------------------


def count_mask_reads(monkeypatch) -> list[Path]:
    read: list[Path] = []
    real = imageio.read_mask

    def counting(path):
        read.append(Path(path))
        return real(path)

    monkeypatch.setattr(imageio, "read_mask", counting)
    return read


def test_mask_values_are_read_once_and_a_rewritten_mask_is_read_again(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    write_folder_layout(tmp_path, NAMES, style="01")
    save(tmp_path / "masks" / "p2.png", np.zeros(SIZE, np.uint8), "PNG")  # all background
    for name in NAMES:  # stored uncompressed: a rewrite of other values keeps the file's size
        path = tmp_path / "masks" / f"{name}.png"
        path.write_bytes(stored_png(np.asarray(imageio.read_mask(path))))
    age(tmp_path)
    read = count_mask_reads(monkeypatch)
    assert folder(tmp_path).names == NAMES
    assert sorted(read) == sorted(tmp_path / "masks" / f"{name}.png" for name in NAMES)
    read.clear()
    assert folder(tmp_path).names == NAMES
    assert read == [], "unchanged masks are not decoded again"
    # Same size, same inode, a later mtime: only the modification time says it changed.
    rewritten = tmp_path / "masks" / "p2.png"
    rewrite_in_place(rewritten, stored_png(banded([0, 17])), HOUR_AGO + 60)
    with pytest.raises(DataError, match=r"p2\.png holds values \{0, 17\}"):
        folder(tmp_path)
    assert read == [rewritten]
    read.clear()
    with pytest.raises(DataError, match=r"p2\.png holds values \{0, 17\}"):
        folder(tmp_path)
    assert read == [], "what was found wrong is remembered too"


def test_the_values_kept_in_the_index_are_the_masks_distinct_values(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    write_folder_layout(tmp_path, NAMES[:2])
    save(tmp_path / "masks" / "p0.png", banded([0, 1]), "PNG")
    save(tmp_path / "masks" / "p1.png", banded([255, 0]), "PNG")
    age(tmp_path)
    folder(tmp_path)
    found = file_checks.check_files(
        [(tmp_path / "masks" / f"{name}.png", "mask") for name in NAMES[:2]], tmp_path, mask_roles={"mask"}
    )
    assert [facts.values for facts in found] == [(0, 1), (0, 255)]


def test_an_index_without_values_has_them_read(tmp_path, monkeypatch):
    """Files checked for size alone (an index written by a caller that did not ask for values, or by an
    older segkit) are read for their values when a dataset needs them."""
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    write_folder_layout(tmp_path, NAMES[:3])
    save(tmp_path / "masks" / "p1.png", banded([0, 5]), "PNG")
    age(tmp_path)
    masks = [(tmp_path / "masks" / f"{name}.png", "mask") for name in NAMES[:3]]
    assert all(facts.values is None for facts in file_checks.check_files(masks, tmp_path))
    read = count_mask_reads(monkeypatch)
    with pytest.raises(DataError, match=r"holds values \{0, 5\}"):
        folder(tmp_path)
    assert tmp_path / "masks" / "p1.png" in read


@settings(max_examples=30, deadline=None)
@given(
    pixels=st.lists(st.integers(0, 65535), min_size=1, max_size=60),
    wide=st.booleans(),
    chunk=st.integers(1, 9),
)
def test_distinct_values_counted_in_bands_are_the_set_of_the_pixels(pixels, wide, chunk):
    """Counted ``chunk`` pixels at a time (bounded memory on a huge mask): every band counts, the last
    short one too."""
    dtype = np.uint16 if wide else np.uint8
    values = [value if wide else value % 256 for value in pixels]
    found = file_checks.distinct_values(np.asarray(values, dtype).reshape(1, -1), chunk)
    assert found.tolist() == sorted(set(values))
