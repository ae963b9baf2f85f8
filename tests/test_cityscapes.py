"""The "cityscapes" dataset: leftImg8bit/ + gtFine/ labelIds read in place as the 19 training classes
(plugins/segkit_builtin/cityscapes.py).

References: the label ids the fixtures wrote (``label_format_fixtures.write_cityscapes``, greyscale
PNGs written by PIL) mapped through ``OFFICIAL_TRAIN_IDS``, the trainId column of cityscapesScripts'
``helpers/labels.py`` typed out here, never the module's table.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import save
from fixtures import error_line, expect_named_failure, invoke, only_run_dir, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from label_format_fixtures import cityscapes_frame, write_cityscapes
from PIL import Image
from round_trip import assert_round_trip

import segkit
from segkit.data import imageio
from segkit.datasets import dataset_task_info
from segkit.errors import DataError

#: id -> trainId for every id a labelIds file holds (255: ignored), from cityscapesScripts'
#: helpers/labels.py; license plate (-1) is held as 255 by an unsigned byte and is ignored too.
OFFICIAL_TRAIN_IDS = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
    13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18, 255: 255,
}  # fmt: skip
OFFICIAL_CLASSES = [
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
]
#: The ids the brief and the table ignore, spelled out once more as the table's reader would list them.
IGNORED_IDS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 255]
LAYOUT = {"train": {"aachen": 2, "bochum": 2}, "val": {"frankfurt": 2}}


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """The official mapping, pixel by pixel in plain Python."""
    return np.array([[OFFICIAL_TRAIN_IDS[int(value)] for value in row] for row in label_ids], np.int64)


def cityscapes(root, split="train", **options):
    return segkit.create_dataset("cityscapes", root=root, split=split, image_size=32, **options)


@pytest.fixture
def city(tmp_path):
    root = tmp_path / "cityscapes"
    return root, write_cityscapes(root, LAYOUT)


def test_the_reference_table_ignores_what_the_official_one_ignores():
    assert sorted(k for k, v in OFFICIAL_TRAIN_IDS.items() if v == 255) == IGNORED_IDS
    assert sorted(v for v in OFFICIAL_TRAIN_IDS.values() if v != 255) == list(range(19))


def test_splits_pair_photos_with_labelids_across_city_folders_as_training_ids(city):
    root, truth = city
    train, valid = cityscapes(root), cityscapes(root, "valid")
    assert train.names == sorted(cityscapes_frame(c, i) for c in ("aachen", "bochum") for i in range(2))
    assert valid.names == [cityscapes_frame("frankfurt", i) for i in range(2)]  # val is segkit's valid
    info = dataset_task_info(train)
    assert info["task"] == "multiclass" and info["ignore_index"] == 255
    assert info["class_names"] == [name for name, _ in OFFICIAL_CLASSES]
    assert [tuple(colour) for colour in info["palette"]] == [colour for _, colour in OFFICIAL_CLASSES]
    for dataset in (train, valid):
        for index, name in enumerate(dataset.names):
            labels, ignore = dataset.original_mask(index)
            assert np.array_equal(labels, train_ids(truth[name]))
            assert np.array_equal(ignore, np.isin(truth[name], IGNORED_IDS))
    assert train[0]["mask"].shape == (1, 32, 32)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(OFFICIAL_TRAIN_IDS)), min_size=1, max_size=35),
    st.integers(1, 6),
    st.integers(1, 9),
)
def test_every_label_id_maps_to_its_official_training_id(ids, height, width):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        truth = write_cityscapes(root, {"train": {"ulm": 1}}, size=(2 * height, 2 * width), ids=ids)
        labels = truth[cityscapes_frame("ulm", 0)]
        if np.isin(labels, IGNORED_IDS).all():  # a split with no training id at all is refused (below)
            with pytest.raises(DataError, match="holds a training id"):
                cityscapes(root)
            return
        mask, _ = cityscapes(root).original_mask(0)
        assert np.array_equal(mask, train_ids(labels))


@pytest.mark.parametrize("value", [34, 100, 254])
def test_a_value_that_is_no_label_id_is_a_data_error_naming_file_and_value_before_any_run(
    city, tmp_path, value
):
    root, truth = city
    frame = cityscapes_frame("bochum", 1)
    bad = root / "gtFine" / "train" / "bochum" / f"{frame}_gtFine_labelIds.png"
    labels = truth[frame].copy()
    labels[0, :3] = value
    save(bad, Image.fromarray(labels, mode="L"), "PNG")
    with pytest.raises(DataError, match=rf"\{{{value}\}}, which are no Cityscapes label ids") as caught:
        cityscapes(root)
    assert str(bad) in str(caught.value)
    out = tmp_path / "runs"
    result = invoke("run", *tiny_run(epochs=1), "--dataset", "cityscapes", "--data-path", root, "--out", out)
    expect_named_failure(result, bad, rf"\{{{value}\}}")
    assert not out.exists() or not any(out.iterdir())


def test_a_sixteen_bit_labelids_file_is_a_data_error(city):
    root, truth = city
    frame = cityscapes_frame("aachen", 0)
    bad = root / "gtFine" / "train" / "aachen" / f"{frame}_gtFine_labelIds.png"
    save(bad, Image.fromarray(truth[frame].astype(np.uint16) * 1000), "PNG")  # an instanceIds file
    with pytest.raises(DataError, match="16-bit") as caught:
        cityscapes(root)
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize(
    "remove, message",
    [
        ("gtFine/train/aachen/{}_gtFine_labelIds.png", r"1 photo\(s\) without labels .*_leftImg8bit\.png"),
        ("leftImg8bit/train/aachen/{}_leftImg8bit.png", r"1 labels without a photo .*_gtFine_labelIds\.png"),
    ],
)
def test_photos_and_labels_that_do_not_pair_up_are_listed(city, remove, message):
    root, _ = city
    frame = cityscapes_frame("aachen", 1)
    (root / remove.format(frame)).unlink()
    with pytest.raises(DataError, match=f"do not pair up; {message}") as caught:
        cityscapes(root)
    partner = {"gtFine": "leftImg8bit/train/aachen/{}_leftImg8bit.png"}.get(
        remove.split("/")[0], "gtFine/train/aachen/{}_gtFine_labelIds.png"
    )
    assert str(root / partner.format(frame)) in str(caught.value)


def test_the_withheld_test_labels_are_refused_and_a_labelled_test_split_is_read(city, tmp_path):
    root, _ = city
    write_cityscapes(root, {"test": {"berlin": 2}}, ids=[0, 1, 2, 3])  # the official placeholders
    with pytest.raises(DataError, match=r"none of its 2 labelIds masks holds a training id .*withheld"):
        cityscapes(root, "test")
    labelled = tmp_path / "own"
    truth = write_cityscapes(labelled, {"test": {"berlin": 2}})
    dataset = cityscapes(labelled, "test")
    assert np.array_equal(dataset.original_mask(1)[0], train_ids(truth[cityscapes_frame("berlin", 1)]))


@pytest.mark.parametrize(
    "remove, message",
    [
        (
            "leftImg8bit",
            r"leftImg8bit/train does not exist; .*cityscapes holds gtFine/; the cityscapes dataset",
        ),
        ("gtFine/train", r"gtFine/train does not exist; .*gtFine holds val/; the cityscapes dataset expects"),
    ],
)
def test_a_missing_folder_names_what_was_expected_and_what_is_there(city, remove, message):
    root, _ = city
    for path in sorted((root / remove).rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / remove).rmdir()
    with pytest.raises(DataError, match=message):
        cityscapes(root)


def test_a_root_one_level_too_deep_asks_for_the_top(city):
    root, _ = city
    with pytest.raises(DataError, match=f"did you mean root={root}\\?"):
        cityscapes(root / "leftImg8bit")


def test_checked_masks_are_remembered_in_the_file_index(city, monkeypatch):
    root, _ = city
    hour_ago = time.time() - 3600  # past the index's racy window
    for path in root.rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    cityscapes(root)
    decoded = []
    monkeypatch.setattr(imageio, "read_mask", lambda path: decoded.append(path))
    assert len(cityscapes(root)) == 4 and decoded == []


def test_the_options_are_listed():
    result = invoke("plugins", "--kind", "dataset", "--options")
    listing = result.output[result.output.index("dataset  cityscapes") :]
    assert "strict" in listing.splitlines()[1]


def test_cityscapes_trains_evaluates_and_predicts_from_the_command_line(city, tmp_path):
    root, truth = city
    write_cityscapes(root, {"test": {"berlin": 1}}, ids=[0])  # the official test split: all unlabelled
    out = tmp_path / "runs"
    result = invoke(
        "run",
        *tiny_run(epochs=1, batch_size=2),
        "--recipe",
        "auto",
        "--dataset",
        "cityscapes",
        "--data-path",
        root,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["dataset"] == "cityscapes"
    evaluated = tmp_path / "evaluated"
    result = invoke("evaluate", run_dir, "--split", "valid", "-q", "-o", evaluated)
    assert result.exit_code == 0, result.output
    matrix = np.array(json.loads((evaluated / "summary.json").read_text())["confusion_matrix"]["pixels"])
    valid = [cityscapes_frame("frankfurt", index) for index in range(2)]
    counted = sum(int((~np.isin(truth[name], IGNORED_IDS)).sum()) for name in valid)  # ignored ids left out
    assert matrix.shape == (19, 19) and matrix.sum() == counted
    result = invoke("evaluate", run_dir, "-q", "-o", tmp_path / "test")  # the default split, test
    assert (
        result.exit_code == 1 and "withheld" in error_line(result) and "--split valid" in error_line(result)
    )
    assert not (tmp_path / "test").exists()
    photo = root / "leftImg8bit" / "val" / "frankfurt" / f"{valid[0]}_leftImg8bit.png"
    result = invoke("predict", run_dir, photo, "-o", tmp_path / "predicted")
    assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "predicted" / f"{valid[0]}_leftImg8bit_mask.png")
    assert mask.mode == "P" and mask.size == (64, 32) and np.asarray(mask).max() <= 18


def test_convert_writes_a_folder_that_reads_as_cityscapes_does(city, tmp_path):
    root, _ = city
    write_cityscapes(root, {"test": {"berlin": 1}}, ids=[0, 2])  # the official test split: all unlabelled
    folder = assert_round_trip(tmp_path, "cityscapes", root)
    assert sorted(path.name for path in folder.iterdir() if path.is_dir()) == ["train", "valid"]


def test_a_plain_run_gets_a_multiclass_loss(city):
    root, _ = city
    result = invoke("run", "--dataset", "cityscapes", "--data-path", root, "--print-config")
    assert result.exit_code == 0 and 'loss = "ce_dice"  # dataset cityscapes default' in result.output
