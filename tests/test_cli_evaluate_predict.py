"""``segkit evaluate`` and ``segkit predict`` end to end on a tiny Oxford-layout dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from data_fixtures import TRIMAP_BACKGROUND, trimap_array, write_oxford_layout
from PIL import Image

from segkit.cli import cli

SIZE = (36, 52)  # not square and not a multiple of 32: predictions must come back at this size
TEST_NAMES = [f"cat_{i}" for i in range(6)]


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return write_oxford_layout(
        tmp_path_factory.mktemp("pets"), [f"dog_{i}" for i in range(20)], TEST_NAMES, size=SIZE
    )


def train_tiny(root, out, *extra):
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--dataset",
            "oxford_pet",
            "--data-path",
            str(root),
            "--model",
            "unet",
            "--model-option",
            "base_channels=4",
            "--image-size",
            "32",
            "--batch-size",
            "6",
            "--epochs",
            "2",
            "--workers",
            "0",
            "--augment",
            "none",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return next(p for p in out.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def trained(pets, tmp_path_factory):
    return pets, train_tiny(pets, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def trained_with_inference_choices(pets, tmp_path_factory):
    """A run whose recipe chose flip TTA, both clean-ups and a calibrated threshold."""
    choices = ("--tta", "--fill-holes", "--keep-largest", "--calibrate-threshold", "--ema-decay", "0.9")
    return pets, train_tiny(pets, tmp_path_factory.mktemp("runs"), *choices)


def truth_mask(root, name):
    trimap = np.asarray(Image.open(root / "annotations" / "trimaps" / f"{name}.png"))
    return trimap != TRIMAP_BACKGROUND


def numpy_dice(predicted, truth):
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * (predicted & truth).sum() / total


def test_evaluate_reports_named_figures_and_writes_files(trained, tmp_path):
    root, run_dir = trained
    result = CliRunner().invoke(
        cli, ["evaluate", str(run_dir), "--split", "test", "-o", str(tmp_path), "--quiet"]
    )
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
    assert sorted(row["name"] for row in rows) == sorted(TEST_NAMES)
    assert {"dice", "iou", "foreground_fraction", "hd95", "boundary_f1"} <= set(rows[0])


def test_predict_masks_agree_with_evaluate_at_original_resolution(trained, tmp_path):
    root, run_dir = trained
    evaluation = tmp_path / "eval"
    assert (
        CliRunner()
        .invoke(
            cli,
            ["evaluate", str(run_dir), "--split", "test", "-o", str(evaluation), "--no-boundary", "--quiet"],
        )
        .exit_code
        == 0
    )
    per_image = {
        row["name"]: float(row["dice"]) for row in csv.DictReader((evaluation / "per_image.csv").open())
    }
    masks = tmp_path / "masks"
    result = CliRunner().invoke(
        cli,
        ["predict", str(run_dir), str(root / "images" / "cat_*.jpg"), "-o", str(masks), "--probabilities"],
    )
    assert result.exit_code == 0, result.output
    for name in TEST_NAMES:
        mask = np.asarray(Image.open(masks / f"{name}_mask.png"))
        assert mask.shape == SIZE and set(np.unique(mask)) <= {0, 255}
        assert Image.open(masks / f"{name}_overlay.png").size == (SIZE[1], SIZE[0])
        assert np.asarray(Image.open(masks / f"{name}_prob.png")).shape == SIZE
        # An independent numpy Dice of the written mask equals evaluate's original-resolution Dice.
        # (Batch 1 vs batch 6 changes logits by ~1e-8, and this barely trained model has logits that
        # close to 0, so a pixel or two may flip: hence the small tolerance.)
        assert numpy_dice(mask > 0, truth_mask(root, name)) == pytest.approx(per_image[name], abs=0.01)


def test_predict_postprocessing_keeps_one_component(trained, tmp_path):
    root, run_dir = trained
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(run_dir),
            str(root / "images" / "cat_0.jpg"),
            "-o",
            str(tmp_path),
            "--keep-largest",
            "--fill-holes",
            "--no-overlay",
        ],
    )
    assert result.exit_code == 0, result.output
    from skimage.measure import label

    mask = np.asarray(Image.open(tmp_path / "cat_0_mask.png")) > 0
    assert label(mask).max() <= 1
    assert not (tmp_path / "cat_0_overlay.png").exists()


def test_the_recipes_inference_choices_are_predict_and_evaluates_defaults(
    trained_with_inference_choices, tmp_path
):
    from segkit.calibration import CALIBRATION_GRID
    from segkit.checkpoint import load_checkpoint

    root, run_dir = trained_with_inference_choices
    best = load_checkpoint(run_dir / "best.pt")
    assert best["inference"] == {"tta": True, "fill_holes": True, "keep_largest": True}
    assert best["threshold"] in CALIBRATION_GRID
    evaluation = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["evaluate", str(run_dir), "--split", "test", "-o", str(evaluation), "--no-boundary", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert f"threshold {best['threshold']}" in result.output
    assert "test-time augmentation horizontal flip, post-processing fill holes, keep largest" in result.output
    per_image = {
        row["name"]: float(row["dice"]) for row in csv.DictReader((evaluation / "per_image.csv").open())
    }
    masks = tmp_path / "masks"
    result = CliRunner().invoke(
        cli, ["predict", str(run_dir), str(root / "images" / "cat_*.jpg"), "-o", str(masks)]
    )
    assert result.exit_code == 0, result.output
    from skimage.measure import label

    for name in TEST_NAMES:
        mask = np.asarray(Image.open(masks / f"{name}_mask.png")) > 0
        assert label(mask).max() <= 1  # keep_largest applied by default
        assert numpy_dice(mask, truth_mask(root, name)) == pytest.approx(per_image[name], abs=0.01)
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(run_dir),
            "--split",
            "test",
            "-o",
            str(evaluation),
            "--no-boundary",
            "-q",
            "--no-tta",
            "--no-fill-holes",
            "--no-keep-largest",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test-time augmentation none, post-processing none" in result.output


def test_export_notes_list_the_recipes_inference_steps(trained_with_inference_choices, tmp_path):
    _, run_dir = trained_with_inference_choices
    target = tmp_path / "model.pt"
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--format", "torchscript", "--no-check", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    steps = json.loads(target.with_suffix(".json").read_text())["output"]["postprocess"]
    assert "flipped" in steps[0] and "fill the holes" in steps[-2] and "largest" in steps[-1]


def test_evaluate_missing_split_file_is_a_clear_error(trained, tmp_path):
    root, run_dir = trained
    (root / "annotations" / "test.txt").rename(root / "annotations" / "test.txt.bak")
    try:
        result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--split", "test", "-o", str(tmp_path)])
    finally:
        (root / "annotations" / "test.txt.bak").rename(root / "annotations" / "test.txt")
    assert result.exit_code != 0 and "test.txt" in result.output and "Traceback" not in result.output


def test_predict_missing_input_is_a_usage_error(trained, tmp_path):
    _, run_dir = trained
    result = CliRunner().invoke(
        cli, ["predict", str(run_dir), str(tmp_path / "nope.jpg"), "-o", str(tmp_path)]
    )
    assert result.exit_code == 2 and "nope.jpg" in result.output


def test_trimap_helper_is_consistent():
    trimap = trimap_array(*SIZE, seed=3)
    assert trimap.shape == SIZE and set(np.unique(trimap)) <= {1, 2, 3}
