"""What every kind of task shares: class names, colours, and the words that label a figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segkit.task.palette import default_palette


def checked_palette(palette: Any, class_names: Sequence[str], kind: str) -> list[list[int]]:
    """``palette`` as K ``[r, g, b]`` lists of 0-255 ints (extra colours dropped), or, when it is None,
    the default colours every dataset uses (``segkit.task.palette.default_palette``)."""
    classes = len(class_names)
    if palette is None:
        return default_palette(class_names, kind)
    rows = [[int(value) for value in colour] for colour in palette]
    if len(rows) < classes or any(len(row) != 3 or not all(0 <= v <= 255 for v in row) for row in rows):
        raise ValueError(f"a palette needs {classes} colours of three values 0-255, got {palette!r}")
    return rows[:classes]


def resolution_words(resolution: Any) -> str:
    """``64`` -> "64x64 network input"; ``"original"`` -> "original mask size"; other text as is."""
    if isinstance(resolution, str):
        return "original mask size" if resolution == "original" else resolution
    if isinstance(resolution, int):
        return f"{resolution}x{resolution} network input"
    height, width = resolution
    return f"{height}x{width} network input"


def classes_words(class_names: Sequence[str], averaged: Sequence[int]) -> str:
    """Which classes a macro mean covers: "3 classes (all)" or "2 foreground classes (pet, border)"."""
    if len(averaged) == len(class_names):
        return f"{len(class_names)} classes (all)"
    names = ", ".join(class_names[index] for index in averaged)
    return f"{len(averaged)} foreground classes ({names})"


def class_record_fields(scores: dict[str, float], class_names: Sequence[str], all_classes: bool) -> dict:
    """metrics.csv columns of a validation with several classes: the macro means (``valid_dice``,
    ``valid_iou`` pooled; ``_per_image``; ``valid_iou_all_classes`` when the means leave a background
    out), then each class's pooled IoU and Dice."""
    fields = {
        "valid_dice": scores["dice_macro_dataset"],
        "valid_iou": scores["iou_macro_dataset"],
        "valid_dice_per_image": scores["dice_macro_per_image"],
        "valid_iou_per_image": scores["iou_macro_per_image"],
    }
    if all_classes:
        fields["valid_iou_all_classes"] = scores["iou_macro_all_dataset"]
    for metric in ("iou", "dice"):
        for name in class_names:
            fields[f"valid_{metric}_{name}"] = scores[f"{metric}_{name}"]
    return fields


def class_record_labels(task: Any, resolution: Any, how: str) -> dict[str, str]:
    """The labels of ``class_record_fields``' columns; ``how`` says how a mask is made ("argmax")."""
    labels = {
        f"valid_{metric}{suffix}": task.metric_label(metric, reduction, resolution, "valid")
        for metric in ("dice", "iou")
        for suffix, reduction in (("", "dataset"), ("_per_image", "per_image"))
    }
    where = resolution_words(resolution)
    if task.background is not None:
        labels["valid_iou_all_classes"] = (
            f"valid mean IoU (pooled over the dataset, macro over {len(task.class_names)} classes "
            f"(all, background included), {how}, {where})"
        )
    for metric, word in (("iou", "IoU"), ("dice", "Dice")):
        for name in task.class_names:
            labels[f"valid_{metric}_{name}"] = (
                f"valid {word} of class {name} (pooled over the dataset, {how}, {where})"
            )
    return labels


_REDUCTIONS = {"dataset": "pooled over the dataset", "per_image": "per-image mean"}


class SeveralClasses:
    """What the multiclass and multilabel tasks share: K output channels, per-class metrics
    (``segkit.metrics.classes``) and their labels. A subclass gives ``class_names``, ``averaged`` (the
    classes the means cover), ``mask_rule`` (how a mask is made, in words) and ``_count(logits,
    target, ignore) -> (counts, confusion or None)``."""

    class_names: tuple[str, ...]
    background: int | None

    @property
    def out_channels(self) -> int:
        return len(self.class_names)

    @property
    def averaged(self) -> list[int]:
        raise NotImplementedError

    @property
    def mask_rule(self) -> str:
        raise NotImplementedError

    def _count(self, logits: Any, target: Any, ignore: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def new_accumulator(self) -> Any:
        from segkit.metrics.classes import ClassMetricAccumulator

        return ClassMetricAccumulator(self.class_names, self.averaged, counter=self._count)

    def batch_score(self, logits: Any, masks: Any, ignore: Any = None) -> float:
        """Macro Dice over the averaged classes, pooled over the batch (the progress bar's figure);
        ignored pixels count for nothing."""
        from segkit.metrics.classes import class_scores

        counts, _ = self._count(logits.detach(), masks, ignore)
        dice = class_scores(counts.sum(dim=0))["dice"][self.averaged]
        present = dice[~dice.isnan()]
        return float(present.mean()) if len(present) else 1.0

    def metric_label(self, name: str, reduction: str, resolution: Any, split: str) -> str:
        metric = {"dice": "Dice", "iou": "IoU"}[name]
        return (
            f"{split} mean {metric} ({_REDUCTIONS[reduction]}, macro over "
            f"{classes_words(self.class_names, self.averaged)}, {self.mask_rule}, "
            f"{resolution_words(resolution)})"
        )

    def record_fields(self, scores: dict[str, float]) -> dict[str, float]:
        """metrics.csv columns of a validation: the macro means, then each class's pooled Dice and IoU."""
        return class_record_fields(scores, self.class_names, all_classes=self.background is not None)

    def record_labels(self, resolution: Any) -> dict[str, str]:
        return class_record_labels(self, resolution, self.mask_rule)
