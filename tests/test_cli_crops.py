"""Training on crops at native resolution, and tiled validation, evaluation and prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_fixtures import write_folder_layout
from fixtures import invoke, only_run_dir, tiny_run
from PIL import Image

from segkit.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    write_folder_layout(root / "data", [f"p{i}" for i in range(10)], size=(40, 56))
    args = tiny_run(epochs=1, batch_size=4, crop_size=16, tile=24, image_size=32)
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
    import segkit.imageio as imageio

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
