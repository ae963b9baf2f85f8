"""The task seam: what a kind of segmentation task means, in one object.

A task says how many output channels a model needs, how logits become probabilities and a predicted
mask, which metrics are kept (and how a figure is labelled), what a loss receives, which metrics.csv
column picks the best checkpoint, and what a checkpoint, ``segkit predict`` and an exported model's
notes say about turning logits into a mask. The engine, evaluation, prediction and export ask the
task instead of assuming one output channel passed through a sigmoid and a threshold.

- ``binary`` (``BinaryTask``): one channel, sigmoid, threshold (one thing against the rest);
- ``multiclass`` (``MulticlassTask``): K mutually exclusive classes, softmax, argmax, 255 = ignore;
- ``multilabel`` (``MultilabelTask``): K independent channels, a sigmoid and a threshold each.

The dataset chooses (its ``task`` attribute, see the ``register_datasets`` hook); a checkpoint
records the task with its class names and palette.
"""

from __future__ import annotations

from typing import Any

from segkit.errors import CheckpointError, DataError, UsageError
from segkit.task.binary import BinaryTask
from segkit.task.multiclass import MulticlassTask
from segkit.task.multilabel import MultilabelTask

Task = BinaryTask | MulticlassTask | MultilabelTask
TASK_KINDS = ("binary", "multiclass", "multilabel")

__all__ = [
    "Task",
    "TASK_KINDS",
    "BinaryTask",
    "MulticlassTask",
    "MultilabelTask",
    "task_from_checkpoint",
    "task_for_dataset",
    "selection_label",
]


def task_from_checkpoint(payload: dict[str, Any], path: Any = "checkpoint") -> Task:
    """The task a checkpoint was trained for (binary when it does not say), with its threshold."""
    kind = payload.get("task", "binary")
    try:
        if kind == "binary":
            if payload.get("out_channels", 1) != 1:
                raise ValueError(f"out_channels {payload.get('out_channels')!r}; a binary task has 1")
            return BinaryTask(float(payload.get("threshold", 0.5)))
        if kind == "multiclass":
            task: Task = MulticlassTask.from_fields(payload)
        elif kind == "multilabel":
            task = MultilabelTask.from_fields(payload)
        else:
            raise CheckpointError(
                f"{path} was trained for a {kind!r} task, which this segkit does not know "
                f"(it knows: {', '.join(TASK_KINDS)})"
            )
    except CheckpointError:
        raise
    except KeyError as error:
        raise CheckpointError(f"{path} records a {kind} task without {error}") from None
    except (TypeError, ValueError, UsageError) as error:
        raise CheckpointError(f"{path} has a malformed {kind} task: {error}") from None
    if payload.get("out_channels", task.out_channels) != task.out_channels:
        raise CheckpointError(
            f"{path} has out_channels {payload.get('out_channels')!r} for {task.out_channels} classes"
        )
    return task


def task_for_dataset(dataset: Any, threshold: float) -> Task:
    """The task a training dataset asks for (its ``task``, ``class_names``, ``palette`` and
    ``background_index`` attributes; binary when it names no task)."""
    kind = getattr(dataset, "task", "binary") or "binary"
    names = tuple(str(name) for name in getattr(dataset, "class_names", None) or ())
    palette = tuple(tuple(colour) for colour in getattr(dataset, "palette", None) or ())
    try:
        if kind == "binary":
            return BinaryTask(threshold)
        if kind == "multiclass":
            return MulticlassTask(names, palette, getattr(dataset, "background_index", None))
        if kind == "multilabel":
            return MultilabelTask(names, threshold, palette)
    except (TypeError, ValueError, UsageError) as error:
        raise DataError(f"the dataset describes its {kind} task badly: {error}") from None
    raise DataError(f"the dataset asks for a {kind!r} task; known tasks: {', '.join(TASK_KINDS)}")


def selection_label(task: Task, resolution: Any) -> str:
    """The label of the valid figure that picks the best checkpoint."""
    return task.record_labels(resolution)[task.selection_key]


def settings_left_out(task: Task, values: dict[str, Any]) -> dict[str, str]:
    """Settings that are on but mean nothing for ``task``, each with the reason (recipes switch on
    levers made for binary tasks; the engine turns these off and says so)."""
    reasons = {}
    if values.get("calibrate_threshold") and task.kind != "binary":
        reasons["calibrate_threshold"] = (
            "an argmax has no threshold"
            if task.kind == "multiclass"
            else "one threshold sweep per label is not built; --threshold applies to every label"
        )
    for key in ("fill_holes", "keep_largest"):
        if values.get(key) and not task.supports_postprocess:
            reasons[key] = f"post-processing works on binary masks, not on {task.kind} ones"
    return reasons
