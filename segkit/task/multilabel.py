"""Multilabel: K independent channels, each a sigmoid and a threshold; masks may overlap.

Masks are ``(N, K, H, W)`` {0, 1} floats. The macro means (and the figure that picks the best
checkpoint, mean IoU pooled over the split) cover every class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from segkit.metrics.binary import check_threshold
from segkit.metrics.classes import multilabel_counts
from segkit.task.base import SeveralClasses, checked_palette


@dataclass(frozen=True)
class MultilabelTask(SeveralClasses):
    class_names: tuple[str, ...]
    threshold: float = 0.5
    palette: tuple[tuple[int, ...], ...] = field(default=())
    kind = "multilabel"
    selection_key = "valid_iou"
    supports_threshold = True
    supports_postprocess = False
    background = None

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        if not self.class_names:
            raise ValueError("a multilabel task needs at least one class")
        colours = checked_palette(self.palette or None, self.class_names, self.kind)
        object.__setattr__(self, "palette", tuple(tuple(colour) for colour in colours))

    @property
    def averaged(self) -> list[int]:
        return list(range(len(self.class_names)))

    @property
    def mask_rule(self) -> str:
        return f"threshold {self.threshold:g} per class"

    def with_threshold(self, threshold: float) -> MultilabelTask:
        return MultilabelTask(self.class_names, threshold, self.palette)

    @property
    def logit_cut_off(self) -> float:
        return float(np.log(self.threshold / (1 - self.threshold)))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def predict_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, K, H, W)`` bool: each channel thresholded on its own."""
        return logits.float() > self.logit_cut_off

    def mask_from_probability(self, probability: np.ndarray) -> np.ndarray:
        return probability > self.threshold

    def mask_images(self, mask: np.ndarray) -> dict[str, Image.Image]:
        """One 0/255 PNG per class: labels overlap, so no single index image can hold them."""
        return {
            f"mask_{name}": Image.fromarray(mask[index].astype(np.uint8) * 255)
            for index, name in enumerate(self.class_names)
        }

    def colour_mask(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colours of a ``(K, H, W)`` mask (where labels overlap, the last class's colour shows)."""
        colours = np.zeros((*mask.shape[1:], 3), dtype=np.float32)
        for index, colour in enumerate(self.palette):
            colours[mask[index]] = colour
        return colours, np.asarray(mask.any(axis=0))

    def loss_inputs(self, logits: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None):
        if ignore is not None and ignore.shape != logits.shape:
            ignore = ignore.expand_as(logits)
        return logits.float(), masks, ignore

    def _count(self, logits, target, ignore):
        return multilabel_counts(logits, target, self.threshold, ignore), None

    def checkpoint_fields(self) -> dict[str, Any]:
        return {
            "task": self.kind,
            "out_channels": self.out_channels,
            "class_names": list(self.class_names),
            "palette": [list(colour) for colour in self.palette],
            "threshold": self.threshold,
        }

    def output_description(self) -> dict[str, Any]:
        return {
            "shape": ["batch", self.out_channels, "height", "width"],
            "kind": "logits, one independent channel per label: a sigmoid per channel gives its probability",
            "classes": list(self.class_names),
            "threshold": self.threshold,
        }

    def postprocessing_lines(self) -> list[str]:
        return [
            "probability = 1 / (1 + exp(-logits)), per channel",
            f"mask of each label = its probability > {self.threshold:g} (labels may overlap)",
        ]

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> MultilabelTask:
        names: Sequence[str] = fields["class_names"]
        return cls(
            tuple(str(name) for name in names),
            float(fields.get("threshold", 0.5)),
            tuple(tuple(colour) for colour in fields.get("palette") or ()),
        )
