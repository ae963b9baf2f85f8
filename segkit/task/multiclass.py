"""Multiclass: K mutually exclusive classes, a softmax, and the argmax as the predicted class.

Masks hold class ids (``(N, 1, H, W)`` int64), 255 where a pixel is ignored. The macro means (and so
the figure that picks the best checkpoint, mean IoU pooled over the split) cover the foreground
classes when one class is the background (the class named ``background``, or the dataset's
``background_index``), else every class; every label says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from segkit.metrics.classes import IGNORE_INDEX, multiclass_counts
from segkit.task.base import SeveralClasses, checked_palette


@dataclass(frozen=True)
class MulticlassTask(SeveralClasses):
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, ...], ...] = field(default=())
    background: int | None = None
    ignore_index: int = IGNORE_INDEX
    kind = "multiclass"
    mask_rule = "argmax"
    selection_key = "valid_iou"
    supports_threshold = False
    supports_postprocess = False

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"a multiclass task needs at least 2 classes, got {list(self.class_names)}")
        palette = checked_palette(self.palette or None, self.class_names, self.kind)
        object.__setattr__(self, "palette", tuple(tuple(colour) for colour in palette))
        if self.background is None:
            lowered = [name.lower() for name in self.class_names]
            if "background" in lowered:
                object.__setattr__(self, "background", lowered.index("background"))

    @property
    def threshold(self) -> None:
        return None

    @property
    def averaged(self) -> list[int]:
        """The classes the macro means cover: all but the background, or all when there is none."""
        return [index for index in range(len(self.class_names)) if index != self.background]

    def with_threshold(self, threshold: Any) -> MulticlassTask:
        return self  # an argmax has no threshold

    # -- logits to probabilities to a mask ---------------------------------------------------------

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def predict_mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` int64 class ids."""
        return logits.float().argmax(dim=1)

    def mask_from_probability(self, probability: np.ndarray) -> np.ndarray:
        """``(H, W)`` class ids from ``(K, H, W)`` probabilities."""
        return probability.argmax(axis=0)

    def mask_images(self, mask: np.ndarray) -> dict[str, Image.Image]:
        """An index PNG (palette mode): pixel values are class ids, shown in the task's colours."""
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        flat = [value for colour in self.palette for value in colour]
        image.putpalette(flat + [0] * (768 - len(flat)))
        return {"mask": image}

    def colour_mask(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` colours of a ``(H, W)`` id mask, and which pixels to tint (not background)."""
        colours = np.asarray(self.palette, dtype=np.float32)[mask]
        tinted = (
            np.asarray(mask != self.background) if self.background is not None else np.ones(mask.shape, bool)
        )
        return colours, tinted

    # -- what losses and metrics receive ---------------------------------------------------------

    def loss_inputs(self, logits: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None):
        """Multiclass losses take ``(N, H, W)`` int64 ids with the ignore value where a pixel is ignored."""
        target = masks[:, 0].long() if masks.dim() == 4 else masks.long()
        if ignore is not None:
            target = torch.where(ignore[:, 0] if ignore.dim() == 4 else ignore, self.ignore_index, target)
        return logits.float(), target, None

    def _count(self, logits, target, ignore):
        _, target, _ = self.loss_inputs(logits, target, ignore)
        return multiclass_counts(logits, target, self.ignore_index)

    # -- what files say -------------------------------------------------------------------------

    def checkpoint_fields(self) -> dict[str, Any]:
        return {
            "task": self.kind,
            "out_channels": self.out_channels,
            "class_names": list(self.class_names),
            "palette": [list(colour) for colour in self.palette],
            "background": self.background,
            "ignore_index": self.ignore_index,
        }

    def output_description(self) -> dict[str, Any]:
        return {
            "shape": ["batch", self.out_channels, "height", "width"],
            "kind": "logits, one channel per class: the argmax over channels is the predicted class id",
            "classes": list(self.class_names),
        }

    def postprocessing_lines(self) -> list[str]:
        return [
            "mask = argmax over the class channel (class ids, in the order of 'classes')",
            "probabilities, where wanted = softmax over the class channel",
        ]

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> MulticlassTask:
        names: Sequence[str] = fields["class_names"]
        background = fields.get("background")
        return cls(
            tuple(str(name) for name in names),
            tuple(tuple(colour) for colour in fields.get("palette") or ()),
            None if background is None else int(background),
            int(fields.get("ignore_index", IGNORE_INDEX)),
        )
