"""The "voc" dataset: Pascal VOC's segmentation layout read in place (plugins/segkit_builtin/voc.py).

References: the labels the fixtures wrote (``label_format_fixtures.write_voc``, palette PNGs written by
PIL with VOC's palette typed out from its documentation) and VOC's class list typed out here.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from data_fixtures import photo_array, save
from fixtures import error_line, expect_named_failure, invoke, only_run_dir, tiny_run
from label_format_fixtures import (
    VOC_BORDER,
    VOC_COLOURS,
    voc_mask_array,
    voc_mask_image,
    write_list,
    write_voc,
)
from PIL import Image
from round_trip import assert_round_trip

import segkit
from segkit.data import imageio
from segkit.datasets import SkippedFilesWarning, dataset_task_info
from segkit.errors import DataError, UsageError

VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor"
).split()
TRAIN = ["2007_000032", "2007_000039", "2007_000063", "2008_000008"]
VAL = ["2007_000033", "2007_000042"]


def voc(root, split="train", **options):
    return segkit.create_dataset("voc", root=root, split=split, image_size=32, **options)


@pytest.fixture
def year(tmp_path):
    """``tmp/VOCdevkit/VOC2012`` with train.txt and val.txt, and the labels written."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    return root, write_voc(root, {"train": TRAIN, "val": VAL})


def test_splits_are_the_lists_and_masks_are_palette_indices_with_the_border_ignored(year):
    root, truth = year
    train, valid = voc(root), voc(root, "valid")
    assert train.names == sorted(TRAIN) and valid.names == sorted(VAL)  # val.txt is segkit's valid
    info = dataset_task_info(train)
    assert info["task"] == "multiclass" and info["class_names"] == VOC_CLASSES
    assert [tuple(colour) for colour in info["palette"]] == VOC_COLOURS and info["ignore_index"] == 255
    for dataset in (train, valid):
        for index, name in enumerate(dataset.names):
            labels, ignore = dataset.original_mask(index)
            assert np.array_equal(labels, truth[name].astype(np.int64))  # indices, border 255 kept
            assert np.array_equal(ignore, truth[name] == VOC_BORDER) and ignore.any()
    item = train[0]
    assert item["mask"].shape == (1, 32, 32) and bool(item["ignore"].any())


def test_masks_are_read_by_index_whatever_colours_their_palette_gives(tmp_path):
    root = tmp_path / "VOC2012"
    truth = write_voc(root, {"train": TRAIN[:2], "val": VAL[:1]})
    shuffled = [value for index in range(256) for value in ((index * 37) % 256, index, 255 - index)]
    name = TRAIN[0]
    voc_mask_image(truth[name], shuffled).save(root / "SegmentationClass" / f"{name}.png")
    labels, _ = voc(root).original_mask(0)
    assert np.array_equal(labels, truth[name])


@pytest.mark.parametrize("given", ["", "VOCdevkit"])
def test_the_folders_above_the_year_are_accepted_and_the_year_named(year, tmp_path, given):
    root, _ = year
    dataset = voc(tmp_path / given if given else tmp_path)
    assert dataset.names == sorted(TRAIN)
    assert str(root) in dataset.description and "found in root" in dataset.description


def test_several_years_under_the_root_ask_for_one(year, tmp_path):
    write_voc(tmp_path / "VOCdevkit" / "VOC2007", {"train": TRAIN[:1], "val": VAL[:1]})
    with pytest.raises(
        UsageError, match=r"several VOC years .*VOC2007.*VOC2012.*did you mean root=.*VOC2012"
    ):
        voc(tmp_path)


def test_a_palette_index_beyond_20_is_a_data_error_naming_file_and_value_before_any_run(year, tmp_path):
    root, truth = year
    ids = truth[TRAIN[1]].copy()
    ids[ids == VOC_BORDER] = 21
    bad = root / "SegmentationClass" / f"{TRAIN[1]}.png"
    voc_mask_image(ids).save(bad)
    with pytest.raises(DataError, match=r"\{21\}.*21 classes \(ids 0\.\.20\) and 255 means ignore") as caught:
        voc(root)
    assert str(bad) in str(caught.value)
    out = tmp_path / "runs"
    result = invoke("run", *tiny_run(epochs=1), "--dataset", "voc", "--data-path", root, "--out", out)
    expect_named_failure(result, bad, r"\{21\}")
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_a_colour_mask_is_a_data_error_asking_for_index_masks(year):
    root, truth = year
    bad = root / "SegmentationClass" / f"{VAL[0]}.png"
    voc_mask_image(truth[VAL[0]]).convert("RGB").save(bad)
    with pytest.raises(DataError, match="colour .*class ids") as caught:
        voc(root, "valid")
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize("missing", ["JPEGImages/{}.jpg", "SegmentationClass/{}.png"])
def test_a_listed_name_without_its_files_is_left_out_with_a_warning_or_strict_an_error(year, missing):
    root, _ = year
    gone = root / missing.format(TRAIN[2])
    gone.unlink()
    with pytest.warns(SkippedFilesWarning, match=f"{TRAIN[2]}: .*{gone}.* does not exist"):
        dataset = voc(root)
    assert dataset.names == sorted(set(TRAIN) - {TRAIN[2]})
    with pytest.raises(DataError, match=f"{gone}.* does not exist"):
        voc(root, strict=True)


def test_test_is_refused_without_labels_naming_the_valid_split(year):
    root, _ = year
    with pytest.raises(
        DataError, match=r"test\.txt does not exist .*holds train\.txt.*split to score is valid \(val\.txt\)"
    ):
        voc(root, "test")
    # The VOC2012 test download: a test list and photos, no masks.
    write_list(root / "ImageSets" / "Segmentation" / "test.txt", ["2008_000001", "2008_000002"])
    for seed, name in enumerate(["2008_000001", "2008_000002"]):
        save(root / "JPEGImages" / f"{name}.jpg", photo_array(36, 44, seed), "JPEG")
    with pytest.raises(DataError, match=r"none of the 2 photos .*test\.txt lists has a mask.*not public"):
        voc(root, "test")


def test_a_year_with_test_labels_has_a_test_split(tmp_path):
    root = tmp_path / "VOC2007"
    truth = write_voc(root, {"train": TRAIN[:2], "val": VAL[:1], "test": ["000001", "000002"]})
    dataset = voc(root, "test")
    assert dataset.names == ["000001", "000002"]
    assert np.array_equal(dataset.original_mask(1)[0], truth["000002"])


@pytest.mark.parametrize(
    "remove, message",
    [
        ("SegmentationClass", r"voc folder .*SegmentationClass does not exist; .* holds Annotations/, "),
        ("ImageSets/Segmentation", r"ImageSets/Segmentation does not exist; .*holds Main/"),
        (
            "ImageSets/Segmentation/train.txt",
            r"split file .*train\.txt does not exist \(.* holds trainval\.txt",
        ),
    ],
)
def test_a_missing_folder_or_list_names_what_was_expected_and_what_is_there(year, remove, message):
    root, _ = year
    target = root / remove
    if target.is_dir():
        for path in target.iterdir():
            path.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DataError, match=message) as caught:
        voc(root)
    assert str(target) in str(caught.value)


def test_a_root_inside_the_year_asks_for_the_year_and_an_empty_root_says_what_voc_expects(year, tmp_path):
    root, _ = year
    with pytest.raises(DataError, match=f"did you mean root={root}\\?"):
        voc(root / "JPEGImages")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match="JPEGImages does not exist; .* holds nothing; the voc dataset expects"
    ):
        voc(tmp_path / "empty")


def test_checked_masks_are_remembered_in_the_file_index(year, monkeypatch):
    root, _ = year
    hour_ago = time.time() - 3600  # past the index's racy window
    for path in root.rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    voc(root)
    decoded = []
    monkeypatch.setattr(imageio, "read_mask", lambda path: decoded.append(path))
    assert voc(root).names == sorted(TRAIN) and decoded == []


def test_the_options_are_listed():
    result = invoke("plugins", "--kind", "dataset", "--options")
    listing = result.output[result.output.index("dataset  voc") :]
    assert "strict" in listing.splitlines()[1]


def test_voc_trains_evaluates_and_predicts_from_the_command_line(year, tmp_path):
    root, truth = year
    out = tmp_path / "runs"
    result = invoke(
        "run",
        *tiny_run(epochs=1, batch_size=2, loss="ce_dice"),
        "--dataset",
        "voc",
        "--data-path",
        root,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["dataset"] == "voc" and config["data_path"] == str(root)
    assert config["loss"] in ("ce", "ce_dice", "softmax_dice", "multiclass_focal", "multiclass_tversky")
    evaluated = tmp_path / "evaluated"
    result = invoke("evaluate", run_dir, "--split", "valid", "-q", "-o", evaluated)
    assert result.exit_code == 0, result.output
    summary = json.loads((evaluated / "summary.json").read_text())
    matrix = np.array(summary["confusion_matrix"]["pixels"])
    counted = sum(int((truth[name] != VOC_BORDER).sum()) for name in VAL)  # original size, border left out
    assert matrix.shape == (21, 21) and matrix.sum() == counted
    result = invoke("evaluate", run_dir, "-q", "-o", tmp_path / "test")  # the default split, test
    assert result.exit_code == 1 and "--split valid" in error_line(result)
    assert not (tmp_path / "test").exists()
    result = invoke("predict", run_dir, root / "JPEGImages" / f"{VAL[0]}.jpg", "-o", tmp_path / "predicted")
    assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "predicted" / f"{VAL[0]}_mask.png")
    assert mask.mode == "P" and mask.size == (44, 36) and np.asarray(mask).max() <= 20


def test_the_fixture_masks_are_what_voc_documents():
    """The writer itself: a palette PNG whose indices are the ids and whose colours are VOC's."""
    ids = voc_mask_array(20, 30, seed=1, classes=[15, 8])
    image = voc_mask_image(ids)
    assert image.mode == "P" and np.array_equal(np.asarray(image), ids)
    rgb = np.asarray(image.convert("RGB"))
    assert tuple(rgb[ids == 15][0]) == (192, 128, 128) and tuple(rgb[ids == 255][0]) == (224, 224, 192)


def test_convert_writes_a_folder_that_reads_as_voc_does(year, tmp_path):
    root, _ = year
    write_list(root / "ImageSets" / "Segmentation" / "test.txt", ["2008_000001"])  # VOC2012's: no masks
    save(root / "JPEGImages" / "2008_000001.jpg", photo_array(36, 44, 9), "JPEG")
    folder = assert_round_trip(tmp_path, "voc", tmp_path)  # from the folder above VOCdevkit
    assert sorted(path.name for path in folder.iterdir() if path.is_dir()) == ["train", "valid"]


def test_a_plain_run_gets_a_multiclass_loss(year):
    root, _ = year
    result = invoke("run", "--dataset", "voc", "--data-path", root, "--print-config")
    assert result.exit_code == 0 and 'loss = "ce_dice"  # dataset voc default' in result.output
