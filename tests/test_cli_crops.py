"""Training on crops at native resolution, and tiled validation, evaluation and prediction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import photo_array, write_folder_layout
from fixtures import error_line, invoke, only_run_dir, run_cli, tiny_run
from PIL import Image

import segkit
from segkit.checkpoint_files import load_checkpoint
from segkit.inference.predictor import IMAGENET_NORMALIZATION, TrainedModel
from segkit.inference.tiling import predict_tiled_mask, sliding_window_logits
from segkit.task import MulticlassTask


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    write_folder_layout(root / "data", [f"p{i}" for i in range(10)], size=(40, 56))
    args = tiny_run(epochs=1, batch_size=4, crop_size=16, tile=24, image_size=16)
    options = ["--dataset", "folder", "--data-path", root / "data", "--dataset-option", "valid_fraction=0.2"]
    result = invoke("run", *args, *options, "--out", root / "runs")
    assert result.exit_code == 0, result.output
    return root, only_run_dir(root / "runs"), result.output


def test_a_crop_run_validates_whole_photos_through_tiles_and_records_it(crop_run):
    _, run_dir, output = crop_run
    assert "native resolution, 24x24 tiles" in output
    labels = json.loads((run_dir / "config.json").read_text())["metrics"]
    assert "native resolution" in labels["valid_dice"]
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["inference"]["tile"] == 24 and checkpoint["inference"]["blend"] == "gaussian"
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[1].split(",")[rows[0].split(",").index("train_image_size")] == "16"


def test_predict_tiles_by_default_and_keeps_the_photo_size(crop_run, tmp_path):
    root, run_dir, _ = crop_run
    photo = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(photo)
    result = invoke("predict", run_dir, photo, "-o", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "24x24 tiles at native resolution" in result.output
    assert Image.open(tmp_path / "out" / "big_mask.png").size == (90, 70)
    resized = invoke("predict", run_dir, photo, "-o", tmp_path / "resized", "--no-tile", "--device", "cpu")
    assert "network input" in resized.output


def test_evaluate_tiles_by_default(crop_run):
    _, run_dir, _ = crop_run
    result = invoke("evaluate", run_dir, "--split", "valid", "--device", "cpu", "-q", "--no-boundary")
    assert result.exit_code == 0, result.output
    assert "native resolution, 24x24 tiles" in result.output


def test_max_pixels_lets_predict_read_a_photo_beyond_the_default_limit(crop_run, tmp_path, monkeypatch):
    import segkit.data.imageio as imageio

    _, run_dir, _ = crop_run
    photo = tmp_path / "large.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(photo)
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 1000)  # stands in for the 50-million default
    refused = invoke("predict", run_dir, photo, "-o", tmp_path / "refused", "--device", "cpu")
    assert refused.exit_code == 1 and "refusing to decode" in refused.output
    accepted = invoke(
        "predict", run_dir, photo, "-o", tmp_path / "ok", "--max-pixels", 2000, "--device", "cpu"
    )
    assert accepted.exit_code == 0, accepted.output
    assert imageio.MAX_IMAGE_PIXELS == 1000  # the limit is back as it was


# -- tiles against the whole photo, with the built-in UNet ---------------------------------------------


def whole_photo_probability(trained, pixels: np.ndarray) -> np.ndarray:
    """The reference: the trained network run once on the whole photo at native resolution, normalised
    here with numpy (no tiling, no segkit inference code)."""
    mean, std = np.array(trained.normalization["mean"]), np.array(trained.normalization["std"])
    normalised = ((pixels / 255.0 - mean) / std).transpose(2, 0, 1)[None]
    with torch.no_grad():
        logits = trained.model(torch.tensor(normalised, dtype=torch.float32))
    return torch.sigmoid(logits)[0, 0].numpy()


def signal_carrying_unet(seed: int) -> torch.nn.Module:
    """The built-in UNet (width 4) with He-normal convolution weights: every path, the deepest
    included, carries signal, so a pixel that sees a tile's zero padding differs by far more than
    float rounding (trained for a few steps, its far reach is still under 1e-6)."""
    torch.manual_seed(seed)
    model = segkit.create_model("unet", in_channels=3, out_channels=2, base_channels=4)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_tiles_aligned_with_the_unets_pooling_and_a_margin_of_its_reach_equal_the_whole_photo(seed):
    """The built-in UNet pools four times (stride 16) and reaches 94 pixels (measured with three
    seeds: a margin of 93 leaves differences of 4e-4 to 3e-3, 94 leaves float rounding, 1e-6). Tiles
    whose starts are multiples of 16 (tile 320 at overlap 0.6: stride 128, on a 448x576 photo) with
    a margin of 94 (their 192 pixels of overlap cover twice it) see exactly what the whole photo's
    pass sees: tiled logits equal whole-image ones, whole and band by band, and so do the masks.
    With the default margin 0 they differ (the seams)."""
    model = signal_carrying_unet(seed)
    pixels = photo_array(448, 576, seed)
    trained = TrainedModel(
        model=model,
        model_name="unet",
        image_size=32,
        normalization=IMAGENET_NORMALIZATION,
        threshold=0.5,
        checkpoint={"in_channels": 3},
        path=Path("unused.pt"),
        device=torch.device("cpu"),
        task=MulticlassTask(("a", "b")),
    )
    mean, std = np.array(IMAGENET_NORMALIZATION["mean"]), np.array(IMAGENET_NORMALIZATION["std"])
    normalised = torch.tensor(((pixels / 255.0 - mean) / std).transpose(2, 0, 1), dtype=torch.float32)
    with torch.no_grad():
        whole = model(normalised[None])[0]  # the reference: one pass over the whole photo
    tiled = sliding_window_logits(model, normalised, 320, 0.6, margin=94)
    assert tiled.shape == whole.shape == (2, 448, 576)
    assert float((tiled - whole).abs().max()) < 2e-5
    mask = predict_tiled_mask(trained, pixels, 320, 0.6, margin=94)  # band by band
    decided = (whole[1] - whole[0]).abs() > 1e-4  # a near tie may round either way
    assert np.array_equal(mask[decided.numpy()], (whole[1] > whole[0])[decided].numpy().astype(np.uint8))
    seams = sliding_window_logits(model, normalised, 320, 0.6)
    assert float((seams - whole).abs().max()) > 1e-2  # why the margin matters


@pytest.fixture(scope="module")
def square_crop_run(tmp_path_factory):
    """Photos of 32x32 and tiles of 32: every photo is exactly one tile, so tiled validation, evaluate
    and predict must score what the network gives on the whole photo."""
    root = tmp_path_factory.mktemp("square")
    write_folder_layout(root / "data", [f"p{i}" for i in range(10)], size=(32, 32))
    args = tiny_run(epochs=1, batch_size=4, crop_size=16, tile=32, image_size=16, callbacks=("csv",))
    options = ["--dataset", "folder", "--data-path", root / "data", "--dataset-option", "valid_fraction=0.4"]
    result = invoke("run", *args, *options, "--out", root / "runs")
    assert result.exit_code == 0, result.output
    return root, only_run_dir(root / "runs")


def whole_photo_dice(trained, data, names) -> dict[str, float]:
    """Per-image Dice of the named photos, from the whole-photo pass and a plain numpy count (1 where
    both masks are empty, as segkit counts)."""
    scores = {}
    for name in names:
        pixels = np.asarray(Image.open(data / "images" / f"{name}.png").convert("RGB"))
        truth = np.asarray(Image.open(data / "masks" / f"{name}.png")) > 0
        predicted = whole_photo_probability(trained, pixels) > trained.threshold
        total = predicted.sum() + truth.sum()
        scores[name] = 1.0 if total == 0 else 2 * (predicted & truth).sum() / total
    return scores


def test_tiled_validation_evaluate_and_predict_score_the_whole_photo_pass(square_crop_run, tmp_path):
    root, run_dir = square_crop_run
    trained = segkit.load_model(run_dir / "last.pt")  # one epoch: the weights validation scored
    result = invoke("evaluate", run_dir / "last.pt", "--split", "valid", "-o", tmp_path / "eval", "-q")
    assert result.exit_code == 0, result.output
    assert "native resolution, 32x32 tiles" in result.output
    rows = list(csv.DictReader((tmp_path / "eval" / "per_image.csv").open()))
    expected = whole_photo_dice(trained, root / "data", [row["name"] for row in rows])
    assert len(rows) == 4
    for row in rows:
        assert float(row["dice"]) == pytest.approx(expected[row["name"]], abs=1e-6), row["name"]
    recorded = list(csv.DictReader((run_dir / "metrics.csv").open()))[-1]
    assert float(recorded["valid_dice"]) == pytest.approx(np.mean(list(expected.values())), abs=1e-6)

    name = rows[0]["name"]
    photo = root / "data" / "images" / f"{name}.png"
    predicted = invoke("predict", run_dir / "last.pt", photo, "-o", tmp_path / "predicted")
    assert predicted.exit_code == 0, predicted.output
    assert "32x32 tiles at native resolution" in predicted.output
    mask = np.asarray(Image.open(tmp_path / "predicted" / f"{name}_mask.png")) > 0
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    assert np.array_equal(mask, whole_photo_probability(trained, pixels) > trained.threshold)


# -- --tile needs --crop-size, and no smaller ------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"tile": 32}, "--tile 32 needs --crop-size"),
        ({"crop_size": 24, "tile": 16}, "--tile 16 is smaller than --crop-size 24"),
    ],
)
def test_a_tile_without_crops_or_smaller_than_them_is_a_usage_error(tmp_path, flags, message):
    """Tiles run the network at native resolution: a run without crops trains on resized photos, and
    a tile smaller than the crop shows the network less than it learned from (segkit.config.resolve)."""
    result = run_cli("run", *tiny_run(train_size=4, valid_size=2, **flags), "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in error_line(result) and "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
