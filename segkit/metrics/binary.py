"""Thresholded Dice, IoU, precision and recall for binary segmentation, with named reductions.

A prediction is foreground where ``sigmoid(logit) > threshold`` (computed as ``logit >
logit(threshold)``, so threshold 0.5 is exactly ``logit > 0``). Every score comes from integer counts
of true/false positives/negatives per image (``confusion_counts``), which makes the pooled figures
exact whatever the batch size or order:

- ``dice = 2 TP / (2 TP + FP + FN)``, ``iou = TP / (TP + FP + FN)``,
  ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``.
- A zero denominator: ``empty_score`` (default 1.0) when the image's truth and prediction are both
  empty (nothing to find and nothing claimed is a perfect answer), otherwise 0.0 (precision of an
  empty prediction of a non-empty truth, recall of false alarms on an empty truth). With
  ``empty_score=0`` empty images count as failures; report which one you used.

Reductions (always named; ``describe_metric`` writes them out):

- ``per_image``: the mean over images of each image's score; what the seed report called "test Dice".
  Every image weighs the same, whatever its foreground size.
- ``dataset``: the score of the counts pooled (summed) over the whole split; large objects weigh
  more. Sometimes called "micro" or "global".

Pixels flagged in ``ignore`` (e.g. the trimap border) are left out of every count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from segkit.errors import DataError, SegkitError, UsageError
from segkit.metrics.accumulation import PerImageCounts

METRICS = ("dice", "iou", "precision", "recall")
REDUCTIONS = ("per_image", "dataset")
COUNT_NAMES = ("tp", "fp", "fn", "tn")

_DISPLAY_NAMES = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "precision",
    "recall": "recall",
    "hd95": "HD95 (pixels)",
    "boundary_f": "boundary F-score",
}
_REDUCTION_WORDS = {"per_image": "per-image mean", "dataset": "pooled over the dataset"}


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or ``UsageError`` unless it is a probability in (0, 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise UsageError(f"threshold must be a probability strictly between 0 and 1, got {threshold!r}")
    return float(threshold)


def _as_images(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """``(N, H, W)`` view of an ``(N, 1, H, W)`` or ``(N, H, W)`` tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise DataError(f"{what} must be a tensor, got {type(tensor).__name__}")
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        return tensor[:, 0]
    if tensor.dim() == 3:
        return tensor
    raise DataError(
        f"{what} must be (N, 1, H, W) or (N, H, W) for binary segmentation, got shape {tuple(tensor.shape)}"
    )


def confusion_counts(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image ``(N, 4)`` int64 counts of tp, fp, fn, tn, on the device of ``logits``.

    ``logits`` and ``target`` are ``(N, 1, H, W)`` or ``(N, H, W)``; ``target`` holds 0 and 1 (bool
    or any number type); ``ignore`` (optional, bool) is True where a pixel must not count, and there
    logits and target may hold anything (NaN, 255, ...). ``threshold`` is on the sigmoid probability.
    """
    threshold = check_threshold(threshold)
    logits = _as_images(logits, "logits")
    target = _as_images(target, "target").to(logits.device)
    if target.shape != logits.shape:
        raise DataError(f"target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}")
    if ignore is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        ignore = _as_images(ignore, "ignore")
        if ignore.shape != logits.shape or ignore.dtype != torch.bool:
            raise DataError(
                f"ignore must be a bool tensor shaped like the logits {tuple(logits.shape)}, "
                f"got {ignore.dtype} {tuple(ignore.shape)}"
            )
        valid = ~ignore.to(logits.device)

    if target.dtype == torch.bool:
        truth = target
    else:
        # A mask of 0/255 or soft labels would otherwise be thresholded silently into nonsense.
        if ((target != 0) & (target != 1) & valid).any():
            bad = target[(target != 0) & (target != 1) & valid][:5].tolist()
            raise DataError(f"target must hold only 0 and 1 (outside ignored pixels), found values {bad}")
        truth = target == 1
    if logits.is_floating_point() and (torch.isnan(logits) & valid).any():
        raise SegkitError("logits contain NaN: the model diverged or its input was corrupt")

    # float32 (not bf16) so the cut-off is not rounded to a coarse grid; logit(0.5) is exactly 0.
    cut_off = math.log(threshold / (1 - threshold))
    predicted = logits.float() > cut_off
    truth_valid = truth & valid
    not_truth_valid = ~truth & valid
    tp = (predicted & truth_valid).flatten(1).sum(dim=1)
    fp = (predicted & not_truth_valid).flatten(1).sum(dim=1)
    fn = (~predicted & truth_valid).flatten(1).sum(dim=1)
    tn = (~predicted & not_truth_valid).flatten(1).sum(dim=1)
    return torch.stack([tp, fp, fn, tn], dim=1).to(torch.int64)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, both_empty: torch.Tensor, empty_score: float):
    numerator = numerator.double()
    denominator = denominator.double()
    score = numerator / denominator.clamp_min(1)
    fallback = torch.where(both_empty, torch.full_like(score, empty_score), torch.zeros_like(score))
    return torch.where(denominator > 0, score, fallback)


def scores_from_counts(counts: torch.Tensor, empty_score: float = 1.0) -> dict[str, torch.Tensor]:
    """Dice, IoU, precision and recall (float64 tensors) for each row of ``(..., 4)`` tp, fp, fn, tn counts.

    ``empty_score`` is the score of an image whose truth and prediction are both empty; see the
    module docstring for every zero-denominator case.
    """
    if counts.shape[-1] != 4:
        raise UsageError(f"counts must end in a dimension of 4 (tp, fp, fn, tn), got {tuple(counts.shape)}")
    if not 0 <= empty_score <= 1:
        raise UsageError(f"empty_score must be in [0, 1], got {empty_score!r}")
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    both_empty = (tp + fp + fn) == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty, empty_score),
        "iou": _ratio(tp, tp + fp + fn, both_empty, empty_score),
        "precision": _ratio(tp, tp + fp, both_empty, empty_score),
        "recall": _ratio(tp, tp + fn, both_empty, empty_score),
    }


def reduce_counts(counts: torch.Tensor, reduction: str, empty_score: float = 1.0) -> dict[str, float]:
    """The four scores of ``(N, 4)`` per-image counts under one reduction, ``per_image`` or ``dataset``."""
    if reduction not in REDUCTIONS:
        raise UsageError(f"unknown reduction {reduction!r}; reductions are: {', '.join(REDUCTIONS)}")
    counts = counts.reshape(-1, 4).cpu()
    if len(counts) == 0:
        raise UsageError("no images to score: the split (or batch) is empty")
    if reduction == "dataset":
        pooled = scores_from_counts(counts.sum(dim=0), empty_score)
        return {name: float(value) for name, value in pooled.items()}
    # fsum is exactly rounded, so the mean does not depend on the order the images came in.
    return {
        name: math.fsum(values.tolist()) / len(counts)
        for name, values in scores_from_counts(counts, empty_score).items()
    }


def batch_dice(
    logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, ignore: torch.Tensor | None = None
) -> float:
    """Mean per-image Dice of one batch (empty_score 1), as a float: cheap, for progress bars."""
    dice = scores_from_counts(confusion_counts(logits, target, threshold, ignore))["dice"]
    return float(dice.mean())


def describe_metric(
    name: str,
    reduction: str,
    threshold: float,
    resolution: int | Sequence[int] | str,
    split: str,
) -> str:
    """A figure's full label, e.g. ``"valid Dice (per-image mean, threshold 0.5, 64x64 network input)"``.

    ``resolution`` is the network input size (an int for square inputs, or ``(height, width)``), or
    ``"original"`` for scores computed on masks at their original size; any other string is used as is.
    """
    if name not in _DISPLAY_NAMES:
        raise UsageError(f"unknown metric {name!r}; metrics are: {', '.join(_DISPLAY_NAMES)}")
    if reduction not in _REDUCTION_WORDS:
        raise UsageError(f"unknown reduction {reduction!r}; reductions are: {', '.join(REDUCTIONS)}")
    if isinstance(resolution, str):
        where = "original mask size" if resolution == "original" else resolution
    elif isinstance(resolution, int):
        where = f"{resolution}x{resolution} network input"
    else:
        height, width = resolution
        where = f"{height}x{width} network input"
    return f"{split} {_DISPLAY_NAMES[name]} ({_REDUCTION_WORDS[reduction]}, threshold {threshold:g}, {where})"


class MetricAccumulator(PerImageCounts):
    """Streams per-image counts over a split and reports both reductions.

    ``threshold`` is on the sigmoid probability; ``empty_score`` scores images with empty truth and
    prediction (see the module docstring). Counts live on the CPU as int64; ``compute()`` keys are
    ``<metric>_<reduction>`` for the four metrics and two reductions, plus ``"images"``.
    """

    def __init__(self, threshold: float = 0.5, empty_score: float = 1.0) -> None:
        self.threshold = check_threshold(threshold)
        if not 0 <= empty_score <= 1:
            raise UsageError(f"empty_score must be in [0, 1], got {empty_score!r}")
        self.empty_score = float(empty_score)
        self.count_shape = (len(COUNT_NAMES),)
        self.reset()

    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        ignore: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Add one batch; returns its ``(N, 4)`` counts. ``names`` default to running indices."""
        counts = confusion_counts(logits, target, self.threshold, ignore).cpu()
        self._add(counts, names, "update")
        return counts

    def compute(self) -> dict[str, float]:
        """Both reductions of every metric: ``{"dice_per_image": ..., "dice_dataset": ..., "images": n}``."""
        counts = self._require_images()
        results: dict[str, float] = {}
        for reduction in REDUCTIONS:
            for name, value in reduce_counts(counts, reduction, self.empty_score).items():
                results[f"{name}_{reduction}"] = value
        results["images"] = len(counts)
        return results

    def per_image(self) -> list[dict]:
        """One dict per image: name, the four scores, foreground_fraction (of the truth over counted
        pixels) and the raw tp, fp, fn, tn counts."""
        counts = self.counts()
        scores = scores_from_counts(counts, self.empty_score)
        rows = []
        for index, (name, row) in enumerate(zip(self._names, counts.tolist(), strict=True)):
            tp, fp, fn, tn = row
            counted = tp + fp + fn + tn
            entry: dict[str, Any] = {"name": name}
            entry.update({metric: float(scores[metric][index]) for metric in METRICS})
            entry["foreground_fraction"] = (tp + fn) / counted if counted else 0.0
            entry.update(dict(zip(COUNT_NAMES, row, strict=True)))
            rows.append(entry)
        return rows

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Add another accumulator's images (same threshold and empty_score) to this one; returns self."""
        if (other.threshold, other.empty_score) != (self.threshold, self.empty_score):
            raise UsageError(
                f"cannot merge metrics at threshold {other.threshold} / empty_score {other.empty_score} into "
                f"metrics at threshold {self.threshold} / empty_score {self.empty_score}"
            )
        if len(other):
            self._add(other.counts().clone(), other.names, "merge")
        return self
