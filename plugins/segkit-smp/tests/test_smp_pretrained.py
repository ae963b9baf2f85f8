"""pretrained=true: smp's and timm's own loaders, pointed at weights files made here (nothing downloads),
and the one-line error when there is no network."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import segkit
from segkit.errors import SegkitError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the Hugging Face Hub fails, as on a machine without a network."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("segmentation_models_pytorch.encoders.hf_hub_download", refuse)
    monkeypatch.setattr("timm.models._builder.load_state_dict_from_hf", refuse)


def test_smp_encoder_weights_come_from_smps_loader(tmp_path, monkeypatch):
    from segmentation_models_pytorch.encoders import get_encoder

    torch.manual_seed(5)
    reference = get_encoder("resnet18", weights=None).state_dict()
    reference = {name: torch.randn_like(t) if t.is_floating_point() else t for name, t in reference.items()}
    save_file(reference, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.2] * 3}))
    asked = []

    def local_hub(repo_id, filename, revision=None, **kwargs):
        asked.append(repo_id)
        return str(tmp_path / filename)

    monkeypatch.setattr("segmentation_models_pytorch.encoders.hf_hub_download", local_hub)
    model = segkit.create_model("smp_unet", encoder="resnet18", pretrained=True)
    loaded = model.encoder.state_dict()
    assert asked and all("resnet18" in repo for repo in asked)
    assert torch.equal(loaded["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert torch.equal(loaded["conv1.weight"], reference["conv1.weight"])


def test_timm_encoder_weights_come_from_timms_loader(monkeypatch):
    import timm

    torch.manual_seed(6)
    reference = timm.create_model("resnet10t").state_dict()
    reference = {name: torch.randn_like(t) if t.is_floating_point() else t for name, t in reference.items()}
    monkeypatch.setattr(
        "timm.models._builder.load_state_dict_from_hf", lambda *args, **kwargs: dict(reference)
    )
    model = segkit.create_model("smp_fpn", encoder="tu-resnet10t", pretrained=True)
    loaded = model.encoder.state_dict()
    assert torch.equal(loaded["model.layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"])


@pytest.mark.parametrize("encoder", ["resnet18", "tu-resnet10t"])
def test_no_network_is_a_one_line_error_saying_what_to_do(encoder):
    with pytest.raises(SegkitError) as error:
        segkit.create_model("smp_unet", encoder=encoder, pretrained=True)
    message = str(error.value)
    assert "\n" not in message
    assert f"pretrained weights of encoder {encoder!r}" in message
    assert "network is unreachable" in message and "pretrained=false" in message and "HF_HOME" in message


def test_no_network_in_a_run_is_one_error_line(tmp_path):
    from click.testing import CliRunner

    from segkit.cli import cli

    args = ["run", "--device", "cpu", "--model", "smp_unet", "--model-option", "encoder=resnet18"]
    args += ["--model-option", "pretrained=true", "--image-size", "32", "--epochs", "1", "--workers", "0"]
    args += ["--dataset-option", "train_size=2", "--dataset-option", "valid_size=1", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "pretrained=false" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # setup failed: no run folder
