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
import torch
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
from fixtures import PETS_SIZE, PETS_TEST_NAMES, error_line, expect_named_failure, invoke, run_cli
from PIL import Image
from scipy import ndimage
from torch import nn

import segkit
from segkit.checkpoint_files import save_checkpoint
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segkit.inference.forward import model_logits
from segkit.plugins import get_host


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


# -- a probe model whose masks are known: post-processing and flip TTA against independent computations


class Probe(nn.Module):
    """``logit = 4 x + 2 x(one pixel to the right) - 1`` on the red channel: the mask is the photo's
    bright pixels, and the left-right asymmetry makes flip TTA change the probabilities at edges."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (1, 3), padding=(0, 1))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0] = torch.tensor([0.0, 4.0, 2.0])  # left, centre, right neighbour
            self.conv.bias.fill_(-1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


class ProbePlugin:
    @segkit.hookimpl
    def register_models(self, register):
        register("probe", Probe, description="test: logits from the photo's red channel")


PROBE_SIZE = 32  # the network input size: photos of this size are not resized on the way in


def probe_photo() -> np.ndarray:
    """White on black: a large square with a hole in it, and a small square apart from it."""
    photo = np.zeros((PROBE_SIZE, PROBE_SIZE, 3), np.uint8)
    photo[4:20, 3:19] = 255
    photo[10:14, 9:13] = 0  # the hole
    photo[24:29, 23:30] = 255  # the second component
    return photo


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """(a best.pt of the probe model, a PNG photo); the probe plugin is registered meanwhile."""
    folder = tmp_path_factory.mktemp("probe")
    host = get_host()
    host.register_plugin(ProbePlugin(), "probe-plugin", "tests")
    checkpoint = folder / "best.pt"
    save_checkpoint(
        checkpoint,
        {
            "model_name": "probe",
            "model_options": {},
            "in_channels": 3,
            "out_channels": 1,
            "image_size": PROBE_SIZE,
            "normalization": None,
            "threshold": 0.5,
            "epoch": 1,
            "model_state": Probe().state_dict(),
        },
    )
    photo = folder / "shapes.png"
    Image.fromarray(probe_photo()).save(photo)
    try:
        yield checkpoint, photo
    finally:
        host.unregister_plugin("probe-plugin")


def predicted(checkpoint, photo, out, *flags) -> np.ndarray:
    result = invoke("predict", checkpoint, photo, "-o", out, "--no-overlay", *flags)
    assert result.exit_code == 0, result.output
    return np.asarray(Image.open(out / f"{photo.stem}_mask.png")) > 0


def cleaned_by_scipy(mask: np.ndarray, fill_holes: bool, keep_largest: bool) -> np.ndarray:
    """Holes filled, then the largest 8-connected component kept: the documented order."""
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if keep_largest and mask.any():
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        mask = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    return mask


@pytest.mark.parametrize(
    "fill_holes, keep_largest", [(True, True), (True, False), (False, True)], ids=["both", "fill", "largest"]
)
def test_predict_postprocessing_against_scipy(probe, tmp_path, fill_holes, keep_largest):
    checkpoint, photo = probe
    raw = predicted(checkpoint, photo, tmp_path / "raw", "--no-fill-holes", "--no-keep-largest")
    # The raw mask is the photo's bright pixels: two components, one with a hole, so that each step
    # has something to do.
    assert np.array_equal(raw, probe_photo()[..., 0] > 0)
    assert ndimage.label(raw, structure=np.ones((3, 3)))[1] == 2
    assert ndimage.binary_fill_holes(raw).sum() > raw.sum()
    flags = ["--fill-holes" if fill_holes else "--no-fill-holes"]
    flags.append("--keep-largest" if keep_largest else "--no-keep-largest")
    cleaned = predicted(checkpoint, photo, tmp_path / "cleaned", *flags)
    expected = cleaned_by_scipy(raw, fill_holes, keep_largest)
    assert expected.any() and not np.array_equal(expected, raw)
    assert np.array_equal(cleaned, expected)


def independent_probabilities(checkpoint, photo: np.ndarray, tta: bool) -> np.ndarray:
    """sigmoid of the probe's logits, from the checkpoint's weights, in plain PyTorch: ImageNet
    normalisation, and with ``tta`` ``(m(x) + m(x.flip(-1)).flip(-1)) / 2``."""
    model = Probe()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model_state"])
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = ((torch.from_numpy(photo).permute(2, 0, 1).float() / 255 - mean) / std)[None]
    with torch.no_grad():
        logits = model(x)
        if tta:
            logits = (logits + model(x.flip(-1)).flip(-1)) / 2
    return torch.sigmoid(logits)[0, 0].numpy()


def test_flip_tta_is_the_mean_of_the_plain_and_the_mirrored_pass(probe, tmp_path):
    checkpoint, photo = probe
    written = {}
    for tta in (True, False):
        out = tmp_path / str(tta)
        predicted(checkpoint, photo, out, "--tta" if tta else "--no-tta", "--probabilities")
        written[tta] = np.asarray(Image.open(out / f"{photo.stem}_prob.png")) / 255
    expected = {tta: independent_probabilities(checkpoint, probe_photo(), tta) for tta in (True, False)}
    # The two differ by far more than the 8-bit rounding of the written maps: the check can fail.
    assert np.abs(expected[True] - expected[False]).max() > 0.02
    for tta in (True, False):
        assert np.abs(written[tta] - expected[tta]).max() <= 0.5 / 255 + 1e-6, f"tta={tta}"


def test_model_logits_flip_tta_against_plain_pytorch():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, (3, 5), padding=(1, 2)), nn.ReLU(), nn.Conv2d(4, 2, (1, 3), padding=(0, 1))
    )
    images = torch.randn(2, 3, 9, 14)
    with torch.no_grad():
        expected = (model(images) + model(images.flip(-1)).flip(-1)) / 2
        torch.testing.assert_close(model_logits(model, images, tta=True), expected)
        torch.testing.assert_close(model_logits(model, images, tta=False), model(images))
        assert not torch.allclose(expected, model(images), atol=1e-3)


def test_the_recipes_inference_choices_are_predict_and_evaluates_defaults(
    pets_run_with_inference_choices, tmp_path
):
    from segkit.checkpoint_files import load_checkpoint
    from segkit.metrics.calibration import CALIBRATION_GRID

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
    masks, raw_masks = tmp_path / "masks", tmp_path / "raw"
    result = run_cli("predict", run_dir, root / "images" / "cat_*.jpg", "-o", masks)
    assert result.exit_code == 0, result.output
    result = run_cli(
        "predict",
        run_dir,
        root / "images" / "cat_*.jpg",
        "-o",
        raw_masks,
        "--no-fill-holes",
        "--no-keep-largest",
    )
    assert result.exit_code == 0, result.output
    for name in PETS_TEST_NAMES:
        mask = np.asarray(Image.open(masks / f"{name}_mask.png")) > 0
        raw = np.asarray(Image.open(raw_masks / f"{name}_mask.png")) > 0
        # Both clean-ups applied by default, as scipy does them to the mask predicted without them.
        assert np.array_equal(mask, cleaned_by_scipy(raw, fill_holes=True, keep_largest=True)), name
        assert numpy_dice(mask, truth_mask(root, name)) == pytest.approx(per_image[name], abs=0.01)
    result = run_cli(
        "evaluate",
        run_dir,
        "--split",
        "test",
        "-o",
        tmp_path / "eval-without-choices",
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


# -- what predict says: the flip TTA it applied, a dataset root, photos far larger than the network input


@pytest.mark.parametrize(("flags", "said"), [((), "none"), (("--tta",), "horizontal flip")])
def test_the_summary_says_which_test_time_augmentation_it_applied(probe, tmp_path, flags, said):
    checkpoint, photo = probe
    result = invoke("predict", checkpoint, photo, "-o", tmp_path, *flags)
    assert result.exit_code == 0, result.output
    assert f"test-time augmentation {said}, post-processing none" in result.output


def test_the_summary_says_the_recipes_flip_tta(pets_run_with_inference_choices, tmp_path):
    root, run_dir = pets_run_with_inference_choices
    result = invoke("predict", run_dir, root / "images" / f"{PETS_TEST_NAMES[0]}.jpg", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "test-time augmentation horizontal flip, post-processing fill holes, keep largest" in result.output


def test_a_dataset_root_points_at_its_images_folder(probe, tmp_path):
    checkpoint, photo = probe
    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    Image.open(photo).save(tmp_path / "data" / "images" / "a.png")
    result = run_cli("predict", checkpoint, tmp_path / "data", "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert f"give {tmp_path / 'data' / 'images'}" in error_line(result) and "Traceback" not in result.output


def test_photos_much_larger_than_the_network_input_get_one_hint_about_tiles(probe, tmp_path):
    """A 3000 x 3000 photo through a model trained on whole photos resized to 64 px was shrunk to 64 px
    without a word."""
    checkpoint, _ = probe
    folder = tmp_path / "photos"
    folder.mkdir()
    sides = {"small": PROBE_SIZE * 2, "large": PROBE_SIZE * 8, "larger": PROBE_SIZE * 9}
    for name, side in sides.items():
        Image.fromarray(np.full((side, side // 2 + 1, 3), 90, np.uint8)).save(folder / f"{name}.png")
    result = invoke("predict", checkpoint, folder, "-o", tmp_path / "out", "--no-overlay")
    assert result.exit_code == 0, result.output
    hints = [line for line in result.output.splitlines() if "--tile" in line]
    assert len(hints) == 1, result.output
    assert "large.png" in hints[0] and f"{PROBE_SIZE}x{PROBE_SIZE}" in hints[0]
    result = invoke("predict", checkpoint, folder / "small.png", "-o", tmp_path / "small", "--no-overlay")
    assert "--tile" not in result.output
