"""``segkit predict``: masks at each photo's own size that agree with ``segkit evaluate``, the
post-processing and the run's inference choices as defaults, and what it does with bad, missing and
unreadable inputs and output folders it cannot make. Runs come from conftest: ``pets_run`` and
``pets_run_with_inference_choices`` (a tiny Oxford-layout dataset) and ``tiny_checkpoint``.
"""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from data_fixtures import (
    BAD_STEM,
    IMAGE_CASES,
    LOADS,
    TRIMAP_BACKGROUND,
    corpus_photo,
    encoded,
    huge_png,
    write,
)
from fixtures import PETS_SIZE, PETS_TEST_NAMES, expect_named_failure, invoke, run_cli
from PIL import Image


def truth_mask(root, name):
    trimap = np.asarray(Image.open(root / "annotations" / "trimaps" / f"{name}.png"))
    return trimap != TRIMAP_BACKGROUND


def numpy_dice(predicted, truth):
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * (predicted & truth).sum() / total


def test_predict_masks_agree_with_evaluate_at_original_resolution(pets_run, tmp_path):
    root, run_dir = pets_run
    evaluation = tmp_path / "eval"
    result = run_cli("evaluate", run_dir, "--split", "test", "-o", evaluation, "--no-boundary", "--quiet")
    assert result.exit_code == 0
    per_image = {
        row["name"]: float(row["dice"]) for row in csv.DictReader((evaluation / "per_image.csv").open())
    }
    masks = tmp_path / "masks"
    result = run_cli("predict", run_dir, root / "images" / "cat_*.jpg", "-o", masks, "--probabilities")
    assert result.exit_code == 0, result.output
    for name in PETS_TEST_NAMES:
        mask = np.asarray(Image.open(masks / f"{name}_mask.png"))
        assert mask.shape == PETS_SIZE and set(np.unique(mask)) <= {0, 255}
        assert Image.open(masks / f"{name}_overlay.png").size == (PETS_SIZE[1], PETS_SIZE[0])
        assert np.asarray(Image.open(masks / f"{name}_prob.png")).shape == PETS_SIZE
        # An independent numpy Dice of the written mask equals evaluate's original-resolution Dice.
        # (Batch 1 vs batch 6 changes logits by ~1e-8, and this barely trained model has logits that
        # close to 0, so a pixel or two may flip: hence the small tolerance.)
        assert numpy_dice(mask > 0, truth_mask(root, name)) == pytest.approx(per_image[name], abs=0.01)


def test_predict_postprocessing_keeps_one_component(pets_run, tmp_path):
    root, run_dir = pets_run
    result = run_cli(
        "predict",
        run_dir,
        root / "images" / "cat_0.jpg",
        "-o",
        tmp_path,
        "--keep-largest",
        "--fill-holes",
        "--no-overlay",
    )
    assert result.exit_code == 0, result.output
    from skimage.measure import label

    mask = np.asarray(Image.open(tmp_path / "cat_0_mask.png")) > 0
    assert label(mask).max() <= 1
    assert not (tmp_path / "cat_0_overlay.png").exists()


def test_the_recipes_inference_choices_are_predict_and_evaluates_defaults(
    pets_run_with_inference_choices, tmp_path
):
    from segkit.calibration import CALIBRATION_GRID
    from segkit.checkpoint import load_checkpoint

    root, run_dir = pets_run_with_inference_choices
    best = load_checkpoint(run_dir / "best.pt")
    assert best["inference"] == {"tta": True, "fill_holes": True, "keep_largest": True}
    assert best["threshold"] in CALIBRATION_GRID
    evaluation = tmp_path / "eval"
    result = run_cli("evaluate", run_dir, "--split", "test", "-o", evaluation, "--no-boundary", "-q")
    assert result.exit_code == 0, result.output
    assert f"threshold {best['threshold']}" in result.output
    assert "test-time augmentation horizontal flip, post-processing fill holes, keep largest" in result.output
    per_image = {
        row["name"]: float(row["dice"]) for row in csv.DictReader((evaluation / "per_image.csv").open())
    }
    masks = tmp_path / "masks"
    result = run_cli("predict", run_dir, root / "images" / "cat_*.jpg", "-o", masks)
    assert result.exit_code == 0, result.output
    from skimage.measure import label

    for name in PETS_TEST_NAMES:
        mask = np.asarray(Image.open(masks / f"{name}_mask.png")) > 0
        assert label(mask).max() <= 1  # keep_largest applied by default
        assert numpy_dice(mask, truth_mask(root, name)) == pytest.approx(per_image[name], abs=0.01)
    result = run_cli(
        "evaluate",
        run_dir,
        "--split",
        "test",
        "-o",
        evaluation,
        "--no-boundary",
        "-q",
        "--no-tta",
        "--no-fill-holes",
        "--no-keep-largest",
    )
    assert result.exit_code == 0, result.output
    assert "test-time augmentation none, post-processing none" in result.output


def test_predict_missing_input_is_a_usage_error(pets_run, tmp_path):
    _, run_dir = pets_run
    result = run_cli("predict", run_dir, tmp_path / "nope.jpg", "-o", tmp_path)
    assert result.exit_code == 2 and "nope.jpg" in result.output


# -- bad photos (the corpus in data_fixtures) -----------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_predict(tmp_path, tiny_checkpoint, case):
    good = write(tmp_path / "in" / "good.jpg", encoded(corpus_photo(), "JPEG"))
    bad, size = case.image(tmp_path / "in", BAD_STEM)
    out = tmp_path / "out"
    result = invoke("predict", tiny_checkpoint, good, bad, "-o", out, "--no-overlay")
    mask_of_good = out / "good_mask.png"
    assert mask_of_good.is_file(), "a bad input must not stop the good ones"
    if case.outcome == LOADS:
        assert result.exit_code == 0, result.output
        with Image.open(out / f"{BAD_STEM}_mask.png") as mask:
            assert (mask.height, mask.width) == size
        return
    assert result.exit_code == 1, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and str(bad) in skipped[0] and re.search(case.message, skipped[0]), result.output
    assert "1 file(s) could not be read" in result.output
    assert not (out / f"{BAD_STEM}_mask.png").exists()


def test_predict_refuses_the_huge_image_before_decoding_it(tmp_path, tiny_checkpoint, monkeypatch):
    """The 100-megapixel file is refused from its header: no pixel is decoded, no memory spent."""
    bad = write(tmp_path / "scan.png", huge_png())
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size))
    result = invoke("predict", tiny_checkpoint, bad, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "MAX_IMAGE_PIXELS = 50,000,000" in result.output, result.output
    assert decoded == []


def test_predict_inputs_that_do_not_exist_are_usage_errors(tmp_path, tiny_checkpoint):
    result = invoke("predict", tiny_checkpoint, tmp_path / "nowhere.jpg", "-o", tmp_path / "out")
    expect_named_failure(result, tmp_path / "nowhere.jpg", "does not exist", exit_code=2)
    (tmp_path / "empty").mkdir()
    result = invoke("predict", tiny_checkpoint, tmp_path / "empty", "-o", tmp_path / "out")
    expect_named_failure(result, tmp_path / "empty", "no input images found", exit_code=2)


# -- where results go ----------------------------------------------------------------------------------


def test_predict_output_folder_that_cannot_be_made(tmp_path, tiny_checkpoint, regular_file):
    image = write(tmp_path / "in.jpg", encoded(corpus_photo(), "JPEG"))
    result = invoke("predict", tiny_checkpoint, image, "-o", regular_file / "out")
    expect_named_failure(result, regular_file / "out", "cannot be created", exit_code=2)
