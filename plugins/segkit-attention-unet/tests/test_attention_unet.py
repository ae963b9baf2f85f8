"""The plugin's own tests: the segkit conformance kit, plus what is particular to attention gates.

Run from this folder with ``python -m pytest`` (pyproject.toml puts ``src`` on the path), or after
``pip install .`` from anywhere.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch

import segkit_attention_unet
from segkit.errors import UsageError
from segkit.plugins import PluginHost
from segkit.testing import check_model
from segkit_attention_unet import AttentionGate, build_attention_unet


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("in_channels, out_channels", [(3, 1), (1, 2)])
def test_factory_meets_the_model_contract(in_channels, out_channels):
    check_model(
        build_attention_unet,
        {"base_channels": 4},
        in_channels=in_channels,
        out_channels=out_channels,
        sizes=((33, 50), (64, 64), (17, 9)),
    )


def test_the_hook_registers_attention_unet():
    host = PluginHost(load_entry_points=False)
    host.register_plugin(segkit_attention_unet, "attention_unet", "segkit-attention-unet", "0.1.0")
    component = host.registry("model").get("attention_unet")
    assert component.factory is build_attention_unet
    assert component.distribution == "segkit-attention-unet"


PROJECT = Path(__file__).resolve().parents[1]


def declared_entry_points() -> dict[str, str]:
    """The ``[project.entry-points.segkit]`` table of this plugin's pyproject.toml."""
    table: dict[str, str] = {}
    section = None
    for line in (PROJECT / "pyproject.toml").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "project.entry-points.segkit" and "=" in line:
            name, value = (part.strip().strip('"') for part in line.split("=", 1))
            table[name] = value
    return table


@pytest.fixture
def as_installed(tmp_path, monkeypatch):
    """The plugin as pip leaves it: installed already, or (from a source checkout) a .dist-info
    beside its source carrying the entry points its pyproject.toml declares, on sys.path."""
    try:
        metadata.distribution("segkit-attention-unet")
        return
    except metadata.PackageNotFoundError:
        pass
    entry_points = declared_entry_points()
    assert entry_points, "pyproject.toml declares no [project.entry-points.segkit]"
    info = tmp_path / "segkit_attention_unet-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segkit-attention-unet\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[segkit]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PROJECT / "src"))


def test_the_plugin_is_found_through_its_entry_point(as_installed):
    host = PluginHost()  # what segkit does at start: load every entry point of group "segkit"
    assert not [failure for failure in host.failures if "attention" in str(failure)], host.failures
    component = host.registry("model").get("attention_unet")
    assert component.distribution == "segkit-attention-unet" and component.version == "0.1.0"
    check_model(component.factory, {"base_channels": 4}, sizes=((33, 50),))


def test_attention_coefficients_lie_in_0_1_at_skip_resolution_and_scale_the_skip():
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=6, gating_channels=12, inter_channels=3).eval()
    skip, gating = torch.randn(2, 6, 16, 24), torch.randn(2, 12, 8, 12)
    with torch.no_grad():
        alpha = gate.coefficients(skip, gating)
        gated = gate(skip, gating)
    assert alpha.shape == (2, 1, 16, 24)
    assert (alpha > 0).all() and (alpha < 1).all()
    torch.testing.assert_close(gated, skip * alpha)


def test_the_gate_depends_on_the_gating_signal():
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=4, gating_channels=8, inter_channels=2).eval()
    skip = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        first = gate.coefficients(skip, torch.randn(1, 8, 4, 4))
        second = gate.coefficients(skip, torch.randn(1, 8, 4, 4))
    assert not torch.allclose(first, second)


@pytest.mark.parametrize(
    "options, option_named",
    [({"base_channels": 0}, "base_channels"), ({"pad_mode": "wrap"}, "pad_mode"), ({"depth": 5}, "depth")],
)
def test_bad_options_are_usage_errors_naming_the_option(options, option_named):
    with pytest.raises(UsageError, match=option_named):
        build_attention_unet(**options)


def test_default_width_is_32():
    model = build_attention_unet()
    assert model.encoder[0][0].out_channels == 32
