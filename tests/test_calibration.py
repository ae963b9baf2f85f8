"""Threshold calibration (segkit.metrics.calibration): with ``--calibrate-threshold`` the run picks the
threshold of its grid (0.3-0.7) with the best per-image validation Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from segkit.metrics.calibration import CALIBRATION_GRID, ThresholdSweep


def numpy_dice(logits: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = logits > np.log(threshold / (1 - threshold))  # segkit.metrics.binary' definition
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


# --- gaps found by mutation testing (MUTATION.md) ------


@given(batch=batches, data=st.data())
def test_every_threshold_scores_valid_pixels_only_with_its_empty_score_and_names(batch, data):
    logits, truth = batch
    ignore = torch.tensor(data.draw(st.lists(st.booleans(), min_size=truth.numel(), max_size=truth.numel())))
    ignore = ignore.view(truth.shape)
    empty_score = data.draw(st.sampled_from([0.0, 1.0]))
    names = [f"image_{index}" for index in range(len(logits))]
    sweep = ThresholdSweep(empty_score=empty_score)
    sweep.update(logits, truth.float(), ignore=ignore, names=names)
    valid = ~ignore.numpy()[:, 0]
    logits_np, truth_np = logits.numpy()[:, 0].astype(np.float64), truth.numpy()[:, 0]
    for t, score in sweep.scores().items():
        per_image = []
        for x, m, v in zip(logits_np, truth_np, valid, strict=True):
            dice = numpy_dice(x[v], m[v], t)
            both_empty = not (x[v] > np.log(t / (1 - t))).any() and not m[v].any()
            per_image.append(empty_score if both_empty else dice)
        assert score == pytest.approx(np.mean(per_image)), t
    for accumulator in sweep.accumulators.values():
        assert [row["name"] for row in accumulator.per_image()] == names
