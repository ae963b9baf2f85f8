"""The settings table: one declaration per setting gives its flag, default, help, checks and printout."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from segkit.cli import cli
from segkit.cli.run_cmd import run
from segkit.config.resolve import (
    RESUME_OVERRIDES,
    ResolvedConfig,
    resolve_resumed_config,
    resolve_run_config,
    validate,
)
from segkit.config.settings import BY_NAME, DEFAULTS, SETTINGS, flag_layer, format_value, parse_sizes
from segkit.errors import UsageError

FLAGGED = [setting for setting in SETTINGS if setting.cli]


def help_of(setting):
    (option,) = [param for param in run.params if param.name == setting.name]
    return option.help


def run_cli(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_the_table_declares_each_setting_once_with_a_default_and_help():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    assert list(DEFAULTS) == names
    for setting in SETTINGS:
        assert setting.help.strip(), setting.name
        assert DEFAULTS[setting.name] == setting.default
    config = ResolvedConfig()
    config.apply(DEFAULTS, "default")
    validate(config)  # the defaults pass their own checks


def test_every_setting_with_a_flag_is_in_run_help_with_its_default():
    result = run_cli("run", "--help")
    assert result.exit_code == 0, result.output
    for setting in FLAGGED:
        assert re.search(rf"(^|\s){re.escape(setting.flag)}\b", result.output), setting.flag
        assert help_of(setting).startswith(setting.help) and "[default: " in help_of(setting), setting.name
    # config-file-only settings are declared as such, and have no flag
    assert [setting.name for setting in SETTINGS if not setting.cli] == ["channels_last"]
    assert "--channels-last" not in result.output


@pytest.mark.parametrize(
    "flag, key, text, value",
    [
        ("--lr", "learning_rate", "0.01", 0.01),
        ("--learning-rate", "learning_rate", "0.01", 0.01),
        ("--no-tta", "tta", None, False),
        ("--tta", "tta", None, True),
        ("-q", "quiet", None, True),
        ("--callback", "callbacks", "csv", ["csv"]),
        ("--workers", "workers", "3", 3),
        ("--workers", "workers", "auto", "auto"),
        ("--progressive-sizes", "progressive_sizes", "64,96", [64, 96]),
        ("--model-option", "model_options", "base_channels=8", {"base_channels": 8}),
        (
            "--callback-option",
            "callback_options",
            "early_stopping.patience=5",
            {"early_stopping": {"patience": 5}},
        ),
        ("--accumulate-steps", "accumulate_steps", "4", 4),
    ],
)
def test_flags_parse_into_setting_values(flag, key, text, value):
    args = [flag] if text is None else [flag, text]
    context = run.make_context("run", args)
    assert flag_layer(context.params) == {key: value}


def test_flags_not_given_leave_no_value():
    assert flag_layer(run.make_context("run", []).params) == {}


WRONG_IN_A_FILE = [
    ('epochs = "ten"', "epochs"),
    ("batch_size = 2.5", "batch_size"),
    ('learning_rate = "fast"', "learning_rate"),
    ("learning_rate = true", "learning_rate"),
    ('tta = "yes"', "tta"),
    ("seed = 1.5", "seed"),
    ("progressive_sizes = 128", "progressive_sizes"),
    ('channels_last = "maybe"', "channels_last"),
    ("channels_last = 1", "channels_last"),
    ("workers = -1", "workers"),
    ('time_budget = "soon"', "time_budget"),
    ("time_budget = true", "time_budget"),
    ('callbacks = "csv"', "callbacks"),
    ('out = ""', "out"),
    ("accumulate_steps = 0", "accumulate_steps"),
]


@pytest.mark.parametrize("line, key", WRONG_IN_A_FILE)
def test_a_wrong_value_in_a_config_file_names_the_key_and_the_file(tmp_path, line, key):
    path = tmp_path / "run.toml"
    path.write_text(line + "\n")
    with pytest.raises(UsageError) as caught:
        resolve_run_config({}, path, None)
    message = str(caught.value)
    assert key in message and str(path) in message and "\n" not in message, message


@pytest.mark.parametrize(
    "setting", [setting for setting in SETTINGS if setting.choices], ids=lambda s: s.name
)
def test_choices_are_enforced(tmp_path, setting):
    for choice in setting.choices:
        assert resolve_run_config({setting.name: choice}, None, None)[setting.name] == choice
    path = tmp_path / "run.toml"
    path.write_text(f'{setting.name} = "{setting.choices[0]}x"\n')
    with pytest.raises(
        UsageError, match=f"{setting.name}.*{re.escape(str(path))}.*one of {', '.join(setting.choices)}"
    ):
        resolve_run_config({}, path, None)
    with pytest.raises(UsageError, match=f"^{setting.flag} must be one of"):
        resolve_run_config({setting.name: "nonsense"}, None, None)
    result = run_cli("run", setting.flag, "nonsense")
    assert result.exit_code == 2 and setting.flag in result.output


@given(st.lists(st.integers(1, 4096), min_size=1, max_size=6))
def test_progressive_sizes_flag_round_trips(sizes):
    assert parse_sizes(",".join(map(str, sizes))) == sizes
    # what the settings printout shows can be pasted back into the flag
    assert parse_sizes(format_value(sizes)) == sizes
    assert flag_layer({"progressive_sizes": ",".join(map(str, sizes))}) == {"progressive_sizes": sizes}


@pytest.mark.parametrize("text", ["", ",", "64,x", "64,0", "-5", "1.5"])
def test_bad_progressive_sizes_flags_are_refused(text):
    with pytest.raises(UsageError, match="--progressive-sizes"):
        parse_sizes(text)


def test_describe_lists_every_setting_in_table_order_with_its_source(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("batch_size = 4\nchannels_last = false\n")
    config = resolve_run_config({"epochs": 3}, path, "seed")
    rows = config.describe()
    assert [key for key, _, _ in rows] == [setting.name for setting in SETTINGS]
    assert all(source for _, _, source in rows)
    sources = {key: source for key, _, source in rows}
    assert sources["epochs"] == "flag"
    assert sources["batch_size"] == f"config {path}"
    assert sources["channels_last"] == f"config {path}"
    assert sources["learning_rate"] == "recipe seed"
    assert sources["model_options"] == "dataset synthetic default"
    assert sources["threshold"] == "seed report default"
    values = {key: value for key, value, _ in rows}
    assert values["epochs"] == "3" and values["batch_size"] == "4" and values["progressive_sizes"] == "-"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2", None])
def test_accumulate_steps_must_be_a_positive_integer(tmp_path, value):
    config = ResolvedConfig()
    config.apply(DEFAULTS, "default")
    config.apply({"accumulate_steps": value}, "flag")
    with pytest.raises(UsageError, match=r"^--accumulate-steps must be a positive integer, got "):
        validate(config)
    if value is not None:  # TOML has no null
        path = tmp_path / "run.toml"
        path.write_text(
            f"accumulate_steps = {str(value).lower() if isinstance(value, bool) else repr(value)}\n"
        )
        pattern = rf"^accumulate_steps \(--accumulate-steps\) from config {re.escape(str(path))} must be"
        with pytest.raises(UsageError, match=pattern):
            resolve_run_config({}, path, None)


def test_accumulate_steps_is_declared_the_new_way():
    setting = BY_NAME["accumulate_steps"]
    assert DEFAULTS["accumulate_steps"] == 1
    assert resolve_run_config({}, None, None)["accumulate_steps"] == 1
    assert resolve_run_config({"accumulate_steps": 4}, None, None)["accumulate_steps"] == 4
    assert setting.flag == "--accumulate-steps"
    assert help_of(setting) == (
        "Gradient accumulation: micro-batches of --batch-size per optimizer step (effective batch = N x "
        "--batch-size); the learning-rate schedule, weight average, NaN policy and time budget count "
        "optimizer steps. [default: 1]"
    )
    assert "accumulate_steps" not in RESUME_OVERRIDES
    result = run_cli("run", "--accumulate-steps", "0")
    assert result.exit_code == 2 and "--accumulate-steps" in result.output


def test_resume_overrides_are_the_documented_ones():
    assert set(RESUME_OVERRIDES) == {
        "data_path",
        "epochs",
        "time_budget",
        "quiet",
        "device",
        "workers",
        "callbacks",
        "disable_callbacks",
        "callback_options",
    }


def test_an_unknown_recipe_key_is_a_usage_error_naming_the_recipe(fresh_host):
    from segkit.registry import Component

    fresh_host().registry("recipe").add(
        Component("recipe", "typo", {"epoch": 3}, "a recipe with a typo", "test", "test", "0")
    )
    with pytest.raises(
        UsageError, match=r"unknown setting 'epoch' from recipe typo\. Did you mean 'epochs'\?"
    ):
        resolve_run_config({}, None, "typo")


def test_a_wrong_recipe_value_names_the_recipe(fresh_host):
    from segkit.registry import Component

    fresh_host().registry("recipe").add(
        Component("recipe", "bad", {"optimizer": "adamx"}, "a recipe with a bad value", "test", "test", "0")
    )
    with pytest.raises(UsageError, match="optimizer .* from recipe bad must be one of adam"):
        resolve_run_config({}, None, "bad")


def test_every_registered_recipe_uses_only_declared_settings():
    import segkit

    for component in segkit.list_components("recipe"):
        assert set(component.factory) <= set(BY_NAME), component.name


def test_resume_takes_recorded_settings_defaults_for_newer_ones_and_only_overridable_flags(tmp_path):
    import json

    recorded = dict(resolve_run_config({"epochs": 2}, None, None).values)
    del recorded["accumulate_steps"]  # a run recorded before the setting existed
    (tmp_path / "config.json").write_text(json.dumps({"config": recorded}))
    config = resolve_resumed_config(tmp_path, {"epochs": 5, "time_budget": "1m"})
    assert config["epochs"] == 5 and config.sources["epochs"] == "flag"
    assert config["time_budget"] == 60
    assert (
        config["batch_size"] == recorded["batch_size"] and config.sources["batch_size"] == f"run {tmp_path}"
    )
    assert config["accumulate_steps"] == 1 and config.sources["accumulate_steps"] == "seed report default"
    # a flag repeating a recorded setting is honoured as it is; one changing it is refused, by name
    same = resolve_resumed_config(tmp_path, {"batch_size": recorded["batch_size"], "learning_rate": 3e-3})
    assert same["batch_size"] == recorded["batch_size"]
    with pytest.raises(UsageError, match=r"--batch-size, --model-option cannot change when resuming \(only"):
        resolve_resumed_config(
            tmp_path, {"batch_size": 3, "model_options": {"base_channels": 8}, "epochs": 9}
        )


def test_every_option_of_every_command_shows_its_default():
    import click

    from segkit.cli import CORE_COMMANDS

    missing = []
    for name in CORE_COMMANDS:
        command = cli.get_command(None, name)
        commands = command.commands.items() if isinstance(command, click.Group) else [(None, command)]
        for sub, each in commands:
            context = click.Context(each)
            for param in each.params:
                if not isinstance(param, click.Option) or param.name == "help":
                    continue
                if param.is_flag and not param.secondary_opts:
                    continue  # an on/off switch: off unless given
                record = param.get_help_record(context)
                if record and "default" not in record[1]:
                    missing.append(f"segkit {name}{' ' + sub if sub else ''} {record[0]}")
    assert not missing, missing


@pytest.mark.parametrize("kind", ["model", "loss", "dataset", "callback"])
def test_option_flags_say_how_to_list_a_components_options(kind):
    (option,) = [param for param in run.params if param.name == f"{kind}_options"]
    assert f"segkit plugins --kind {kind} --options" in option.help
    result = run_cli("plugins", "--kind", kind, "--options")
    assert result.exit_code == 0, result.output


def test_data_path_is_recorded_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_run_config({"data_path": "photos", "dataset": "folder"}, None, None)
    assert config["data_path"] == str(tmp_path / "photos")
