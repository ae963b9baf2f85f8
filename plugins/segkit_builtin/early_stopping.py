"""Callback "early_stopping": end training when a metric has stopped improving.

The rule, for ``mode="max"`` (``"min"`` mirrors it): an epoch *improves* when its value of ``monitor``
exceeds the best value so far by more than ``min_delta`` (the first finite value always improves).
After ``patience`` consecutive epochs without improvement the callback sets ``context.should_stop``
and ``context.stop_reason``; the engine finishes that epoch and stops. A missing value (None) or NaN
never improves. A resumed run replays the history it restored, so patience counts across the resume.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import segkit
from segkit.callbacks import Callback, RunContext
from segkit.errors import UsageError

MODES = ("max", "min")


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(
        self, patience: int = 10, min_delta: float = 0.0, monitor: str = "valid_dice", mode: str = "max"
    ) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.monitor = monitor
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0

    def improves(self, value: Any) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if value is None or isinstance(value, bool):
            return False
        value = float(value)
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, metrics: dict[str, Any], epoch: int | None = None) -> bool:
        """Take one epoch's record into account; True when training should stop now."""
        if self.monitor not in metrics:
            raise UsageError(
                f"callback 'early_stopping': option monitor={self.monitor!r} is not a metric the engine "
                f"records; metrics are {', '.join(map(str, metrics))}"
            )
        value = metrics[self.monitor]
        if self.improves(value):
            self.best = float(value)
            self.best_epoch = metrics.get("epoch", epoch)
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return self.epochs_without_improvement >= self.patience and self.epochs_without_improvement > 0

    def stop_reason(self) -> str:
        best = "never finite" if self.best is None else f"best {self.best:.4g} at epoch {self.best_epoch}"
        return (
            f"early stopping: {self.monitor} did not improve by more than {self.min_delta:g} "
            f"for {self.epochs_without_improvement} epochs ({best})"
        )

    def on_fit_start(self, context: RunContext) -> None:
        # A resumed run arrives with the epochs it already trained: count patience across the resume.
        self.reset()
        for record in context.history:
            if self.monitor in record:
                self.update(record)

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        if self.update(metrics, epoch=context.epoch):
            context.should_stop = True
            context.stop_reason = self.stop_reason()


def build_early_stopping(run_dir: Path | None = None, **options: Any) -> EarlyStopping:
    """Stop training when a metric (valid_dice) has not improved for `patience` (10) epochs."""
    known = ("patience", "min_delta", "monitor", "mode")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(
            f"callback 'early_stopping': unknown option(s) {', '.join(unknown)}; "
            f"options are {', '.join(known)}"
        )
    patience = options.get("patience", 10)
    try:
        whole = not isinstance(patience, bool) and int(patience) == float(patience)
        patience_ok = whole and int(patience) >= 0
    except (TypeError, ValueError, OverflowError):
        patience_ok = False
    if not patience_ok:
        raise UsageError(
            f"callback 'early_stopping': option patience must be a non-negative integer, got {patience!r}"
        )
    min_delta = options.get("min_delta", 0.0)
    try:
        min_delta_ok = not isinstance(min_delta, bool) and float(min_delta) >= 0
    except (TypeError, ValueError):
        min_delta_ok = False
    if not min_delta_ok:
        raise UsageError(
            f"callback 'early_stopping': option min_delta must be a number >= 0, got {min_delta!r}"
        )
    monitor = options.get("monitor", "valid_dice")
    if not isinstance(monitor, str) or not monitor:
        raise UsageError(f"callback 'early_stopping': option monitor must be a metric name, got {monitor!r}")
    mode = options.get("mode", "max")
    if mode not in MODES:
        raise UsageError(
            f"callback 'early_stopping': option mode must be one of {', '.join(MODES)}, got {mode!r}"
        )
    return EarlyStopping(patience=int(patience), min_delta=float(min_delta), monitor=monitor, mode=mode)


@segkit.hookimpl
def register_callbacks(register):
    register(
        "early_stopping",
        build_early_stopping,
        description="Stop when valid_dice has not improved for `patience` (10) epochs; options monitor, mode",
        default=False,
    )
