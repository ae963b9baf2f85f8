"""Per-class Dice and IoU for multi-class and multi-label segmentation, with named reductions.

Every score comes from integer counts of true positives, false positives and false negatives per
image and per class, which makes pooled figures exact whatever the batch size, order or number of
processes:

- **multiclass**: the predicted class of a pixel is the argmax of its logits; for class ``c``, a
  pixel is a true positive when truth and prediction are both ``c``, a false positive when the
  prediction is ``c`` and the truth another class, a false negative the other way round. Pixels
  whose truth is the ignore value (255) count for nothing. A ``K x K`` confusion matrix (rows:
  truth, columns: prediction) is kept too.
- **multilabel**: each channel is a binary task of its own, ``sigmoid(logit) > threshold``.

Reductions (always named in a figure's label):

- ``dataset`` (pooled): the score of each class's counts summed over the split; the **macro** mean
  averages those per-class scores over the classes it names (all classes, or the foreground ones).
  A class that neither the truth nor the prediction holds anywhere in the split has no score and is
  left out of the mean (the per-class table shows it as empty).
- ``per_image``: for each image, the macro mean over the classes its truth or prediction holds (an
  image holding none of them scores 1: nothing to find, nothing claimed); then the mean over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from segkit.errors import DataError, SegkitError, UsageError
from segkit.metrics.accumulation import PerImageCounts

IGNORE_INDEX = 255
CLASS_COUNTS = ("tp", "fp", "fn")


def multiclass_counts(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, K, 3)`` int64 per-image per-class tp, fp, fn counts and the pooled ``(K, K)`` confusion
    matrix of argmax predictions. ``logits`` are ``(N, K, H, W)``; ``target`` ``(N, H, W)`` or
    ``(N, 1, H, W)`` class ids in ``[0, K)``, or ``ignore_index`` where a pixel does not count."""
    if logits.dim() != 4:
        raise DataError(f"logits must be (N, K, H, W), got shape {tuple(logits.shape)}")
    classes = logits.shape[1]
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    target = target.to(logits.device).long()
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise DataError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)} "
            "(expected (N, H, W))"
        )
    valid = target != ignore_index
    if ((target < 0) | (target >= classes))[valid].any():
        bad = sorted(set(target[valid & ((target < 0) | (target >= classes))].unique().tolist()))[:5]
        raise DataError(f"target holds class ids {bad} outside 0..{classes - 1} (and not the ignore value)")
    if logits.is_floating_point() and torch.isnan(logits).any():
        raise SegkitError("logits contain NaN: the model diverged or its input was corrupt")
    predicted = logits.argmax(dim=1)
    truth = torch.where(valid, target, 0)
    # Each valid pixel adds one to row (image, truth, prediction) of a per-image confusion tensor.
    per_image = logits.shape[0]
    flat = (
        torch.arange(per_image, device=logits.device)[:, None, None] * classes + truth
    ) * classes + predicted
    confusion = torch.bincount(flat[valid], minlength=per_image * classes * classes)
    confusion = confusion.reshape(per_image, classes, classes)
    true_positive = confusion.diagonal(dim1=1, dim2=2)
    false_positive = confusion.sum(dim=1) - true_positive  # predicted c, truth another class
    false_negative = confusion.sum(dim=2) - true_positive  # truth c, predicted another class
    counts = torch.stack([true_positive, false_positive, false_negative], dim=2).to(torch.int64)
    return counts.cpu(), confusion.sum(dim=0).to(torch.int64).cpu()


def multilabel_counts(
    logits: torch.Tensor, target: torch.Tensor, threshold: float, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """``(N, K, 3)`` int64 per-image per-channel tp, fp, fn of ``sigmoid(logits) > threshold``
    against a ``{0, 1}`` target of the same ``(N, K, H, W)`` shape; ``ignore`` (bool, broadcastable)
    marks pixels that do not count."""
    if logits.shape != target.shape or logits.dim() != 4:
        raise DataError(f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}")
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore is not None:
        valid = ~ignore.to(logits.device).expand_as(target)
    target = target.to(logits.device)
    if ((target != 0) & (target != 1) & valid).any():
        raise DataError("a multilabel target must hold only 0 and 1 (outside ignored pixels)")
    predicted = logits.float() > math.log(threshold / (1 - threshold))
    truth = target == 1
    true_positive = (predicted & truth & valid).flatten(2).sum(2)
    false_positive = (predicted & ~truth & valid).flatten(2).sum(2)
    false_negative = (~predicted & truth & valid).flatten(2).sum(2)
    return torch.stack([true_positive, false_positive, false_negative], dim=2).to(torch.int64).cpu()


def class_scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice and IoU (float64) of ``(..., 3)`` tp, fp, fn counts; NaN where the class is absent from
    both truth and prediction (no score, rather than a made-up one)."""
    counts = counts.double()
    true_positive, false_positive, false_negative = counts[..., 0], counts[..., 1], counts[..., 2]
    union = true_positive + false_positive + false_negative
    nan = torch.full_like(union, math.nan)
    return {
        "dice": torch.where(union > 0, 2 * true_positive / (union + true_positive).clamp_min(1), nan),
        "iou": torch.where(union > 0, true_positive / union.clamp_min(1), nan),
    }


def _nanmean(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return math.fsum(finite) / len(finite) if finite else math.nan


Counter = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, "torch.Tensor | None"]
]


class ClassMetricAccumulator(PerImageCounts):
    """Streams per-image, per-class counts over a split (and, for multiclass, a confusion matrix).

    ``class_names`` name the K classes; ``averaged`` are the ids the macro means cover (the foreground
    classes, or all); ``counter(logits, target, ignore)`` turns a batch into ``(N, K, 3)`` counts and
    an optional ``(K, K)`` confusion matrix (``update`` calls it). ``compute()`` keys:
    ``<metric>_<class name>`` (pooled per class), ``<metric>_macro_dataset`` and
    ``<metric>_macro_per_image`` over ``averaged``, and ``<metric>_macro_all_dataset`` over every
    class, for metric ``dice`` and ``iou``; plus ``images``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        averaged: Sequence[int] | None = None,
        counter: Counter | None = None,
    ) -> None:
        self.class_names = [str(name) for name in class_names]
        self.counter = counter
        self.averaged = list(range(len(self.class_names))) if averaged is None else list(averaged)
        if not self.averaged or not all(0 <= index < len(self.class_names) for index in self.averaged):
            raise UsageError(f"averaged classes {self.averaged} must be ids of {self.class_names}")
        self.count_shape = (len(self.class_names), len(CLASS_COUNTS))
        self.reset()

    def reset(self) -> None:
        super().reset()
        classes = len(self.class_names)
        self.confusion = torch.zeros(classes, classes, dtype=torch.int64)

    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        ignore: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Count one batch with ``counter`` and add it; returns its ``(N, K, 3)`` counts."""
        if self.counter is None:
            raise UsageError("this accumulator has no counter: use add(counts, names)")
        counts, confusion = self.counter(logits, target, ignore)
        self.add(counts, names, confusion)
        return counts

    def add(
        self, counts: torch.Tensor, names: Sequence[str] | None, confusion: torch.Tensor | None = None
    ) -> None:
        """Add one batch's ``(N, K, 3)`` counts (and its ``(K, K)`` confusion matrix)."""
        if counts.shape[1:] != self.count_shape:
            raise DataError(
                f"counts for {counts.shape[1]} classes, but the task has {len(self.class_names)} "
                f"({', '.join(self.class_names)})"
            )
        self._add(counts, names, "add")
        if confusion is not None:
            self.confusion += confusion.cpu()

    def compute(self) -> dict[str, float]:
        counts = self._require_images()
        pooled = class_scores(counts.sum(dim=0))
        per_image = class_scores(counts)
        results: dict[str, float] = {}
        for metric in ("dice", "iou"):
            scores = pooled[metric].tolist()
            for name, score in zip(self.class_names, scores, strict=True):
                results[f"{metric}_{name}"] = score
            results[f"{metric}_macro_dataset"] = _nanmean([scores[index] for index in self.averaged])
            results[f"{metric}_macro_all_dataset"] = _nanmean(scores)
            image_means = [
                _nanmean([row[index] for index in self.averaged]) for row in per_image[metric].tolist()
            ]
            # An image whose truth and prediction hold none of the averaged classes scores 1.
            image_means = [1.0 if math.isnan(value) else value for value in image_means]
            results[f"{metric}_macro_per_image"] = math.fsum(image_means) / len(image_means)
        results["images"] = len(counts)
        return results

    def per_image(self) -> list[dict[str, Any]]:
        """One row per image: its name, macro Dice and IoU over the averaged classes, and each class's."""
        scores = class_scores(self.counts())
        rows = []
        for index, name in enumerate(self._names):
            row: dict[str, Any] = {"name": name}
            for metric in ("dice", "iou"):
                values = scores[metric][index].tolist()
                macro = _nanmean([values[i] for i in self.averaged])
                row[metric] = 1.0 if math.isnan(macro) else macro
                row.update(
                    {f"{metric}_{cls}": value for cls, value in zip(self.class_names, values, strict=True)}
                )
            rows.append(row)
        return rows

    def _extra_state(self) -> Any:
        return self.confusion.tolist()

    def _merge_extra(self, states: list[Any]) -> None:
        classes = len(self.class_names)
        self.confusion = sum(
            (torch.tensor(matrix, dtype=torch.int64) for matrix in states),
            start=torch.zeros(classes, classes, dtype=torch.int64),
        )
