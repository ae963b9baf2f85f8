"""The recipe's levers: weight averaging, threshold calibration, and post-processed evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from segkit.calibration import CALIBRATION_GRID, ThresholdSweep
from segkit.engine.weight_average import WeightAverage
from segkit.evaluation import _cleaned
from segkit.task import BinaryTask


def small_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))


def randomise(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            else:
                tensor.fill_(int(torch.randint(0, 1000, (), generator=generator)))


@given(
    decay=st.floats(0.01, 0.999),
    updates=st.integers(0, 200),
    seeds=st.lists(st.integers(0, 2**16), min_size=1, max_size=4),
)
def test_each_update_moves_the_average_by_one_minus_the_current_decay(decay, updates, seeds):
    model = small_model()
    average = WeightAverage(model, decay)
    average.updates = updates
    for seed in seeds:
        before = {k: v.clone() for k, v in average.averaged.state_dict().items()}
        randomise(model, seed)
        expected_decay = min(decay, (1 + average.updates + 1) / (10 + average.updates + 1))
        average.update(model)
        assert average.current_decay() == pytest.approx(expected_decay)
        for key, value in average.averaged.state_dict().items():
            trained = model.state_dict()[key]
            if value.is_floating_point():
                expected = expected_decay * before[key] + (1 - expected_decay) * trained
                torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
            else:  # integer buffers (BatchNorm's step count) are copied, not averaged
                assert torch.equal(value, trained)


def test_the_average_is_a_frozen_copy_that_training_does_not_touch():
    model = small_model()
    average = WeightAverage(model, 0.9)
    assert all(not p.requires_grad for p in average.averaged.parameters())
    assert not average.averaged.training
    randomise(model, 1)
    assert not torch.equal(average.averaged[0].weight, model[0].weight)


def test_state_round_trips_through_a_checkpoint():
    model = small_model()
    average = WeightAverage(model, 0.95)
    for seed in range(3):
        randomise(model, seed)
        average.update(model)
    restored = WeightAverage(small_model(), 0.95)
    restored.load_state_dict(average.state_dict(), average.averaged.state_dict())
    assert restored.updates == 3 and restored.current_decay() == average.current_decay()
    for key, value in average.averaged.state_dict().items():
        assert torch.equal(value, restored.averaged.state_dict()[key])


@pytest.mark.parametrize("decay", [0, 1, -0.5, 1.5])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(small_model(), decay)


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


masks = st.integers(4, 12).flatmap(
    lambda side: st.lists(st.booleans(), min_size=side * side, max_size=side * side).map(
        lambda bits: np.array(bits).reshape(side, side)
    )
)


@given(mask=masks, fill=st.booleans(), keep=st.booleans())
def test_post_processed_logits_decide_exactly_the_cleaned_mask(mask, fill, keep):
    logits = torch.where(torch.from_numpy(mask), 2.0, -2.0)[None, None]
    steps = {k: v for k, v in (("fill_holes", fill), ("keep_largest", keep)) if v}
    cleaned = _cleaned(logits, BinaryTask(0.5), steps)
    if not steps:
        assert cleaned is logits
        return
    expected = mask.copy()
    if fill:
        expected = ndimage.binary_fill_holes(expected)
    if keep and expected.any():
        labels, count = ndimage.label(expected, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        expected = labels == (int(sizes.argmax()) + 1)
    # The cleaned mask reads the same at any threshold: its logits are decided (+-30).
    for threshold in (0.1, 0.5, 0.9):
        assert np.array_equal((torch.sigmoid(cleaned[0, 0]) > threshold).numpy(), expected)
