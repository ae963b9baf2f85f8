"""The plugin host's policy: isolation of broken plugins, duplicates, unknown names, switches."""

from __future__ import annotations

import io

import pytest
from fixtures import EVIL_MODULE
from hypothesis import given
from hypothesis import strategies as st

import segkit
from segkit.errors import DuplicateComponentError, UnknownComponentError, UsageError
from segkit.plugins import PluginHost
from segkit.registry import unknown_name_message


def tiny_model(in_channels=3, out_channels=1):
    import torch

    return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ModelPlugin:
    def __init__(self, *names):
        self.names = names

    @segkit.hookimpl
    def register_models(self, register):
        for name in self.names:
            register(name, tiny_model, description=f"tiny {name}")


def host_with(*plugins) -> tuple[PluginHost, io.StringIO]:
    stderr = io.StringIO()
    host = PluginHost(load_entry_points=False, stderr=stderr)
    for index, (plugin, dist) in enumerate(plugins):
        host.register_plugin(plugin, f"plugin{index}", distribution=dist, version="1.0")
    return host, stderr


def test_registered_component_records_its_distribution():
    host, _ = host_with((ModelPlugin("alpha"), "dist-a"))
    component = host.registry("model").get("alpha")
    assert (component.name, component.kind, component.distribution, component.version) == (
        "alpha",
        "model",
        "dist-a",
        "1.0",
    )
    assert component.description == "tiny alpha"
    assert component.factory is tiny_model


def test_duplicate_names_name_both_distributions():
    host, _ = host_with((ModelPlugin("same"), "dist-a"), (ModelPlugin("same"), "dist-b"))
    with pytest.raises(DuplicateComponentError) as info:
        host.registry("model")
    assert "dist-a" in str(info.value) and "dist-b" in str(info.value) and "'same'" in str(info.value)


def test_same_name_in_different_kinds_is_fine():
    class LossPlugin:
        @segkit.hookimpl
        def register_losses(self, register):
            register("alpha", lambda: None, description="a loss")

    host, _ = host_with((ModelPlugin("alpha"), "a"), (LossPlugin(), "b"))
    assert "alpha" in host.registry("model") and "alpha" in host.registry("loss")


def test_unknown_name_lists_names_and_suggests_nearest():
    host, _ = host_with((ModelPlugin("unet", "resnet34_unet"), "segkit"))
    with pytest.raises(UnknownComponentError) as info:
        host.registry("model").get("unett")
    message = str(info.value)
    assert "Did you mean 'unet'?" in message and "resnet34_unet" in message
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


@given(
    st.lists(st.text(alphabet="abcdefghij_", min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
    st.text(alphabet="abcdefghij_", min_size=1, max_size=8),
)
def test_unknown_name_message_always_lists_every_name(names, asked):
    message = unknown_name_message("model", asked, sorted(names))
    assert all(name in message for name in names)
    assert repr(asked) in message


def test_plugin_raising_in_hook_is_reported_once_and_others_keep_working():
    class Broken:
        @segkit.hookimpl
        def register_models(self, register):
            raise RuntimeError("boom in hook")

    host, stderr = host_with((Broken(), "broken-dist"), (ModelPlugin("good"), "good-dist"))
    assert host.registry("model").names() == ["good"]
    host.registry("loss")  # registries are built once: no second report
    text = stderr.getvalue()
    assert text.count("boom in hook") == 1 and "broken-dist" in text


def test_misspelled_hook_is_rejected_with_its_plugin_name():
    class Misspelled:
        @segkit.hookimpl
        def register_model(self, register):  # missing "s"
            register("never", tiny_model)

    host, stderr = host_with((Misspelled(), "typo-dist"), (ModelPlugin("good"), "good-dist"))
    assert host.registry("model").names() == ["good"]
    assert "typo-dist" in stderr.getvalue() and "register_model" in stderr.getvalue()


def test_hookimpl_with_wrong_argument_is_rejected():
    class WrongArgs:
        @segkit.hookimpl
        def register_models(self, register, extra):
            pass

    host, stderr = host_with((WrongArgs(), "wrong-dist"))
    assert "wrong-dist" in stderr.getvalue() and len(host.registry("model")) == 0


def test_unregistering_removes_components():
    host, _ = host_with((ModelPlugin("gone"), "d"))
    assert "gone" in host.registry("model")
    host.unregister_plugin("plugin0")
    assert "gone" not in host.registry("model")


def test_description_defaults_to_docstring_first_line():
    def documented(in_channels=3, out_channels=1):
        """First line.

        More."""

    class Plugin:
        @segkit.hookimpl
        def register_models(self, register):
            register("doc", documented)

    host, _ = host_with((Plugin(), "d"))
    assert host.registry("model").get("doc").description == "First line."


@pytest.mark.parametrize(
    "variable, value, expect_loaded",
    [
        ("SEGKIT_PLUGINS", "", False),
        ("SEGKIT_PLUGINS", "segkit", True),
        ("SEGKIT_PLUGINS", "unet", True),
        ("SEGKIT_PLUGINS", "some-other-dist", False),
        ("SEGKIT_DISABLE_PLUGINS", "unet", False),
        ("SEGKIT_DISABLE_PLUGINS", "some-other-dist", True),
    ],
)
def test_environment_switches_choose_plugins(monkeypatch, variable, value, expect_loaded):
    monkeypatch.setenv(variable, value)
    host = PluginHost(stderr=io.StringIO())
    assert ("unet" in host.info) is expect_loaded


def test_the_plugin_switch_names_entry_points_not_modules(tmp_path, evil_module, monkeypatch):
    """SEGKIT_PLUGINS filters installed entry points; a module name there imports nothing."""
    from segkit import plugins

    monkeypatch.setenv("SEGKIT_PLUGINS", f"unet,{EVIL_MODULE}")
    plugins.reset_host()
    try:
        host = plugins.get_host()
        assert host.registry("model").names() == ["unet"]
        assert EVIL_MODULE not in host.info
    finally:
        monkeypatch.delenv("SEGKIT_PLUGINS")
        plugins.reset_host()


def test_api_uses_the_process_wide_registry(fresh_host):
    host = fresh_host()
    host.register_plugin(ModelPlugin("inline_model"), "inline", "tests")
    try:
        model = segkit.create_model("inline_model", in_channels=2, out_channels=3)
        assert model.in_channels == 2 and model.out_channels == 3
        assert "inline_model" in [c.name for c in segkit.list_components("model")]
    finally:
        host.unregister_plugin("inline")
    with pytest.raises(UnknownComponentError):
        segkit.create_model("inline_model")


@pytest.mark.parametrize("variable", ["SEGKIT_PLUGINS", "SEGKIT_DISABLE_PLUGINS"])
def test_a_switch_entry_that_matches_no_plugin_is_a_warning(monkeypatch, variable):
    monkeypatch.setenv(variable, "segkit,segkit-atention-unet")
    stderr = io.StringIO()
    PluginHost(stderr=stderr)
    warning = stderr.getvalue()
    assert f"{variable} names 'segkit-atention-unet', which matches no installed plugin" in warning
    assert warning.count("warning") == 1 and "oxford_pet" in warning  # what is installed, as named


@pytest.mark.parametrize(
    "variable, value, asked, reason",
    [
        ("SEGKIT_DISABLE_PLUGINS", "unet", "unet", "Plugin 'unet' of segkit is not loaded because "),
        ("SEGKIT_PLUGINS", "losses", "attention_unet", "SEGKIT_PLUGINS=losses leaves out "),
    ],
)
def test_a_name_a_switch_left_out_is_unknown_with_the_switch_as_reason(
    monkeypatch, variable, value, asked, reason
):
    monkeypatch.setenv(variable, value)
    host = PluginHost(stderr=io.StringIO())
    with pytest.raises(UnknownComponentError) as info:
        host.registry("model").get(asked)
    assert reason in str(info.value) and f"{variable}={value}" in str(info.value)
    # without the switch nothing is said about switches
    monkeypatch.delenv(variable)
    with pytest.raises(UnknownComponentError) as info:
        PluginHost(stderr=io.StringIO()).registry("model").get("no_such_model")
    assert "SEGKIT" not in str(info.value)
