"""Threshold calibration (segkit.calibration): with ``--calibrate-threshold`` the run picks the
threshold of its grid (0.3-0.7) with the best per-image validation Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from segkit.calibration import CALIBRATION_GRID, ThresholdSweep


def numpy_dice(logits: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = logits > np.log(threshold / (1 - threshold))  # segkit.metrics' definition
    overlap = 2 * np.logical_and(predicted, truth).sum()
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else overlap / total


batches = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-6, 6), min_size=n * 16, max_size=n * 16),
        st.lists(st.booleans(), min_size=n * 16, max_size=n * 16),
    ).map(lambda pair: (torch.tensor(pair[0]).view(n, 1, 4, 4), torch.tensor(pair[1]).view(n, 1, 4, 4)))
)


@given(batch=batches)
def test_the_calibrated_threshold_has_the_best_per_image_dice_of_the_grid(batch):
    logits, truth = batch
    sweep = ThresholdSweep()
    sweep.update(logits, truth.float())
    threshold, dice = sweep.best()
    logits_np, truth_np = logits.numpy()[:, 0].astype(np.float64), truth.numpy()[:, 0]
    expected = {
        t: float(np.mean([numpy_dice(x, m, t) for x, m in zip(logits_np, truth_np, strict=True)]))
        for t in CALIBRATION_GRID
    }
    assert threshold in CALIBRATION_GRID
    assert dice == pytest.approx(max(expected.values()))
    assert expected[threshold] == pytest.approx(dice)
    # Among the equally good thresholds, the one nearest 0.5 is chosen.
    tied = [t for t in CALIBRATION_GRID if expected[t] >= max(expected.values()) - 1e-9]
    assert abs(threshold - 0.5) == pytest.approx(min(abs(t - 0.5) for t in tied))


def test_the_grid_stays_within_point_three_and_point_seven():
    assert min(CALIBRATION_GRID) == 0.3 and max(CALIBRATION_GRID) == 0.7 and 0.5 in CALIBRATION_GRID
