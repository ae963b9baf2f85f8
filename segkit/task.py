"""The task seam: what a kind of segmentation task means, in one object.

A task says how many output channels a model needs, how logits become probabilities and a predicted
mask, which metrics are kept (and how a figure is labelled), what a loss receives, and what a
checkpoint, ``segkit predict`` and an exported model's notes say about turning logits into a mask.
The engine, evaluation, prediction and export ask the task instead of assuming one output channel
passed through a sigmoid and a threshold.

``binary`` (one thing against the rest) is the only kind today: one output channel, a sigmoid, and
a probability threshold. A checkpoint without a ``task`` field is binary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from segkit.errors import CheckpointError, DataError
from segkit.metrics import MetricAccumulator, batch_dice, check_threshold, describe_metric

#: The metric the engine picks the best checkpoint by, for each kind of task.
SELECTION_METRIC = {"binary": ("dice", "per_image")}


@dataclass(frozen=True)
class BinaryTask:
    """Foreground against background: one logit channel, ``sigmoid(logit) > threshold``."""

    threshold: float = 0.5
    kind = "binary"
    out_channels = 1

    def __post_init__(self) -> None:
        check_threshold(self.threshold)

    def with_threshold(self, threshold: float) -> BinaryTask:
        return BinaryTask(threshold)

    # -- logits to probabilities to a mask ---------------------------------------------------------

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` foreground probabilities of ``(N, 1, H, W)`` logits."""
        return torch.sigmoid(logits.float())

    def predict_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` bool masks; ``logit > logit(threshold)`` is exactly ``sigmoid > threshold``."""
        return logits[:, 0].float() > self.logit_cut_off

    def mask_from_probability(self, probability: np.ndarray) -> np.ndarray:
        """A bool mask from an ``(H, W)`` foreground probability map."""
        return probability > self.threshold

    def mask_pixels(self, mask: np.ndarray) -> np.ndarray:
        """The 8-bit pixels ``segkit predict`` writes for a mask: 255 foreground, 0 background."""
        return mask.astype(np.uint8) * 255

    @property
    def logit_cut_off(self) -> float:
        return math.log(self.threshold / (1 - self.threshold))

    # -- what losses and metrics receive ---------------------------------------------------------

    def loss_inputs(
        self, logits: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The loss sees float32 logits and the ``{0, 1}`` mask of the same shape."""
        return logits.float(), masks, ignore

    def new_accumulator(self, empty_score: float = 1.0) -> MetricAccumulator:
        return MetricAccumulator(threshold=self.threshold, empty_score=empty_score)

    def batch_score(self, logits: torch.Tensor, masks: torch.Tensor) -> float:
        """A cheap score of one training batch for the progress bar and the train columns."""
        return batch_dice(logits.detach().float(), masks, threshold=self.threshold)

    def metric_label(self, name: str, reduction: str, resolution: Any, split: str) -> str:
        return describe_metric(name, reduction, self.threshold, resolution, split)

    # -- what files say -------------------------------------------------------------------------

    def checkpoint_fields(self) -> dict[str, Any]:
        return {"task": self.kind, "out_channels": self.out_channels, "threshold": self.threshold}

    def output_description(self) -> dict[str, Any]:
        """How a caller of an exported model turns its output into a mask."""
        return {
            "shape": ["batch", self.out_channels, "height", "width"],
            "kind": "logits: apply a sigmoid to get the foreground probability",
            "threshold": self.threshold,
        }

    def postprocessing_lines(self) -> list[str]:
        """From (resized) logits to a mask, in words an exported model's caller follows."""
        return ["probability = 1 / (1 + exp(-logits))", f"mask = probability > {self.threshold:g}"]


Task = BinaryTask
TASKS = {"binary": BinaryTask}


def task_from_checkpoint(payload: dict[str, Any], path: Any = "checkpoint") -> Task:
    """The task a checkpoint was trained for (binary when it does not say), with its threshold."""
    kind = payload.get("task", "binary")
    if kind not in TASKS:
        raise CheckpointError(
            f"{path} was trained for a {kind!r} task, which this segkit does not know "
            f"(it knows: {', '.join(TASKS)})"
        )
    out_channels = payload.get("out_channels", 1)
    if out_channels != TASKS[kind].out_channels:
        raise CheckpointError(f"{path} has out_channels {out_channels!r}; a {kind} task has 1")
    threshold = payload.get("threshold", 0.5)
    try:
        return TASKS[kind](float(threshold))
    except Exception:
        raise CheckpointError(f"{path} has threshold {threshold!r}, not strictly between 0 and 1") from None


def task_for_dataset(dataset: Any, threshold: float) -> Task:
    """The task a training dataset asks for (its ``task`` attribute; binary when it has none)."""
    kind = getattr(dataset, "task", "binary")
    if kind not in TASKS:
        raise DataError(f"the dataset asks for a {kind!r} task; known tasks: {', '.join(TASKS)}")
    return TASKS[kind](threshold)


def selection_label(task: Task, resolution: Any, split: str = "valid") -> str:
    """The label of the figure that chooses the best checkpoint, e.g. valid Dice (per-image mean, ...)."""
    name, reduction = SELECTION_METRIC[task.kind]
    return task.metric_label(name, reduction, resolution, split)
