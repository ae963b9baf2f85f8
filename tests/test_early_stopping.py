"""Callback "early_stopping": stops exactly when `patience` epochs in a row fail to improve."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fixtures import only_run_dir, run_cli, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.callbacks import RunContext
from segkit.errors import UsageError
from segkit_builtin.early_stopping import EarlyStopping, build_early_stopping


def context(history: list[dict] | None = None) -> RunContext:
    return RunContext(run_dir=Path("."), config={}, model_name="unet", history=list(history or []))


def run_until_stop(callback: EarlyStopping, values: list, monitor: str = "valid_dice") -> int | None:
    """Feed epochs 1, 2, ... like the engine (which stops after the epoch that sets should_stop);
    returns the epoch that stopped training, or None."""
    ctx = context()
    callback.on_fit_start(ctx)
    for epoch, value in enumerate(values, start=1):
        ctx.epoch = epoch
        callback.on_epoch_end(ctx, {"epoch": epoch, "train_loss": 0.5, monitor: value})
        if ctx.should_stop:
            assert ctx.stop_reason.startswith("early stopping") and monitor in ctx.stop_reason
            return epoch
    assert ctx.stop_reason == ""
    return None


def expected_stop(values: list, patience: int, min_delta: float, mode: str) -> int | None:
    """The rule, written out independently: the epochs that improve are those whose value beats the
    value of the previous improving epoch by more than min_delta (the first finite value improves;
    None and NaN never do). Training stops at the first epoch that is `patience` epochs (at least 1)
    after the latest improving epoch, or after the start when none improved yet."""
    improving: list[int] = []
    reference = None
    for epoch, value in enumerate(values, start=1):
        usable = value is not None and not math.isnan(value)
        if usable and (
            reference is None
            or (mode == "max" and value > reference + min_delta)
            or (mode == "min" and value < reference - min_delta)
        ):
            improving.append(epoch)
            reference = value
        last = improving[-1] if improving else 0
        if epoch - last >= max(patience, 1):
            return epoch
    return None


metric_values = st.one_of(
    st.floats(0, 1, allow_nan=False),
    st.sampled_from([0.0, 0.5, 0.5, 0.9, 1.0]),  # ties are frequent in real runs
    st.none(),
    st.just(math.nan),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(metric_values, min_size=0, max_size=30),
    patience=st.integers(0, 6),
    min_delta=st.sampled_from([0.0, 0.0, 0.01, 0.1]),
    mode=st.sampled_from(["max", "min"]),
)
def test_stops_exactly_when_the_rule_says(values, patience, min_delta, mode):
    callback = build_early_stopping(Path("."), patience=patience, min_delta=min_delta, mode=mode)
    assert run_until_stop(callback, values) == expected_stop(values, patience, min_delta, mode)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=25, unique=True),
    patience=st.integers(1, 6),
)
def test_never_stops_while_improving_and_stops_after_patience_when_flat(values, patience):
    rising = sorted(values)
    assert run_until_stop(EarlyStopping(patience=patience), rising) is None
    assert run_until_stop(EarlyStopping(patience=patience, mode="min"), rising[::-1]) is None
    flat = [rising[0]] * (patience + 5)
    assert run_until_stop(EarlyStopping(patience=patience), flat) == patience + 1


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=25),
    patience=st.integers(1, 5),
    split=st.integers(1, 24),
)
def test_a_resumed_run_counts_patience_across_the_resume(values, patience, split):
    """on_fit_start replays the history the engine restored, so resuming changes nothing."""
    split = min(split, len(values) - 1)
    straight = run_until_stop(EarlyStopping(patience=patience), values)
    if straight is not None and straight <= split:
        return  # the uninterrupted run stopped before the interruption point
    history = [{"epoch": epoch, "valid_dice": value} for epoch, value in enumerate(values[:split], start=1)]
    resumed = EarlyStopping(patience=patience)
    ctx = context(history)
    resumed.on_fit_start(ctx)
    stopped = None
    for epoch, value in enumerate(values[split:], start=split + 1):
        ctx.epoch = epoch
        resumed.on_epoch_end(ctx, {"epoch": epoch, "valid_dice": value})
        if ctx.should_stop:
            stopped = epoch
            break
    assert stopped == straight


def test_monitor_a_loss_with_mode_min_and_min_delta():
    callback = build_early_stopping(Path("."), patience=2, monitor="valid_loss", mode="min", min_delta=0.05)
    # 0.97 and 0.96 improve on 1.0 by less than 0.05: they do not count as improvements.
    assert run_until_stop(callback, [1.0, 0.97, 0.96, 0.8], monitor="valid_loss") == 3
    callback = build_early_stopping(Path("."), patience=2, monitor="valid_loss", mode="min", min_delta=0.05)
    assert run_until_stop(callback, [1.0, 0.97, 0.93, 0.9, 0.89], monitor="valid_loss") == 5


def test_stop_reason_names_the_metric_and_best_epoch():
    ctx = context()
    callback = EarlyStopping(patience=1)
    callback.on_epoch_end(ctx, {"epoch": 1, "valid_dice": 0.8})
    callback.on_epoch_end(ctx, {"epoch": 2, "valid_dice": 0.7})
    assert ctx.should_stop
    assert "valid_dice" in ctx.stop_reason and "0.8" in ctx.stop_reason and "epoch 1" in ctx.stop_reason


def test_registered_as_an_optional_callback_with_documented_defaults():
    component = segkit.get_component("callback", "early_stopping")
    assert not component.metadata.get("default")
    callback = segkit.create_callback("early_stopping", run_dir=Path("."))
    settings_ = (callback.patience, callback.min_delta, callback.monitor, callback.mode)
    assert settings_ == (10, 0.0, "valid_dice", "max")
    # Values from a config file or --callback-option may arrive as strings or floats.
    callback = segkit.create_callback("early_stopping", run_dir=Path("."), patience="3", min_delta="0.01")
    assert (callback.patience, callback.min_delta) == (3, 0.01)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"patience": -1}, "patience"),
        ({"patience": 2.5}, "patience"),
        ({"patience": "soon"}, "patience"),
        ({"patience": float("inf")}, "patience"),
        ({"min_delta": -0.1}, "min_delta"),
        ({"mode": "maximum"}, "mode"),
        ({"monitor": ""}, "monitor"),
        ({"patiense": 3}, "patiense"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(options, message):
    with pytest.raises(UsageError, match=message):
        build_early_stopping(Path("."), **options)


def test_an_unknown_monitored_metric_is_a_usage_error_listing_the_metrics():
    callback = build_early_stopping(Path("."), monitor="val_dice")
    with pytest.raises(UsageError, match="val_dice.*valid_dice"):
        callback.on_epoch_end(context(), {"epoch": 1, "valid_dice": 0.5})


def test_segkit_run_stops_early_and_says_why(tmp_path):
    # valid_dice lies in [0, 1], so nothing after epoch 1 can improve on it by more than 1.
    args = tiny_run(
        base_channels=2,
        image_size=16,
        epochs=6,
        batch_size=4,
        train_size=8,
        valid_size=4,
        callbacks=("csv", "early_stopping"),
    )
    result = run_cli(
        "run",
        *args,
        "--out",
        tmp_path,
        "--callback-option",
        "early_stopping.patience=1",
        "--callback-option",
        "early_stopping.min_delta=1.0",
    )
    assert result.exit_code == 0, result.output
    assert "early stopping: valid_dice did not improve" in result.output
    run_dir = only_run_dir(tmp_path)
    epochs = [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]
