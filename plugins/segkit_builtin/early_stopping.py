"""Callback "early_stopping": end training when a metric has stopped improving.

The rule, for ``mode="max"`` (``"min"`` mirrors it): an epoch *improves* when its value of ``monitor``
exceeds the best value so far by more than ``min_delta`` (the first finite value always improves).
After ``patience`` consecutive epochs without improvement the callback sets ``context.should_stop``
and ``context.stop_reason``; the engine finishes that epoch and stops. A missing value (None) or NaN
never improves. A resumed run replays the history it restored, so patience counts across the resume.
Under torchrun it runs on rank 0, whose decision every process obeys (see ``segkit.callbacks``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import segkit
from segkit.callbacks import Callback, RunContext
from segkit.component_options import Option, Parser, choice, non_negative, parse_component_options, text
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


def _whole_number(value: Any) -> int:
    # A config file or --callback-option may give "3" or 3.0; 2.5, inf and True are mistakes.
    if isinstance(value, bool):
        raise ValueError("a bool is not a count")
    number = float(value)
    if not number.is_integer() or number < 0:
        raise ValueError(f"not a whole number >= 0: {value!r}")
    return int(number)


OPTIONS = {
    "patience": Option(
        10, Parser(_whole_number, "a non-negative integer"), help="epochs without improvement before stopping"
    ),
    "min_delta": Option(0.0, non_negative, help="smallest change that counts as an improvement"),
    "monitor": Option("valid_dice", text, "a metric name", help="the metric of the epoch record to watch"),
    "mode": Option("max", choice(*MODES), help="max: higher is better; min: lower is better"),
}


def build_early_stopping(run_dir: Path | None = None, **options: Any) -> EarlyStopping:
    """Stop training when a metric (valid_dice) has not improved for `patience` (10) epochs."""
    return EarlyStopping(**parse_component_options("callback", "early_stopping", options, OPTIONS))


@segkit.hookimpl
def register_callbacks(register):
    register(
        "early_stopping",
        build_early_stopping,
        description="Stop when valid_dice has not improved for `patience` (10) epochs; options monitor, mode",
        default=False,
        options=OPTIONS,
    )
