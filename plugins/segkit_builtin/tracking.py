"""What the experiment-tracker callbacks (``tensorboard``, ``mlflow``) share.

- ``metric_name``: the name a tracker shows for a column of the epoch record, saying split, metric,
  reduction and how a mask is made: ``valid/dice_per_image_t0.5`` (per-image mean at threshold 0.5),
  ``valid/mean_iou_pooled_argmax`` (multi-class, pooled over the split), ``optim/learning_rate``.
  The full description of each (config.json's label) goes to the tracker beside it.
- ``trackers.json`` in the run folder: where each tracker put this run (TensorBoard's log dir,
  MLflow's tracking URI and run id), so that ``segkit run --resume`` continues the same tracker run.
- ``require``: a tracker's package, or a one-line usage error naming the extra that installs it.
- ``TrackerWarning`` and ``WarnOnce``: a tracker (or a recorder, with its own warning class) that
  cannot log something warns once per kind of problem, and training goes on.
"""

from __future__ import annotations

import importlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

from segkit.atomic_files import atomic_write_text
from segkit.config.run_folder import read_run_config
from segkit.errors import SegkitError, UsageError

TRACKERS_FILE = "trackers.json"

#: Columns whose tracker name does not depend on the task.
_PLAIN_NAMES = {
    "train_loss": "train/loss",
    "valid_loss": "valid/loss",
    "lr": "optim/learning_rate",
    "epoch_time_s": "speed/epoch_time_s",
    "train_images_per_s": "speed/train_images_per_s",
    "skipped_steps": "train/skipped_steps",
    "train_image_size": "train/image_size",
    "calibrated_threshold": "valid/calibrated_threshold",
}
#: Binary runs: column -> metric and reduction (the mask rule is appended).
_BINARY_NAMES = {
    "train_dice": "train/dice_per_image",
    "valid_dice": "valid/dice_per_image",
    "valid_dice_dataset": "valid/dice_pooled",
    "valid_iou": "valid/iou_per_image",
    "valid_iou_dataset": "valid/iou_pooled",
}
#: Runs with several classes: means over classes.
_CLASSES_NAMES = {
    "train_dice": "train/mean_dice_per_batch",
    "valid_dice": "valid/mean_dice_pooled",
    "valid_iou": "valid/mean_iou_pooled",
    "valid_dice_per_image": "valid/mean_dice_per_image",
    "valid_iou_per_image": "valid/mean_iou_per_image",
    "valid_iou_all_classes": "valid/mean_iou_all_classes_pooled",
}


def mask_rule(task_kind: str, threshold: Any) -> str:
    """How a mask is made, as a name suffix: ``t0.5`` (a threshold) or ``argmax``."""
    if task_kind == "multiclass":
        return "argmax"
    try:
        return f"t{float(threshold):g}"
    except (TypeError, ValueError):
        return "t?"


def metric_name(column: str, task_kind: str = "binary", threshold: Any = 0.5) -> str | None:
    """The tracker's name of an epoch-record column; None for ``epoch`` (the step itself)."""
    if column == "epoch":
        return None
    if column in _PLAIN_NAMES:
        return _PLAIN_NAMES[column]
    rule = mask_rule(task_kind, threshold)
    if column == "valid_dice_calibrated":  # at the calibrated threshold, itself a metric
        return "valid/dice_per_image_calibrated_threshold"
    names = _BINARY_NAMES if task_kind == "binary" else _CLASSES_NAMES
    if column in names:
        return f"{names[column]}_{rule}"
    for metric in ("iou", "dice"):  # one class's pooled score: valid_iou_<class>
        prefix = f"valid_{metric}_"
        if task_kind != "binary" and column.startswith(prefix):
            return f"valid/{metric}_pooled_{rule}/{column.removeprefix(prefix)}"
    return column


class TrackerWarning(UserWarning):
    """A tracker could not log something; training continues."""


class WarnOnce:
    """``warn(what, error)`` warns "<who>: could not <what>: <error><then>" the first time only for each
    ``what``: a store that is down, or a workbook Excel holds open, would otherwise warn every epoch.
    Call it from the callback's method that failed: the warning points at the line that called that."""

    def __init__(self, who: str, category: type[Warning], then: str = "; training continues") -> None:
        self.who, self.category, self.then = who, category, then
        self._warned: set[str] = set()

    def __call__(self, what: str, error: BaseException) -> None:
        if what in self._warned:
            return
        self._warned.add(what)
        message = f"{self.who}: could not {what}: {type(error).__name__}: {error}{self.then}"
        warnings.warn(message, self.category, stacklevel=3)


def run_description(run_dir: Path) -> dict[str, Any]:
    """The run's config.json (``{}`` when missing or unreadable: a tracker never stops training):
    settings, their sources, metric labels, task."""
    try:
        return read_run_config(run_dir, missing_ok=True)
    except SegkitError:
        return {}


def task_kind(description: dict[str, Any]) -> str:
    resolved = description.get("resolved")
    return str(resolved.get("task", "binary")) if isinstance(resolved, dict) else "binary"


def numeric_metrics(record: dict[str, Any], kind: str, threshold: Any) -> dict[str, float]:
    """The record's numbers under their tracker names (None, text and booleans left out)."""
    metrics: dict[str, float] = {}
    for column, value in record.items():
        name = metric_name(column, kind, threshold)
        if name is None or value is None or isinstance(value, (bool, str)):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        metrics[name] = number
    return metrics


def metric_descriptions(record: dict[str, Any], description: dict[str, Any]) -> dict[str, str]:
    """Tracker name -> full description of each figure (``segkit.reporting.plotting.describe_column``)."""
    from segkit.reporting.plotting import describe_column

    config = description.get("config") if isinstance(description.get("config"), dict) else {}
    kind, threshold = task_kind(description), (config or {}).get("threshold")
    descriptions = {}
    for column in record:
        name = metric_name(column, kind, threshold)
        if name is not None:
            descriptions[name] = f"{describe_column(column, description)} [metrics.csv column {column}]"
    return descriptions


def first_epoch_of_session(history: list[dict[str, Any]]) -> int:
    """The epoch this session trains first: 1, or after the epochs a resumed run restored."""
    epochs = [int(record["epoch"]) for record in history if isinstance(record.get("epoch"), (int, float))]
    return max(epochs, default=0) + 1


def read_trackers(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / TRACKERS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def record_tracker(run_dir: Path, name: str, entry: dict[str, Any]) -> None:
    """Remember where tracker ``name`` keeps this run, beside what other trackers recorded."""
    recorded = read_trackers(run_dir)
    recorded[name] = entry
    atomic_write_text(Path(run_dir) / TRACKERS_FILE, json.dumps(recorded, indent=2) + "\n")


def require(module: str, callback: str, extra: str) -> Any:
    """Import ``module`` for callback ``callback``, or fail with one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise UsageError(
            f"callback {callback!r} needs the {extra} package, which is not installed "
            f"({error.name or module}): pip install 'segkit[{extra}]'"
        ) from None


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def settings_table(description: dict[str, Any], values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(setting, value as ``segkit run`` prints it, where it came from) for every resolved setting."""
    from segkit.config.settings import format_value

    sources = description.get("sources") if isinstance(description.get("sources"), dict) else {}
    return [(key, format_value(value), str((sources or {}).get(key, ""))) for key, value in values.items()]
