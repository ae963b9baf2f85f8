"""segkit from Python (``segkit.train``, ``segkit.Run``, ``TrainedModel.predict``'s inputs,
``Run.from_model``, callbacks as objects): the same settings, checks and files as the command line,
with errors raised instead of printed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import write_multiclass_folder
from fixtures import invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import segkit
from segkit.errors import CheckpointError, SegkitError, UsageError

#: segkit.train's keywords for the run ``tiny_run()`` describes as flags.
TINY = {
    "device": "cpu",
    "model": "unet",
    "model_options": {"base_channels": 4},
    "image_size": 32,
    "workers": 0,
    "quiet": True,
    "dataset_options": {"train_size": 8, "valid_size": 4},
    "batch_size": 4,
}
TIMING_COLUMNS = {"epoch_time_s", "train_images_per_s"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> segkit.Run:
    """Two epochs of a tiny UNet on synthetic data, trained through segkit.train."""
    out = tmp_path_factory.mktemp("api")
    return segkit.train(**TINY, epochs=2, out=out)


def test_train_and_segkit_run_write_the_same_metrics(tmp_path):
    """Same settings, seed and epochs: the same metrics.csv, timing columns aside."""
    api = segkit.train(**TINY, epochs=2, seed=3, out=tmp_path / "api")
    flags = tiny_run(train_size=8, valid_size=4, batch_size=4, epochs=2, seed=3)
    result = invoke("run", *flags, "--out", tmp_path / "cli")
    assert result.exit_code == 0, result.output
    cli_rows = read_rows(only_run_dir(tmp_path / "cli") / "metrics.csv")
    api_rows = read_rows(api.path / "metrics.csv")
    assert len(api_rows) == 2
    strip = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in api_rows + cli_rows]
    assert strip[:2] == strip[2:]
    recorded = json.loads((api.path / "config.json").read_text())
    assert recorded["sources"]["epochs"] == "segkit.train()"
    assert recorded["config"] == {
        **json.loads((only_run_dir(tmp_path / "cli") / "config.json").read_text())["config"],
        "out": str(tmp_path / "api"),
    }


def test_a_misspelt_setting_raises_the_did_you_mean_and_writes_nothing(tmp_path):
    with pytest.raises(
        UsageError, match=r"unknown setting 'epoch' from segkit.train\(\).*Did you mean 'epochs'"
    ):
        segkit.train(**TINY, epoch=2, out=tmp_path)
    with pytest.raises(UsageError, match=r"epochs .*from segkit.train\(\) must be"):
        segkit.train(**TINY, epochs="ten", out=tmp_path)
    with pytest.raises(UsageError, match="model_options"):
        segkit.train(**{**TINY, "model_options": "base_channels=4"}, epochs=1, out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_opens_with_its_settings_history_and_best(api_run):
    opened = segkit.Run(api_run.path)
    rows = read_rows(api_run.path / "metrics.csv")
    assert [row["epoch"] for row in opened.history] == [1, 2]
    for row, parsed in zip(rows, opened.history, strict=True):
        assert parsed["valid_dice"] == pytest.approx(float(row["valid_dice"]))
    best = max(rows, key=lambda row: float(row["valid_dice"]))
    assert opened.best_epoch == int(best["epoch"])
    assert opened.best_score == pytest.approx(float(best["valid_dice"]))
    assert opened.metric == "valid_dice"
    assert opened.settings["epochs"] == 2 and opened.sources["epochs"] == "segkit.train()"
    assert opened.best_checkpoint == api_run.path / "best.pt"
    assert opened.task == "binary" and not opened.imported


def test_a_folder_that_is_no_run_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="is not a run folder"):
        segkit.Run(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="config.json is missing"):
        segkit.Run(tmp_path)


def test_evaluate_returns_what_segkit_evaluate_writes(api_run, tmp_path):
    scores = api_run.evaluate(split="valid", quiet=True, boundary=False, out=tmp_path / "api")
    result = invoke("evaluate", api_run.path, "--split", "valid", "--no-boundary", "-o", tmp_path / "cli")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert scores.summary["network_resolution"] == written["network_resolution"]
    per_image = read_rows(tmp_path / "cli" / "per_image.csv")
    table = scores.per_image
    rows = table.to_dict("records") if hasattr(table, "to_dict") else table
    assert [row["name"] for row in rows] == [row["name"] for row in per_image]
    assert [row["dice"] for row in rows] == pytest.approx([float(row["dice"]) for row in per_image])
    assert scores.scores["images"] == len(per_image) == 4


def photo(seed: int, size: tuple[int, int] = (40, 52)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_every_kind_of_input_gives_the_mask_of_the_same_pixels(api_run, tmp_path):
    model = segkit.load_model(api_run.path)
    pixels = photo(1)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(photo(2, (30, 20))).save(tmp_path / "b.png")
    from_path = model.predict(tmp_path / "a.png")
    assert from_path.shape == (40, 52) and from_path.dtype == bool
    np.testing.assert_array_equal(model.predict(str(tmp_path / "a.png")), from_path)
    np.testing.assert_array_equal(model.predict(pixels), from_path)
    np.testing.assert_array_equal(model.predict(Image.fromarray(pixels)), from_path)
    np.testing.assert_array_equal(model.predict(pixels / 255.0), from_path)
    rgba = np.concatenate([pixels, np.full((40, 52, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(model.predict(rgba), from_path)
    listed = model.predict([pixels, tmp_path / "b.png"])
    assert [mask.shape for mask in listed] == [(40, 52), (30, 20)]
    np.testing.assert_array_equal(listed[0], from_path)
    folder = model.predict(tmp_path)
    assert list(folder) == [tmp_path / "a.png", tmp_path / "b.png"]
    np.testing.assert_array_equal(folder[tmp_path / "a.png"], from_path)
    np.testing.assert_array_equal(api_run.predict(pixels), from_path)
    # the command line's masks: the same pixels
    result = invoke("predict", api_run.path, tmp_path / "a.png", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(tmp_path / "out" / "a_mask.png")) > 0
    np.testing.assert_array_equal(written, from_path)


@settings(max_examples=15, deadline=None)
@given(pixels=arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3]))))
def test_arrays_and_pil_images_of_the_same_pixels_predict_alike(api_run, pixels):
    model = api_run.model()
    grey = pixels[:, :, 0] if pixels.shape[2] == 1 else None
    image = Image.fromarray(grey if grey is not None else pixels).convert("RGB")
    expected = model.predict(image)
    np.testing.assert_array_equal(model.predict(pixels), expected)
    if grey is not None:
        np.testing.assert_array_equal(model.predict(grey), expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 20, 20), np.uint8), r"got shape \(3, 20, 20\) \(channels first\? use array.transpose"),
        (np.full((8, 8, 3), 2.0), "float numpy image must hold values from 0 to 1"),
        (np.zeros((8, 8, 3), np.uint16), "must be uint8 .* or float"),
        (torch.zeros(3, 8, 8), r"tensor.permute\(1, 2, 0\)"),
        (42, "cannot predict a int"),
        ("no/such/photo.png", "does not exist"),
    ],
)
def test_an_input_that_is_no_photo_is_one_line(api_run, bad, message):
    with pytest.raises(UsageError, match=message):
        api_run.model().predict(bad)


class Recorder:
    """A callback object (no registered factory): it sees the events of the run it is given to."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_epoch_end(self, context, metrics) -> None:
        self.events.append(("epoch", metrics["epoch"]))

    def on_fit_end(self, context) -> None:
        self.events.append(("end", context.epoch))


def test_callback_objects_run_are_recorded_and_asked_for_on_resume(tmp_path, capsys):
    recorder = Recorder()
    run = segkit.train(**TINY, epochs=1, out=tmp_path, callbacks=[recorder, "early_stopping"])
    assert recorder.events == [("epoch", 1), ("end", 1)]
    recorded = json.loads((run.path / "config.json").read_text())
    assert recorded["callback_objects"] == [f"{__name__}.Recorder"]
    assert "early_stopping" in recorded["config"]["callbacks"]
    capsys.readouterr()
    run.resume(epochs=2)  # not given again: said, and recorded still
    assert "callback objects (test_api.Recorder); none were given to this resume" in capsys.readouterr().out
    assert recorder.events == [("epoch", 1), ("end", 1)]
    assert json.loads((run.path / "config.json").read_text())["callback_objects"] == [f"{__name__}.Recorder"]
    again = Recorder()
    run.resume(epochs=3, callbacks=[again])
    assert again.events == [("epoch", 3), ("end", 3)]
    assert [row["epoch"] for row in run.history] == [1, 2, 3]


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        ([Recorder], "Recorder is a class; give an instance, Recorder()"),
        ([object()], "object has none of the callback events"),
        ("csv", "callbacks must be a list"),
    ],
)
def test_callbacks_that_are_no_callbacks_are_refused_before_training(tmp_path, callbacks, message):
    with pytest.raises(UsageError, match=message):
        segkit.train(**TINY, epochs=1, out=tmp_path, callbacks=callbacks)
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_trains_no_epoch_fails_and_its_checkpoint_warns(tmp_path, monkeypatch):
    """Item 1: no step fits the budget: the run exits 1 saying so; evaluate/predict/export of its
    epoch-0 checkpoint warn that the weights are untrained."""
    from segkit.engine.budget import RunClock

    monkeypatch.setattr(RunClock, "next_step_fits", lambda self: False)
    result = run_cli(
        "run", *tiny_run(train_size=4, valid_size=2, epochs=2), "--time-budget", "30s", "--out", tmp_path
    )
    assert result.exit_code == 1, result.output
    assert "no epoch was trained (time budget reached before the first one ended" in result.output
    run = only_run_dir(tmp_path)
    with pytest.warns(UserWarning, match="holds epoch 0: its run trained no epoch"):
        segkit.load_model(run)
    for command in (
        ("evaluate", run, "--split", "valid", "--no-boundary", "-o", tmp_path / "eval"),
        ("predict", run, tmp_path / "eval", "-o", tmp_path / "masks"),
        ("export", run, "-o", tmp_path / "m.pt"),
    ):
        if command[0] == "predict":
            Image.fromarray(photo(0)).save(tmp_path / "eval" / "p.png")
        with pytest.warns(UserWarning, match="holds epoch 0: its run trained no epoch"):
            done = run_cli(*command)
        assert done.exit_code == 0, done.output


def test_a_model_trained_elsewhere_is_evaluated_predicted_and_exported(tmp_path, recwarn):
    torch.manual_seed(0)
    model = segkit.create_model("unet", in_channels=3, out_channels=1, base_channels=4)
    with torch.no_grad():  # weights no segkit run would start from
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.eval()
    run = segkit.Run.from_model(
        model,
        model_name="unet",
        model_options={"base_channels": 4},
        image_size=32,
        out=tmp_path,
        dataset_options={"train_size": 4, "valid_size": 4},
    )
    assert run.imported and run.history == [] and run.best_epoch is None
    loaded = segkit.load_model(run.path)
    assert not [w for w in recwarn if "epoch 0" in str(w.message)]  # imported: not "untrained"
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(image)
        got = loaded.model(image)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    scores = run.evaluate(split="valid", quiet=True, boundary=False)
    assert scores.scores["images"] == 4
    exported = run.export(tmp_path / "imported.pt")
    assert exported.is_file()
    with pytest.raises(UsageError, match="imported weights"):
        run.resume(epochs=2)


def test_weights_that_do_not_fit_the_named_model_write_no_run(tmp_path):
    wider = segkit.create_model("unet", in_channels=3, out_channels=1, base_channels=8)
    with pytest.raises(CheckpointError, match="does not fit model 'unet'.*another shape"):
        segkit.Run.from_model(wider, model_name="unet", model_options={"base_channels": 4}, out=tmp_path)
    with pytest.raises(UsageError, match="nn.Module or its state_dict"):
        segkit.Run.from_model("weights.pt", model_name="unet", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_evaluating_a_binary_model_on_multiclass_data_names_both_and_leaves_no_folder(api_run, tmp_path):
    """Item 7."""
    write_multiclass_folder(tmp_path / "data", [f"p{i}" for i in range(4)])
    out = tmp_path / "eval"
    result = run_cli(
        "evaluate",
        api_run.path,
        "--dataset",
        "folder",
        "--data-path",
        tmp_path / "data",
        "--split",
        "train",
        "-o",
        out,
    )
    assert result.exit_code == 2, result.output
    assert (
        "is a binary model" in result.output
        and "multiclass, 3 classes (background, cat, dog)" in result.output
    )
    assert not out.exists()


def test_segkit_errors_are_exceptions_not_exits(tmp_path):
    with pytest.raises(SegkitError):
        segkit.train(**TINY, dataset="no_such_dataset", out=tmp_path)


@settings(max_examples=40, deadline=None)
@given(pixels=arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3, 4]))))
def test_numpy_photos_become_the_rgb_pixels_they_hold(pixels):
    """uint8 0-255 and float 0-1 arrays, grey, RGB or RGBA: the RGB pixels a PIL image of them holds."""
    from segkit.inference.inputs import as_rgb_image

    rgb = np.repeat(pixels[:, :, :1], 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]
    for given_array in (pixels, pixels / 255.0, pixels.astype(np.float32) / 255):
        image = as_rgb_image(given_array)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), rgb)
    if pixels.shape[2] == 1:
        np.testing.assert_array_equal(np.asarray(as_rgb_image(pixels[:, :, 0])), rgb)


def test_a_folder_without_photos_is_named(api_run, tmp_path):
    (tmp_path / "root" / "images").mkdir(parents=True)
    with pytest.raises(
        UsageError, match=r"holds no images but an images/ folder: a dataset root\? give .*images"
    ):
        api_run.predict(tmp_path / "root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no input images found in"):
        api_run.predict(tmp_path / "empty")
