"""``segkit export``: ONNX and TorchScript files that match PyTorch at any size, with deployment notes."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fixtures import run_cli

import segkit
from segkit.checkpoint_files import save_checkpoint
from segkit.cli.export_cmd import export
from segkit.errors import CheckpointError, SegkitError, UsageError
from segkit.inference.export import compare_with_pytorch, export_model, resolve_normalization

NORMALIZATION = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
TOLERANCE = 1e-4
# Sizes the exports never saw: odd sides that need padding, batch sizes other than the trace's 1.
UNSEEN_SHAPES = [(3, 3, 37, 53), (2, 3, 64, 48), (1, 3, 19, 90)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these networks are so small that a second thread only adds waiting, which
    on a busy 2-core machine made each forward pass take seconds instead of milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet() -> torch.nn.Module:
    """A tiny UNet whose BatchNorm statistics are not the identity, so eval mode matters."""
    torch.manual_seed(0)
    model = segkit.create_model("unet", in_channels=3, out_channels=1, base_channels=4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with the best.pt a 3-epoch training of a tiny UNet at 32x32 would leave."""
    folder = tmp_path_factory.mktemp("run")
    model = tiny_unet()
    save_checkpoint(
        folder / "best.pt",
        {
            "model_name": "unet",
            "model_options": {"base_channels": 4},
            "in_channels": 3,
            "out_channels": 1,
            "image_size": 32,
            "normalization": NORMALIZATION,
            "threshold": 0.4,
            "epoch": 3,
            "model_state": model.state_dict(),
        },
    )
    return folder


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """The same network as in the checkpoint, built afresh: what the exports must agree with."""
    return tiny_unet()


def pytorch_logits(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(images).numpy()


@pytest.fixture(scope="module")
def onnx_export(run_dir, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_model(run_dir, out, "onnx")


@pytest.fixture(scope="module")
def torchscript_export(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("torchscript") / "tiny.torchscript.pt"
    return export_model(run_dir / "best.pt", out, "torchscript")


def test_onnx_export_matches_pytorch_at_unseen_sizes(onnx_export, reference):
    import onnxruntime

    assert onnx_export.path.is_file() and onnx_export.checks
    assert all(check.passed and check.max_abs_diff < TOLERANCE for check in onnx_export.checks)
    session = onnxruntime.InferenceSession(str(onnx_export.path), providers=["CPUExecutionProvider"])
    for seed, shape in enumerate(UNSEEN_SHAPES):
        images = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        (logits,) = session.run(None, {"images": images.numpy()})
        expected = pytorch_logits(reference, images)
        assert logits.shape == expected.shape == (shape[0], 1, *shape[2:])
        assert np.abs(logits - expected).max() < TOLERANCE


def test_onnx_axes_are_symbolic_not_fixed(onnx_export):
    import onnx

    graph = onnx.load(str(onnx_export.path)).graph
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert [dims[axis].dim_param for axis in (0, 2, 3)] == ["batch", "height", "width"], value.name
        assert all(not dims[axis].HasField("dim_value") for axis in (0, 2, 3))
        assert dims[1].dim_value in (1, 3)


def test_onnx_file_carries_the_deployment_notes(onnx_export):
    import onnx

    props = {entry.key: entry.value for entry in onnx.load(str(onnx_export.path)).metadata_props}
    assert json.loads(props["segkit"])["input"]["normalization"]["mean"] == NORMALIZATION["mean"]


def test_torchscript_export_matches_pytorch_at_unseen_sizes(torchscript_export, reference):
    assert torchscript_export.checks and all(check.passed for check in torchscript_export.checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(torchscript_export.path))
    for seed, shape in enumerate(UNSEEN_SHAPES):
        images = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            logits = loaded(images).numpy()
        expected = pytorch_logits(reference, images)
        assert logits.shape == expected.shape
        assert np.abs(logits - expected).max() < TOLERANCE


@pytest.mark.parametrize("fixture", ["onnx_export", "torchscript_export"])
def test_notes_say_what_the_caller_must_reimplement(fixture, request):
    result = request.getfixturevalue(fixture)
    assert result.notes_path == result.path.with_name(result.path.name + ".json")
    notes = json.loads(result.notes_path.read_text())
    assert notes["file"] == result.path.name
    assert notes["model"] == {"name": "unet", "options": {"base_channels": 4}}
    assert notes["input"]["channel_order"] == "RGB"
    assert {k: notes["input"]["normalization"][k] for k in ("mean", "std")} == NORMALIZATION
    assert notes["input"]["training_image_size"] == [32, 32]
    assert notes["output"]["threshold"] == 0.4
    assert "logits" in notes["output"]["kind"] and "sigmoid" in notes["output"]["kind"]
    checks = notes["verification"]["checks"]
    assert len(checks) == 2 and all(check["max_abs_diff"] < TOLERANCE for check in checks)
    assert len({tuple(check["input_shape"]) for check in checks}) == 2


def test_cli_exports_a_run_folder_beside_its_checkpoint(run_dir, tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "best.pt").write_bytes((run_dir / "best.pt").read_bytes())
    result = CliRunner().invoke(export, [str(target), "--format", "torchscript"])
    assert result.exit_code == 0, result.output
    assert (target / "best.torchscript.pt").is_file() and (target / "best.torchscript.pt.json").is_file()
    assert result.output.count("max abs diff") == 2


def test_export_notes_list_the_recipes_inference_steps(pets_run_with_inference_choices, tmp_path):
    _, run_dir = pets_run_with_inference_choices
    target = tmp_path / "model.pt"
    result = run_cli("export", run_dir, "--format", "torchscript", "--no-check", "-o", target)
    assert result.exit_code == 0, result.output
    steps = json.loads((tmp_path / "model.pt.json").read_text())["output"]["postprocess"]
    assert "flipped" in steps[0] and "fill the holes" in steps[-2] and "largest" in steps[-1]


def test_two_exports_of_one_name_leave_two_sidecars_each_describing_its_own_file(run_dir, tmp_path):
    """``-o unet.onnx`` then ``-o unet.pt`` once both wrote ``unet.json``: the TorchScript export's notes
    replaced the ONNX file's."""
    pytest.importorskip("onnx")
    for name in ("unet.onnx", "unet.pt"):
        result = run_cli("export", run_dir, "-o", tmp_path / name, "--no-check")
        assert result.exit_code == 0, result.output
        assert f"{tmp_path / name}.json" in result.output
    assert sorted(path.name for path in tmp_path.glob("*.json")) == ["unet.onnx.json", "unet.pt.json"]
    for name, kind in (("unet.onnx", "onnx"), ("unet.pt", "torchscript")):
        notes = json.loads((tmp_path / f"{name}.json").read_text())
        assert notes["file"] == name and notes["format"] == kind


def test_no_check_writes_without_comparing(run_dir, tmp_path):
    result = export_model(run_dir, tmp_path, "torchscript", check=False)
    assert result.path == tmp_path / "best.torchscript.pt" and result.path.is_file()
    assert result.checks == [] and "--no-check" in result.note


def test_missing_onnxruntime_skips_the_check_with_a_note(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    result = CliRunner().invoke(export, [str(run_dir), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime is not installed" in result.output and "segkit[export]" in result.output
    assert (tmp_path / "m.onnx").is_file()
    assert json.loads((tmp_path / "m.onnx.json").read_text())["verification"]["checks"] == []


def test_missing_onnx_is_a_usage_error_with_the_install_command(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = CliRunner().invoke(export, [str(run_dir), "-o", str(tmp_path / "m.onnx")])
    assert isinstance(result.exception, UsageError)
    assert "pip install segkit[export]" in str(result.exception)
    assert not (tmp_path / "m.onnx").exists()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    result = CliRunner().invoke(export, [str(tmp_path / "nowhere.pt")])
    assert isinstance(result.exception, CheckpointError)
    assert "nowhere.pt" in str(result.exception)


def test_corrupt_checkpoint_is_a_checkpoint_error(tmp_path):
    broken = tmp_path / "best.pt"
    broken.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    result = CliRunner().invoke(export, [str(broken), "--format", "torchscript"])
    assert isinstance(result.exception, CheckpointError)
    assert str(broken) in str(result.exception)
    assert list(tmp_path.iterdir()) == [broken]


def test_output_over_the_checkpoint_is_refused(run_dir):
    with pytest.raises(UsageError, match="overwrite the checkpoint"):
        export_model(run_dir, run_dir / "best.pt", "torchscript")


def test_opset_too_old_for_dynamic_padding_is_explained(run_dir, tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(SegkitError, match="opset 9"):
        export_model(run_dir, tmp_path / "old.onnx", "onnx", opset=9)
    assert not any(path.suffix in (".onnx", ".tmp") for path in tmp_path.iterdir())
    result = CliRunner().invoke(export, [str(run_dir), "--opset", "9"])
    assert result.exit_code == 2 and "--opset" in result.output  # click refuses it before any work


class SizeFrozen(torch.nn.Module):
    """A model whose output depends on its input width through a Python float: tracing freezes it."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images) * float(images.shape[-1])


class SizeFrozenPlugin:
    @segkit.hookimpl
    def register_models(self, register):
        register("size_frozen", SizeFrozen, description="traces wrongly on purpose")


def test_export_that_differs_from_pytorch_is_refused_and_leaves_nothing(fresh_host, tmp_path):
    host = fresh_host()
    host.register_plugin(SizeFrozenPlugin(), "size_frozen_plugin", "tests")
    try:
        save_checkpoint(
            tmp_path / "best.pt",
            {
                "model_name": "size_frozen",
                "model_options": {},
                "in_channels": 3,
                "out_channels": 1,
                "image_size": 24,
                "normalization": None,
                "threshold": 0.5,
                "epoch": 1,
                "model_state": SizeFrozen().state_dict(),
            },
        )
        with pytest.raises(SegkitError, match="does not match PyTorch"):
            export_model(tmp_path, None, "torchscript")
        assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pt"]
    finally:
        host.unregister_plugin("size_frozen_plugin")


def test_compare_with_pytorch_reports_wrong_values_shapes_and_runtime_errors(reference):
    shapes = [(1, 3, 20, 20)]

    def same(images):
        return pytorch_logits(reference, images)

    exact = compare_with_pytorch(reference, same, shapes)
    assert exact[0].passed and exact[0].max_abs_diff == 0
    shifted = compare_with_pytorch(reference, lambda images: same(images) + 0.01, shapes)
    assert not shifted[0].passed and shifted[0].max_abs_diff == pytest.approx(0.01, rel=1e-3)
    cropped = compare_with_pytorch(reference, lambda images: same(images)[..., 1:], shapes)
    assert not cropped[0].passed and "shape" in cropped[0].error

    def refuse(images):
        raise RuntimeError("Pad reflect: pre-pad exceeds maximum\nmore detail")

    failed = compare_with_pytorch(reference, refuse, shapes)
    assert not failed[0].passed and failed[0].error == "Pad reflect: pre-pad exceeds maximum"


def test_normalization_names_and_absence_resolve_to_numbers():
    assert resolve_normalization(NORMALIZATION) == (NORMALIZATION, "")
    imagenet, note = resolve_normalization("imagenet")
    assert imagenet["mean"] == [0.485, 0.456, 0.406] and note == ""
    assumed, note = resolve_normalization(None)
    assert assumed == imagenet and "assumed" in note
    with pytest.raises(SegkitError, match="normalization"):
        resolve_normalization(42)


# -- the format follows the file name ----------------------------------------------------------------------


def test_the_format_follows_the_extension(run_dir, tmp_path):
    result = run_cli("export", run_dir, "-o", tmp_path / "model.pt", "--no-check")
    assert result.exit_code == 0, result.output
    assert "(torchscript," in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(tmp_path / "model.pt"))  # TorchScript, not ONNX bytes
    assert module(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize(
    "name, flags, message",
    [
        ("model.onnx", ["--format", "torchscript"], "for onnx (its extension), but --format is torchscript"),
        ("model.pt", ["--format", "onnx"], "for torchscript (its extension), but --format is onnx"),
        ("model.bin", [], "cannot tell the format"),
    ],
)
def test_a_name_that_says_another_format_is_refused(run_dir, tmp_path, name, flags, message):
    result = run_cli("export", run_dir, "-o", tmp_path / name, *flags, "--no-check")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / name).exists()


def test_a_trailing_slash_names_a_folder_to_create(run_dir, tmp_path):
    result = run_cli(
        "export", run_dir, "-o", f"{tmp_path / 'exports'}/", "--format", "torchscript", "--no-check"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exports").is_dir()
    assert (tmp_path / "exports" / "best.torchscript.pt").is_file()
    assert (tmp_path / "exports" / "best.torchscript.pt.json").is_file()
