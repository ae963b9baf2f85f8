"""``segkit.load_model``: a trained run (or checkpoint) from Python, as ``segkit predict`` sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import PETS_SIZE, invoke
from PIL import Image

import segkit
from segkit.errors import CheckpointError


def test_load_model_reads_a_run_folder_or_a_checkpoint(trained_run):
    for source in (trained_run, trained_run / "best.pt", str(trained_run / "last.pt")):
        model = segkit.load_model(source)
        assert model.model_name == "unet" and model.image_size == 32 and model.epoch == 1
        assert not model.model.training
    assert segkit.load_model(trained_run).path == trained_run / "best.pt"


def test_predict_gives_the_mask_segkit_predict_writes(pets_run, tmp_path):
    root, run_dir = pets_run
    photo = sorted((root / "images").glob("*.jpg"))[0]
    model = segkit.load_model(run_dir)
    mask = model.predict(photo)
    assert mask.dtype == bool and mask.shape == (PETS_SIZE[0], PETS_SIZE[1])
    assert np.array_equal(model.predict(Image.open(photo)), mask)
    result = invoke("predict", run_dir, photo, "-o", tmp_path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(tmp_path / f"{photo.stem}_mask.png")) > 0
    assert np.array_equal(written, mask)


def test_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        segkit.load_model(tmp_path / "nothing.pt")


def test_load_model_is_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "segkit.load_model(" in readme and ".predict(" in readme
