"""KEY=VALUE options, durations and config files: typed values, and clear errors for bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segkit.config import REPORT_DEFAULTS, ResolvedConfig, parse_duration, read_config_file, validate
from segkit.errors import UsageError
from segkit.options import parse_options, parse_value

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@given(st.integers(-(10**9), 10**9))
def test_integers_round_trip(number):
    assert parse_value(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip(number):
    assert parse_value(repr(number)) == number


@given(st.lists(st.integers(0, 1000), max_size=5))
def test_lists_round_trip(numbers):
    assert parse_value(str(numbers)) == numbers


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), ("False", False), ("none", None), ("ignore", "ignore"), ("(1, 2)", [1, 2]), (" 3 ", 3)],
)
def test_words(text, expected):
    assert parse_value(text) == expected


@given(st.dictionaries(identifiers, st.integers(-100, 100) | st.booleans(), max_size=5))
def test_parse_options_recovers_each_pair(mapping):
    pairs = [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in mapping.items()
    ]
    assert parse_options(pairs, "--model-option") == mapping


@given(st.text(max_size=30))
def test_any_text_parses_or_fails_with_a_usage_error(text):
    try:
        options = parse_options([text], "--loss-option")
    except UsageError as error:
        assert "--loss-option" in str(error)
    else:
        assert len(options) == 1


def test_duplicate_key_is_an_error():
    with pytest.raises(UsageError, match="twice"):
        parse_options(["a=1", "a=2"], "--model-option")


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("1.5h", 5400), ("42", 42), (30, 30)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_any_duration_text_parses_or_fails_clearly(text):
    try:
        seconds = parse_duration(text)
    except UsageError as error:
        assert "--time-budget" in str(error)
    else:
        assert seconds is None or seconds > 0


def test_config_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(UsageError, match="missing.toml"):
        read_config_file(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3")
    with pytest.raises(UsageError, match="broken.toml"):
        read_config_file(broken)


@given(st.binary(max_size=60))
def test_fuzzed_config_files_load_or_fail_clearly(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_bytes(content)
    try:
        data = read_config_file(path)
    except UsageError as error:
        assert "run.toml" in str(error)
        return
    config = ResolvedConfig()
    config.apply(REPORT_DEFAULTS, "default")
    try:
        config.apply(data, "config")
        validate(config)
    except UsageError:
        pass


def test_layers_override_in_order_and_remember_sources():
    config = ResolvedConfig()
    config.apply(REPORT_DEFAULTS, "default")
    config.apply({"epochs": 5, "model_options": {"base_channels": 16}}, "dataset")
    config.apply({"epochs": 7, "model_options": {"depth": 3}}, "flag")
    assert config["epochs"] == 7 and config.sources["epochs"] == "flag"
    assert config["model_options"] == {"base_channels": 16, "depth": 3}
    assert config["batch_size"] == 32 and config.sources["batch_size"] == "default"


def test_unknown_setting_names_its_source():
    config = ResolvedConfig()
    with pytest.raises(UsageError, match="epoch.*run.toml"):
        config.apply({"epoch": 3}, "config run.toml")


@pytest.mark.parametrize(
    "key, value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("image_size", 2.5),
        ("threshold", 1.0),
        ("optimizer", "adamx"),
        ("learning_rate", 0),
        ("workers", -1),
        ("ema_decay", 1.0),
        ("ema_decay", "0.9"),
        ("progressive_sizes", [96, 0]),
        ("progressive_sizes", 128),
        ("tta", "yes"),
        ("calibrate_threshold", 1),
        ("fill_holes", None),
    ],
)
def test_invalid_values_name_the_flag(key, value):
    config = ResolvedConfig()
    config.apply(REPORT_DEFAULTS, "default")
    config.apply({key: value}, "flag")
    with pytest.raises(UsageError, match=f"--{key.replace('_', '-')}"):
        validate(config)
