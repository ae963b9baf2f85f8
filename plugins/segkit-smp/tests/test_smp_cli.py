"""An smp model through every command, like a built-in: run, resume, evaluate, predict, export, models.

The whole round (and a run with a frozen encoder) is marked slow; the default suite trains one tiny
epoch and exports it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from segkit.checkpoint_files import load_checkpoint, save_checkpoint
from segkit.cli import cli

TINY = ["--device", "cpu", "--image-size", "32", "--batch-size", "2", "--workers", "0", "--quiet"]
TINY += ["--dataset-option", "train_size=4", "--dataset-option", "valid_size=2", "--no-callback", "excel"]
FPN = [
    "--model",
    "smp_fpn",
    "--model-option",
    "encoder=mobilenet_v2",
    "--model-option",
    "decoder_channels=32",
]


def segkit(*args: object):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"segkit crashed with {result.exception!r}:\n{result.output}")
    return result


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fpn_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smp-runs")
    result = segkit("run", *FPN, *TINY, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    (run,) = [path for path in out.iterdir() if path.is_dir()]
    return run


def test_an_smp_model_trains_and_exports(fpn_run, tmp_path):
    """The fast path: the module's one-epoch run exports to ONNX, verified against PyTorch."""
    assert load_checkpoint(fpn_run / "best.pt")["model_options"]["encoder"] == "mobilenet_v2"
    exported = segkit("export", fpn_run, "-o", tmp_path / "fpn.onnx")
    assert exported.exit_code == 0, exported.output
    assert "checked against PyTorch" in exported.output and (tmp_path / "fpn.onnx").is_file()


@pytest.mark.slow
def test_an_smp_model_trains_resumes_evaluates_predicts_and_exports(tmp_path):
    out = tmp_path / "runs"
    result = segkit("run", *FPN, *TINY, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    (run,) = [path for path in out.iterdir() if path.is_dir()]
    resumed = segkit("run", "--resume", run, "--epochs", "2", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run / "last.pt")["epoch"] == 2

    evaluated = segkit("evaluate", run, "--split", "valid", "--device", "cpu", "-o", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 61, 3), dtype=np.uint8)).save(photo)
    predicted = segkit("predict", run, photo, "-o", tmp_path / "masks", "--device", "cpu")
    assert predicted.exit_code == 0, predicted.output
    masks = [path for path in (tmp_path / "masks").rglob("*.png") if "overlay" not in path.name]
    assert masks and all(Image.open(mask).size == (61, 45) for mask in masks)

    exported = segkit("export", run, "-o", tmp_path / "fpn.onnx")
    assert exported.exit_code == 0, exported.output
    assert "checked against PyTorch" in exported.output and (tmp_path / "fpn.onnx").is_file()


def test_export_refuses_an_architecture_that_cannot_take_dynamic_sizes(fpn_run, tmp_path):
    import segkit as api

    payload = load_checkpoint(fpn_run / "best.pt")
    options = {"encoder": "mobilenet_v2"}
    model = api.create_model("smp_pspnet", in_channels=payload["in_channels"], out_channels=1, **options)
    payload.update(model_name="smp_pspnet", model_options=options, model_state=model.state_dict())
    save_checkpoint(tmp_path / "pspnet.pt", payload)
    result = segkit("export", tmp_path / "pspnet.pt", "-o", tmp_path / "pspnet.onnx")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "cannot be exported with dynamic height and width" in errors[0]
    assert "adaptive average pooling" in errors[0]
    assert not (tmp_path / "pspnet.onnx").exists()


def test_an_unknown_encoder_is_a_usage_error_in_a_run(tmp_path):
    result = segkit(
        "run", "--model", "smp_unet", "--model-option", "encoder=resnet81", *TINY, "--out", tmp_path
    )
    assert result.exit_code == 2, result.output
    assert "did you mean resnet18" in result.output
    assert not any(tmp_path.iterdir())


def test_models_command_compares_encoders():
    options = ["--model-option", "encoder=tu-resnet10t", "--image-size", "64"]
    result = segkit("models", "smp_fpn", "smp_unet", *options, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {"smp_fpn", "smp_unet"}
    for row in rows.values():
        assert row["options"] == {"encoder": "tu-resnet10t"} and row["parameters"] > 0
    table = segkit("models", "smp_fpn", *options)
    assert table.exit_code == 0 and "smp_fpn encoder=tu-resnet10t" in table.output


@pytest.mark.slow
def test_freezing_the_encoder_of_an_smp_model(tmp_path):
    """--freeze-encoder 1: the encoder (weights and BatchNorm statistics) ends as it began."""
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    initial = api_model_state()
    torch.save(initial, start)
    result = segkit(
        "run",
        *FPN,
        *TINY,
        "--epochs",
        "1",
        "--init-from",
        start,
        "--freeze-encoder",
        "1",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0, result.output
    (run,) = list((tmp_path / "o").iterdir())
    trained = load_checkpoint(run / "last.pt")["model_state"]
    encoder = [name for name in initial if name.startswith("network.encoder.")]
    assert encoder and all(torch.equal(trained[name], initial[name]) for name in encoder)
    decoder = [name for name in initial if name.startswith("network.decoder.") and name.endswith("weight")]
    assert any(not torch.equal(trained[name], initial[name]) for name in decoder)


def api_model_state() -> dict[str, torch.Tensor]:
    import segkit as api

    model = api.create_model("smp_fpn", encoder="mobilenet_v2", decoder_channels=32)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}
