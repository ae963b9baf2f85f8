"""Binary: one thing against the rest. One logit channel, a sigmoid, and a probability threshold.

A checkpoint without a ``task`` field is binary; so is a dataset that names no task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from segkit.metrics.binary import MetricAccumulator, batch_dice, check_threshold, describe_metric


@dataclass(frozen=True)
class BinaryTask:
    """Foreground against background: one logit channel, ``sigmoid(logit) > threshold``."""

    threshold: float = 0.5
    kind = "binary"
    out_channels = 1
    class_names = ("foreground",)
    background = None
    #: The metrics.csv column that picks the best checkpoint: per-image mean Dice.
    selection_key = "valid_dice"
    supports_threshold = True
    supports_postprocess = True

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

    def mask_images(self, mask: np.ndarray) -> dict[str, Image.Image]:
        """What ``segkit predict`` writes for a mask: ``<stem>_mask.png``, 255 foreground, 0 background."""
        # one uint8 array (the bool mask viewed as 0/1 bytes), no temporaries: photos may be large
        return {"mask": Image.fromarray(np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255))}

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

    def batch_score(
        self, logits: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> float:
        """A cheap score of one training batch for the progress bar and the train columns (ignored
        pixels, such as the border of a trimap or the padding of a crop, count for nothing)."""
        return batch_dice(logits.detach().float(), masks, threshold=self.threshold, ignore=ignore)

    def metric_label(self, name: str, reduction: str, resolution: Any, split: str) -> str:
        return describe_metric(name, reduction, self.threshold, resolution, split)

    # -- what files say -------------------------------------------------------------------------

    def record_fields(self, scores: dict[str, float]) -> dict[str, float]:
        """metrics.csv columns of a validation (names kept from the first segkit releases)."""
        return {
            "valid_dice": scores["dice_per_image"],
            "valid_dice_dataset": scores["dice_dataset"],
            "valid_iou": scores["iou_per_image"],
        }

    def record_labels(self, resolution: Any) -> dict[str, str]:
        return {"valid_dice": self.metric_label("dice", "per_image", resolution, "valid")}

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
