"""KEY=VALUE options (segkit.config.options) and durations: typed values, and clear errors for bad input.

The fuzzers: whatever a user types after ``--model-option`` and the like, segkit accepts it or refuses
it with a ``UsageError``, which the CLI prints as one ``Error:`` line; never a crash or a traceback.
(Config files: test_config_files.py.)
"""

from __future__ import annotations

import pytest
from fixtures import QUICK, invoke, option_names, value_texts
from hypothesis import assume, given
from hypothesis import strategies as st

from segkit.config.options import parse_options, parse_value
from segkit.config.resolve import parse_duration
from segkit.errors import UsageError

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


# -- fuzzed ----------------------------------------------------------------------------------------

pairs = st.one_of(
    st.tuples(option_names, value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30),  # anything at all, '=' or not
)


@QUICK
@given(texts=st.lists(pairs, max_size=5))
def test_parse_options_accepts_or_refuses_with_a_usage_error(texts):
    try:
        options = parse_options(texts, "--model-option")
    except UsageError as error:
        assert "--model-option" in str(error)
        return
    assert len(options) == len(texts)
    for text in texts:
        key, _, value = text.partition("=")
        assert options[key.strip()] == parse_value(value)


@QUICK
@given(
    key=option_names,
    value=st.one_of(
        st.integers(),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.lists(st.integers(-1000, 1000), max_size=4),
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
    ),
)
def test_typed_values_come_back_as_typed(key, value):
    assume(
        not (isinstance(value, str) and value in ("true", "false", "none", "null"))
    )  # words with a meaning
    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "none"}[value]
    else:
        text = value if isinstance(value, str) else repr(value)
    parsed = parse_options([f"{key}={text}"], "--loss-option")[key]
    assert parsed == value and type(parsed) is type(value)


@QUICK
@given(
    option=st.sampled_from(["--model-option", "--loss-option", "--dataset-option", "--callback-option"]),
    texts=st.lists(pairs, min_size=1, max_size=3),
)
def test_cli_options_never_crash(tmp_path_factory, option, texts):
    """Whatever the options, ``segkit run ... --epochs 0`` is a usage error (exit 2), never a crash."""
    out = tmp_path_factory.mktemp("out")
    args = ["run", "--epochs", "0", "--out", out]
    for text in texts:
        args += [f"{option}={text}"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert not any(out.iterdir())
