"""``segkit evaluate`` (segkit.reporting.evaluation): the figures and files it writes for a trained run, its
post-processing, and what it does with bad data files, missing splits and output folders it cannot
make. Runs come from conftest: ``pets_run`` (a tiny Oxford-layout dataset) and ``tiny_checkpoint``.
"""

from __future__ import annotations

import csv
import json
import re
import warnings

import numpy as np
import pytest
import torch
from data_fixtures import (
    BAD_STEM,
    CASES,
    CORPUS_SIZE,
    ERROR,
    GOOD_STEMS,
    IMAGE_CASES,
    LOADS,
    SKIPPED,
    encoded,
    folder_dataset,
    huge_png,
    mask_array,
    photo_array,
    write,
    write_split_file,
)
from fixtures import PETS_TEST_NAMES, expect_named_failure, invoke, run_cli
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from segkit.reporting.evaluation import cleaned_logits
from segkit.task import BinaryTask
from segkit_builtin.folder import SkippedFilesWarning


def test_evaluate_reports_named_figures_and_writes_files(pets_run, tmp_path):
    root, run_dir = pets_run
    result = run_cli("evaluate", run_dir, "--split", "test", "-o", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "test split, 6 images, threshold 0.5" in result.output
    assert "per-image mean" in result.output and "dataset-pooled" in result.output
    assert "original mask size" in result.output and "32x32 network input" in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["split"] == "test" and summary["threshold"] == 0.5 and summary["images"] == 6
    for key in ("original_resolution", "network_resolution"):
        for metric in ("dice_per_image", "dice_dataset", "iou_per_image", "iou_dataset"):
            assert 0.0 <= summary[key][metric] <= 1.0
    rows = list(csv.DictReader((tmp_path / "per_image.csv").open()))
    assert sorted(row["name"] for row in rows) == sorted(PETS_TEST_NAMES)
    assert {"dice", "iou", "foreground_fraction", "hd95", "boundary_f1"} <= set(rows[0])


def test_evaluate_missing_split_file_is_a_clear_error(pets_run, tmp_path):
    root, run_dir = pets_run
    (root / "annotations" / "test.txt").rename(root / "annotations" / "test.txt.bak")
    try:
        result = run_cli("evaluate", run_dir, "--split", "test", "-o", tmp_path)
    finally:
        (root / "annotations" / "test.txt.bak").rename(root / "annotations" / "test.txt")
    assert result.exit_code != 0 and "test.txt" in result.output and "Traceback" not in result.output


# -- bad files (the corpus in data_fixtures) -----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_evaluate_on_a_folder_dataset(tmp_path, tiny_checkpoint, case):
    bad = folder_dataset(tmp_path / "data", case)["test"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(
            "evaluate",
            tiny_checkpoint,
            "--dataset",
            "folder",
            "--data-path",
            tmp_path / "data",
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            tmp_path / "eval",
        )
    skip_warnings = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    if case.outcome == ERROR:
        expect_named_failure(result, bad[case.culprit], case.message)
        return
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    expected_images = len(GOOD_STEMS) + (case.outcome == LOADS)
    assert summary["images"] == expected_images
    if case.outcome == SKIPPED:
        (warning,) = skip_warnings
        assert str(bad[case.culprit]) in warning and re.search(case.message, warning), warning
    else:
        assert not skip_warnings
        assert f"{BAD_STEM}" in (tmp_path / "eval" / "per_image.csv").read_text()


# -- bad photos through `segkit evaluate` on the Oxford-IIIT Pet layout --------------------------------


def trimap(size: tuple[int, int]) -> np.ndarray:
    return np.where(mask_array(*size) > 0, 1, 2).astype(np.uint8)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_evaluate_on_the_oxford_pet_layout(tmp_path, tiny_checkpoint, case):
    root = tmp_path / "pets"
    for seed, name in enumerate(GOOD_STEMS):
        write(root / "images" / f"{name}.jpg", encoded(photo_array(*CORPUS_SIZE, seed), "JPEG"))
        write(root / "annotations" / "trimaps" / f"{name}.png", encoded(trimap(CORPUS_SIZE), "PNG"))
    bad_photo, size = case.image(root / "images", BAD_STEM)
    big = size[0] * size[1] > 1_000_000  # the 10000x10000 case: the same cheap bilevel PNG will do
    write(
        root / "annotations" / "trimaps" / f"{BAD_STEM}.png",
        huge_png() if big else encoded(trimap(size), "PNG"),
    )
    write_split_file(root / "annotations" / "test.txt", [*GOOD_STEMS, BAD_STEM])
    write_split_file(root / "annotations" / "trainval.txt", GOOD_STEMS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(
            "evaluate",
            tiny_checkpoint,
            "--dataset",
            "oxford_pet",
            "--data-path",
            root,
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            tmp_path / "eval",
        )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    skip_warnings = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    if case.outcome == LOADS:
        assert summary["images"] == len(GOOD_STEMS) + 1 and not skip_warnings
    else:
        assert summary["images"] == len(GOOD_STEMS)
        (warning,) = skip_warnings
        assert str(bad_photo) in warning and re.search(case.message, warning), warning


# -- --device ------------------------------------------------------------------------------------------


def device_help(command: str) -> str:
    text = " ".join(invoke(command, "--help").output.split())
    return re.search(r"--device TEXT (.*?\[default: \w+\])", text).group(1)


@pytest.mark.parametrize("command", ["evaluate", "predict", "report"])
def test_device_is_described_as_segkit_run_describes_it(command):
    assert device_help(command) == device_help("run")


# -- where results go ----------------------------------------------------------------------------------


def test_evaluate_output_folder_that_cannot_be_made(tmp_path, tiny_checkpoint, regular_file):
    folder_dataset(tmp_path / "data", IMAGE_CASES[-1])
    result = invoke(
        "evaluate",
        tiny_checkpoint,
        "--dataset",
        "folder",
        "--data-path",
        tmp_path / "data",
        "--quiet",
        "--no-boundary",
        "-o",
        regular_file / "eval",
    )
    expect_named_failure(result, regular_file / "eval", "cannot be created", exit_code=2)


@pytest.mark.slow
def test_a_skipped_file_is_reported_on_stderr_without_a_traceback(tmp_path, tiny_checkpoint):
    """What a user sees in a terminal (a subprocess, where pytest does not capture warnings)."""
    from distributions import run_segkit

    bad = folder_dataset(tmp_path / "data", IMAGE_CASES[0])["test"]["image"]
    result = run_segkit(
        [
            "evaluate",
            str(tiny_checkpoint),
            "--dataset",
            "folder",
            "--data-path",
            str(tmp_path / "data"),
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            str(tmp_path / "eval"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "left out 1 unreadable file pair(s) (--dataset-option strict=true makes this an error): "
        f"bad: image file {bad} is empty" in result.stderr
    )


# -- post-processing -----------------------------------------------------------------------------------


masks = st.integers(4, 12).flatmap(
    lambda side: st.lists(st.booleans(), min_size=side * side, max_size=side * side).map(
        lambda bits: np.array(bits).reshape(side, side)
    )
)


@given(mask=masks, fill=st.booleans(), keep=st.booleans())
def test_post_processed_logits_decide_exactly_the_cleaned_mask(mask, fill, keep):
    logits = torch.where(torch.from_numpy(mask), 2.0, -2.0)[None, None]
    steps = {k: v for k, v in (("fill_holes", fill), ("keep_largest", keep)) if v}
    cleaned = cleaned_logits(logits, BinaryTask(0.5), steps)
    if not steps:
        assert cleaned is logits
        return
    expected = mask.copy()
    if fill:
        expected = ndimage.binary_fill_holes(expected)
    if keep and expected.any():
        labels, count = ndimage.label(expected, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        expected = labels == (int(sizes.argmax()) + 1)
    # The cleaned mask reads the same at any threshold: its logits are decided (+-30).
    for threshold in (0.1, 0.5, 0.9):
        assert np.array_equal((torch.sigmoid(cleaned[0, 0]) > threshold).numpy(), expected)
