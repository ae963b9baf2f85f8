"""Boundary-aware metrics for evaluation reports: HD95 and the boundary F-score.

Region scores (Dice, IoU) barely move when a prediction's outline is ragged; these look at outlines.

Definitions (all distances Euclidean, in pixels of the masks they are computed on):

- **Boundary** of a mask: its foreground pixels with at least one 4-neighbour in the background
  (``skimage.segmentation.find_boundaries(mode="inner")``); pixels outside the image count as
  background, so an object touching the image edge has its outline there and only an empty mask
  has an empty boundary.
- **HD95** (``hausdorff_distance``, percentile 95): for each boundary pixel of one mask, the
  distance to the nearest boundary pixel of the other; the 95th percentile (numpy's linear
  interpolation) of each direction; the larger of the two directions (as MONAI's
  ``compute_hausdorff_distance``). Percentile 100 is the classical Hausdorff distance. Lower is better.
- **Boundary F-score** (``boundary_f_score``, Csurka et al. 2013): precision is the fraction of
  predicted boundary pixels within ``tolerance`` pixels (distance <= tolerance) of the true
  boundary, recall the fraction of true boundary pixels within ``tolerance`` of the predicted one;
  F is their harmonic mean (0 when both are 0). Higher is better, in [0, 1].

Empty-mask conventions:

- truth and prediction both empty: HD95 = 0 and BF = 1 (nothing to find, nothing claimed);
- exactly one empty: BF = 0, and HD95 = the image diagonal ``sqrt(H^2 + W^2)``, which exceeds any
  distance between two pixels of the image: a missed or invented object scores worse than any
  imperfect outline, while means over a split stay finite (an infinity would swamp them).

These metrics do not take an ``ignore`` mask: the scores are of the masks as given. The only
reduction is ``per_image`` (the mean of per-image values), and they are computed on CPU with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import find_boundaries

from segkit.errors import DataError, UsageError
from segkit.metrics.binary import check_threshold

DEFAULT_TOLERANCE = 2.0  # pixels: a 2-pixel wobble of an outline at 256x256 is not an error worth counting
DEFAULT_PERCENTILE = 95.0


def _as_mask(mask, what: str) -> np.ndarray:
    """A 2-D bool numpy array from a bool/{0, 1} numpy array or tensor, squeezing leading size-1 axes."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    while mask.ndim > 2 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise DataError(f"{what} must be a 2-D mask (H, W) or (1, H, W), got shape {mask.shape}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise DataError(f"{what} must hold only 0 and 1, found {np.unique(mask)[:5].tolist()}")
        mask = mask.astype(bool)
    return mask


def mask_boundary(mask) -> np.ndarray:
    """Bool array of the mask's boundary pixels (see the module docstring for the definition)."""
    mask = _as_mask(mask, "mask")
    padded = np.pad(mask, 1, constant_values=False)
    return find_boundaries(padded, connectivity=1, mode="inner")[1:-1, 1:-1]


def _directed_distances(from_boundary: np.ndarray, to_boundary: np.ndarray) -> np.ndarray:
    """For each pixel of ``from_boundary``, the distance to the nearest pixel of ``to_boundary``."""
    # edt gives every pixel's distance to the nearest zero, i.e. to the nearest ``to_boundary`` pixel.
    distance_to = ndimage.distance_transform_edt(~to_boundary)
    return distance_to[from_boundary]


def _check_pair(prediction, truth) -> tuple[np.ndarray, np.ndarray]:
    prediction = _as_mask(prediction, "prediction")
    truth = _as_mask(truth, "truth")
    if prediction.shape != truth.shape:
        raise DataError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    return prediction, truth


def _check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
        raise UsageError(f"percentile must be a number in [0, 100], got {percentile!r}")
    return float(percentile)


def _check_tolerance(tolerance: float) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise UsageError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    return float(tolerance)


def hausdorff_distance(prediction, truth, percentile: float = DEFAULT_PERCENTILE) -> float:
    """Symmetric percentile Hausdorff distance in pixels between two masks' boundaries (HD95 by default)."""
    percentile = _check_percentile(percentile)
    prediction, truth = _check_pair(prediction, truth)
    predicted_boundary, true_boundary = mask_boundary(prediction), mask_boundary(truth)
    has_prediction, has_truth = predicted_boundary.any(), true_boundary.any()
    if not has_prediction and not has_truth:
        return 0.0
    if not has_prediction or not has_truth:
        return float(math.hypot(*prediction.shape))
    forward = _directed_distances(predicted_boundary, true_boundary)
    backward = _directed_distances(true_boundary, predicted_boundary)
    return float(max(np.percentile(forward, percentile), np.percentile(backward, percentile)))


def boundary_f_score(prediction, truth, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Boundary F-score in [0, 1]: outlines matched within ``tolerance`` pixels (module docstring)."""
    tolerance = _check_tolerance(tolerance)
    prediction, truth = _check_pair(prediction, truth)
    predicted_boundary, true_boundary = mask_boundary(prediction), mask_boundary(truth)
    has_prediction, has_truth = predicted_boundary.any(), true_boundary.any()
    if not has_prediction and not has_truth:
        return 1.0
    if not has_prediction or not has_truth:
        return 0.0
    precision = float(np.mean(_directed_distances(predicted_boundary, true_boundary) <= tolerance))
    recall = float(np.mean(_directed_distances(true_boundary, predicted_boundary) <= tolerance))
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _binary_batch(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.dim() != 3:
        raise DataError(f"{what} must be (N, 1, H, W) or (N, H, W), got shape {tuple(tensor.shape)}")
    return tensor


class BoundaryAccumulator:
    """Per-image HD95 and boundary F-score over a split, from logits and {0, 1} targets.

    ``threshold`` is on the sigmoid probability (as in ``segkit.metrics.binary``); ``tolerance`` is the
    boundary F-score's in pixels; ``percentile`` the Hausdorff distance's (95 for HD95).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        tolerance: float = DEFAULT_TOLERANCE,
        percentile: float = DEFAULT_PERCENTILE,
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.tolerance = _check_tolerance(tolerance)
        self.percentile = _check_percentile(percentile)
        self.reset()

    def reset(self) -> None:
        self._rows: list[dict] = []

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, logits: torch.Tensor, target: torch.Tensor, names: Sequence[str] | None = None) -> None:
        logits = _binary_batch(logits, "logits")
        target = _binary_batch(target, "target")
        if names is not None and (isinstance(names, str) or len(names) != len(logits)):
            raise UsageError(f"names must be a list of {len(logits)} names (one per image), got {names!r}")
        cut_off = math.log(self.threshold / (1 - self.threshold))
        predictions = (logits.detach().float() > cut_off).cpu().numpy()
        truths = target.detach().cpu().numpy()
        for index, (prediction, truth) in enumerate(zip(predictions, truths, strict=True)):
            name = str(names[index]) if names is not None else str(len(self._rows))
            self._rows.append(
                {
                    "name": name,
                    "hd95": hausdorff_distance(prediction, truth, self.percentile),
                    "boundary_f": boundary_f_score(prediction, truth, self.tolerance),
                }
            )

    def per_image(self) -> list[dict]:
        """One dict per image: name, hd95 (pixels), boundary_f."""
        return [dict(row) for row in self._rows]

    def compute(self) -> dict[str, float]:
        """``{"hd95_per_image": mean HD95, "boundary_f_per_image": mean BF, "images": n}``."""
        if not self._rows:
            raise UsageError("BoundaryAccumulator.compute() before any update(): no images to score")
        count = len(self._rows)
        return {
            "hd95_per_image": math.fsum(row["hd95"] for row in self._rows) / count,
            "boundary_f_per_image": math.fsum(row["boundary_f"] for row in self._rows) / count,
            "images": count,
        }
