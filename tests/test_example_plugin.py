"""The example third-party plugin, plugins/segkit-attention-unet: it conforms, and it installs and
uninstalls like any pip distribution, appearing in and disappearing from `segkit plugins`."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segkit.plugins import PluginHost
from segkit.testing import check_model

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "segkit-attention-unet"


@pytest.fixture
def plugin_module(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR / "src"))
    return importlib.import_module("segkit_attention_unet")


def test_plugin_registered_inline_passes_the_conformance_kit(plugin_module):
    host = PluginHost(load_entry_points=False)
    host.register_plugin(plugin_module, "attention_unet", "segkit-attention-unet", "0.1.0")
    assert not host.failures
    component = host.registry("model").get("attention_unet")
    assert component.distribution == "segkit-attention-unet"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, above all on a busy machine
    try:
        check_model(component.factory, {"base_channels": 4}, in_channels=3, out_channels=1)
        check_model(component.factory, {"base_channels": 4}, in_channels=4, out_channels=2, sizes=((33, 50),))
    finally:
        torch.set_num_threads(threads)


def listed_models(python: Path) -> dict[str, dict]:
    """`segkit plugins --json --kind model` run by ``python``, by model name."""
    switches = ("SEGKIT_PLUGINS", "SEGKIT_DISABLE_PLUGINS")
    environment = {key: value for key, value in os.environ.items() if key not in switches}
    result = subprocess.run(
        [str(python), "-m", "segkit", "plugins", "--json", "--kind", "model"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", *args, "--disable-pip-version-check", "--no-input"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_pip_install_and_uninstall_in_a_virtualenv(tmp_path):
    venv = tmp_path / "venv"
    # Without its own pip: the venv's python runs the system pip and setuptools (seen through
    # --system-site-packages) and installs into the venv; ensurepip's old setuptools cannot build.
    command = [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)]
    subprocess.run(command, check=True, timeout=300)
    python = venv / "bin" / "python"
    # Build from a copy: pip leaves build/ and *.egg-info folders in the source tree.
    source = tmp_path / "segkit-attention-unet"
    shutil.copytree(PLUGIN_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))

    assert "attention_unet" not in listed_models(python)
    pip(python, "install", "--no-deps", "--no-build-isolation", str(source))
    models = listed_models(python)
    assert "attention_unet" in models, sorted(models)
    assert models["attention_unet"]["distribution"] == "segkit-attention-unet"
    assert models["attention_unet"]["version"] == "0.1.0"
    assert "unet" in models, "the built-in models must still be there"

    pip(python, "uninstall", "--yes", "segkit-attention-unet")
    assert "attention_unet" not in listed_models(python)
