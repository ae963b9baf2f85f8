"""segkit.metrics.boundary against brute-force numpy computations on small random masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.metrics import hausdorff_distance as skimage_hausdorff

from segkit.errors import DataError, UsageError
from segkit.metrics.boundary import (
    BoundaryAccumulator,
    boundary_f_score,
    hausdorff_distance,
    mask_boundary,
)

PROPERTY = settings(max_examples=80, deadline=None)
shapes = st.tuples(st.integers(1, 10), st.integers(1, 10))


@st.composite
def mask_pairs(draw):
    shape = draw(shapes)
    return draw(hnp.arrays(np.bool_, shape)), draw(hnp.arrays(np.bool_, shape))


# --- brute force ------


def brute_boundary(mask):
    """Foreground pixels with a 4-neighbour that is background or outside the image."""
    height, width = mask.shape
    boundary = np.zeros_like(mask)
    for y in range(height):
        for x in range(width):
            if not mask[y, x]:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if not (0 <= ny < height and 0 <= nx < width) or not mask[ny, nx]:
                    boundary[y, x] = True
    return boundary


def brute_pairwise(first, second):
    """Distances between every boundary pixel of ``first`` (rows) and of ``second`` (columns)."""
    a = np.argwhere(brute_boundary(first)).astype(float)
    b = np.argwhere(brute_boundary(second)).astype(float)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))


def brute_hausdorff(prediction, truth, percentile):
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return math.hypot(*prediction.shape)
    distances = brute_pairwise(prediction, truth)
    return max(
        np.percentile(distances.min(axis=1), percentile), np.percentile(distances.min(axis=0), percentile)
    )


def brute_boundary_f(prediction, truth, tolerance):
    if not prediction.any() and not truth.any():
        return 1.0
    if not prediction.any() or not truth.any():
        return 0.0
    distances = brute_pairwise(prediction, truth)
    precision = np.mean(distances.min(axis=1) <= tolerance)
    recall = np.mean(distances.min(axis=0) <= tolerance)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


# --- properties ------


@PROPERTY
@given(mask=hnp.arrays(np.bool_, shapes))
def test_boundary_agrees_with_brute_force(mask):
    boundary = mask_boundary(mask)
    assert boundary.dtype == bool
    np.testing.assert_array_equal(boundary, brute_boundary(mask))
    assert boundary.any() == mask.any()


@PROPERTY
@given(pair=mask_pairs(), percentile=st.sampled_from([0.0, 50.0, 95.0, 100.0]))
def test_hausdorff_agrees_with_brute_force(pair, percentile):
    prediction, truth = pair
    value = hausdorff_distance(prediction, truth, percentile)
    assert value == pytest.approx(brute_hausdorff(prediction, truth, percentile), abs=1e-9)
    assert 0 <= value <= math.hypot(*prediction.shape)
    assert value == hausdorff_distance(truth, prediction, percentile)


@st.composite
def non_empty_mask_pairs(draw):
    """Two masks of one shape, each with at least one foreground pixel (scikit-image has no
    convention for an empty one: segkit's are tested in test_empty_mask_conventions)."""
    prediction, truth = draw(mask_pairs())
    for mask in (prediction, truth):
        mask[draw(st.integers(0, mask.shape[0] - 1)), draw(st.integers(0, mask.shape[1] - 1))] = True
    return prediction, truth


@PROPERTY
@given(pair=non_empty_mask_pairs())
def test_full_hausdorff_agrees_with_scikit_image(pair):
    prediction, truth = pair
    expected = skimage_hausdorff(mask_boundary(prediction), mask_boundary(truth))
    assert hausdorff_distance(prediction, truth, percentile=100) == pytest.approx(expected, abs=1e-9)


@PROPERTY
@given(pair=mask_pairs(), tolerance=st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0]))
def test_boundary_f_score_agrees_with_brute_force(pair, tolerance):
    prediction, truth = pair
    value = boundary_f_score(prediction, truth, tolerance)
    assert value == pytest.approx(brute_boundary_f(prediction, truth, tolerance), abs=1e-12)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(boundary_f_score(truth, prediction, tolerance), abs=1e-12)


@PROPERTY
@given(mask=hnp.arrays(np.bool_, shapes), tolerance=st.floats(0, 5))
def test_identical_masks_give_hd95_zero_and_bf_one(mask, tolerance):
    assert hausdorff_distance(mask, mask) == 0.0
    assert boundary_f_score(mask, mask, tolerance) == 1.0


def test_empty_mask_conventions():
    empty = np.zeros((6, 8), dtype=bool)
    blob = empty.copy()
    blob[2:4, 3:6] = True
    assert hausdorff_distance(empty, empty) == 0.0 and boundary_f_score(empty, empty) == 1.0
    for prediction, truth in ((empty, blob), (blob, empty)):
        assert hausdorff_distance(prediction, truth) == 10.0  # the diagonal of 6 x 8
        assert boundary_f_score(prediction, truth) == 0.0


def test_accepts_tensors_and_leading_channel_axes():
    mask = torch.zeros(1, 5, 5)
    mask[0, 1:4, 1:4] = 1
    shifted = torch.roll(mask, 1, dims=2)
    assert hausdorff_distance(mask, shifted, 100) == 1.0
    assert boundary_f_score(mask.numpy().astype(np.uint8), shifted, tolerance=1) == 1.0


# --- accumulator ------


@settings(max_examples=30, deadline=None)
@given(
    logits=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.just(1), st.integers(2, 8), st.integers(2, 8)),
        elements=st.floats(-3, 3, width=32),
    ),
    data=st.data(),
)
def test_accumulator_scores_thresholded_logits(logits, data):
    target = data.draw(hnp.arrays(np.bool_, logits.shape))
    accumulator = BoundaryAccumulator(threshold=0.5, tolerance=1.0)
    names = [f"image{index}" for index in range(len(logits))]
    accumulator.update(torch.tensor(logits), torch.tensor(target, dtype=torch.float32), names=names)
    rows = accumulator.per_image()
    assert [row["name"] for row in rows] == names
    for row, image, truth in zip(rows, logits, target, strict=True):
        assert row["hd95"] == pytest.approx(brute_hausdorff(image[0] > 0, truth[0], 95))
        assert row["boundary_f"] == pytest.approx(brute_boundary_f(image[0] > 0, truth[0], 1.0))
    results = accumulator.compute()
    assert results["images"] == len(logits)
    assert results["hd95_per_image"] == pytest.approx(np.mean([row["hd95"] for row in rows]))
    assert results["boundary_f_per_image"] == pytest.approx(np.mean([row["boundary_f"] for row in rows]))


# --- bad input ------


def test_bad_input_raises_segkit_errors():
    mask = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(DataError, match="only 0 and 1"):
        hausdorff_distance(mask + 255, mask)
    with pytest.raises(DataError, match="shape"):
        boundary_f_score(mask, np.zeros((4, 5)))
    with pytest.raises(DataError, match="2-D"):
        mask_boundary(np.zeros((2, 4, 4)))
    with pytest.raises(UsageError, match="percentile"):
        hausdorff_distance(mask, mask, percentile=101)
    with pytest.raises(UsageError, match="tolerance"):
        boundary_f_score(mask, mask, tolerance=-1)
    with pytest.raises(UsageError, match="tolerance"):
        BoundaryAccumulator(tolerance=-1)
    with pytest.raises(UsageError, match="no images"):
        BoundaryAccumulator().compute()
    with pytest.raises(UsageError, match="names"):
        BoundaryAccumulator().update(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3), names=["one"])
