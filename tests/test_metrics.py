"""Properties of segkit.metrics.binary: counts, scores, reductions and the streaming accumulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segkit.errors import DataError, SegkitError, UsageError
from segkit.metrics.binary import (
    METRICS,
    MetricAccumulator,
    batch_dice,
    confusion_counts,
    describe_metric,
    reduce_counts,
    scores_from_counts,
)

PROPERTY = settings(max_examples=80, deadline=None)
# Thresholds whose logit is far from the 1/8 grid the logits are drawn on, so float rounding in
# the numpy sigmoid cannot flip a pixel.
THRESHOLDS = st.sampled_from([0.1, 0.25, 0.5, 0.7, 0.9])
EXPECTED_KEYS = {
    "dice_per_image",
    "iou_per_image",
    "precision_per_image",
    "recall_per_image",
    "dice_dataset",
    "iou_dataset",
    "precision_dataset",
    "recall_dataset",
    "images",
}


@st.composite
def batches(draw, count=None, height=None, width=None):
    """(logits, target, ignore) numpy arrays of shape (N, H, W); logits on a 1/8 grid in [-4, 4]."""
    shape = (
        count if count is not None else draw(st.integers(1, 5)),
        height if height is not None else draw(st.integers(1, 8)),
        width if width is not None else draw(st.integers(1, 8)),
    )
    logits = draw(hnp.arrays(np.int64, shape, elements=st.integers(-32, 32))) / 8.0
    # Mostly-empty and mostly-full masks too, not only coin flips.
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1, exclude_max=True)))
    target = noise < density
    ignore = draw(hnp.arrays(np.bool_, shape)) if draw(st.booleans()) else np.zeros(shape, dtype=bool)
    return logits, target, ignore


def counts_of(logits, target, ignore=None, threshold=0.5, channel_axis=True):
    to = torch.tensor
    ignore_tensor = None if ignore is None else to(ignore)
    if channel_axis:
        return confusion_counts(
            to(logits)[:, None].float(),
            to(target)[:, None].float(),
            threshold,
            None if ignore_tensor is None else ignore_tensor[:, None],
        )
    return confusion_counts(to(logits).float(), to(target), threshold, ignore_tensor)


# --- an independent numpy implementation ------


def numpy_scores(prediction, truth, empty_score=1.0):
    """Dice, IoU, precision and recall of two 1-D bool arrays, written with set operations."""
    both = np.logical_and(prediction, truth).sum()
    union = np.logical_or(prediction, truth).sum()
    claimed, present = prediction.sum(), truth.sum()

    def ratio(numerator, denominator):
        if denominator:
            return numerator / denominator
        return empty_score if union == 0 else 0.0

    return {
        "dice": ratio(2 * both, claimed + present),
        "iou": ratio(both, union),
        "precision": ratio(both, claimed),
        "recall": ratio(both, present),
    }


def numpy_reference(logits, target, ignore, threshold, empty_score=1.0):
    """Per-image score dicts and pooled scores, from sigmoid probabilities in float64."""
    predicted = 1 / (1 + np.exp(-logits)) > threshold
    valid = ~ignore
    per_image = [
        numpy_scores(predicted[index][valid[index]], target[index][valid[index]], empty_score)
        for index in range(len(logits))
    ]
    pooled = numpy_scores(predicted[valid], target[valid], empty_score)
    return per_image, pooled


# --- counts and scores ------


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS, channel_axis=st.booleans())
def test_counts_agree_with_numpy(batch, threshold, channel_axis):
    logits, target, ignore = batch
    counts = counts_of(logits, target, ignore, threshold, channel_axis)
    assert counts.dtype == torch.int64 and counts.shape == (len(logits), 4)
    predicted = 1 / (1 + np.exp(-logits)) > threshold
    valid = ~ignore
    for index, (tp, fp, fn, tn) in enumerate(counts.tolist()):
        p, t, v = predicted[index], target[index], valid[index]
        assert tp == np.sum(p & t & v) and fp == np.sum(p & ~t & v)
        assert fn == np.sum(~p & t & v) and tn == np.sum(~p & ~t & v)
        assert tp + fp + fn + tn == v.sum()


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS, empty_score=st.sampled_from([0.0, 0.5, 1.0]))
def test_scores_agree_with_numpy_per_image_and_pooled(batch, threshold, empty_score):
    logits, target, ignore = batch
    counts = counts_of(logits, target, ignore, threshold)
    expected_images, expected_pooled = numpy_reference(logits, target, ignore, threshold, empty_score)
    scores = scores_from_counts(counts, empty_score)
    for metric in METRICS:
        assert scores[metric].tolist() == pytest.approx([row[metric] for row in expected_images], abs=1e-12)
    per_image = reduce_counts(counts, "per_image", empty_score)
    dataset = reduce_counts(counts, "dataset", empty_score)
    for metric in METRICS:
        assert per_image[metric] == pytest.approx(
            np.mean([row[metric] for row in expected_images]), abs=1e-12
        )
        assert dataset[metric] == pytest.approx(expected_pooled[metric], abs=1e-12)


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS, empty_score=st.floats(0, 1))
def test_every_score_lies_in_unit_interval(batch, threshold, empty_score):
    logits, target, ignore = batch
    accumulator = MetricAccumulator(threshold, empty_score)
    accumulator.update(torch.tensor(logits), torch.tensor(target).float(), torch.tensor(ignore))
    results = accumulator.compute()
    assert set(results) == EXPECTED_KEYS
    assert results["images"] == len(logits)
    for key, value in results.items():
        if key != "images":
            assert 0.0 <= value <= 1.0, (key, value)
    for row in accumulator.per_image():
        assert all(0.0 <= row[metric] <= 1.0 for metric in (*METRICS, "foreground_fraction"))


@PROPERTY
@given(batch=batches())
def test_dice_and_iou_are_symmetric_and_precision_recall_swap(batch):
    _, first, ignore = batch
    second = batch[0] > 0
    forward = scores_from_counts(counts_of(np.where(first, 1.0, -1.0), second, ignore))
    backward = scores_from_counts(counts_of(np.where(second, 1.0, -1.0), first, ignore))
    assert torch.equal(forward["dice"], backward["dice"])
    assert torch.equal(forward["iou"], backward["iou"])
    assert torch.equal(forward["precision"], backward["recall"])


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS)
def test_perfect_prediction_scores_one(batch, threshold):
    _, target, ignore = batch
    accumulator = MetricAccumulator(threshold)
    accumulator.update(torch.tensor(np.where(target, 5.0, -5.0)), torch.tensor(target), torch.tensor(ignore))
    results = accumulator.compute()
    assert all(value == 1.0 for key, value in results.items() if key != "images")


@PROPERTY
@given(batch=batches(), empty_score=st.sampled_from([0.0, 1.0]))
def test_dice_is_a_function_of_iou_per_image_and_pooled(batch, empty_score):
    logits, target, ignore = batch
    counts = counts_of(logits, target, ignore)
    for rows in (counts, counts.sum(dim=0)):
        scores = scores_from_counts(rows, empty_score)
        iou = scores["iou"]
        torch.testing.assert_close(scores["dice"], 2 * iou / (1 + iou), rtol=0, atol=1e-12)


def test_empty_score_conventions():
    # image 0: truth and prediction empty; 1: empty prediction of a real object; 2: false alarm
    counts = torch.tensor([[0, 0, 0, 9], [0, 0, 3, 6], [0, 2, 0, 7]])
    for empty_score in (0.0, 0.5, 1.0):
        scores = scores_from_counts(counts, empty_score)
        for metric in METRICS:
            assert scores[metric].tolist() == [empty_score, 0.0, 0.0], metric
    with pytest.raises(UsageError, match="empty_score"):
        scores_from_counts(counts, 1.5)


# --- reductions and streaming ------


@PROPERTY
@given(batch=batches(count=None, height=5, width=6), data=st.data(), threshold=THRESHOLDS)
def test_results_do_not_depend_on_batch_size_or_order(batch, data, threshold):
    logits, target, ignore = batch
    count = len(logits)
    whole = MetricAccumulator(threshold)
    whole.update(torch.tensor(logits), torch.tensor(target), torch.tensor(ignore))

    order = data.draw(st.permutations(range(count)), label="order")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(count - 1, 1)), max_size=count), label="cuts"))
    pieces = [
        order[start:stop] for start, stop in zip([0, *cuts], [*cuts, count], strict=True) if start < stop
    ]
    streamed = MetricAccumulator(threshold)
    halves = [MetricAccumulator(threshold), MetricAccumulator(threshold)]
    for position, piece in enumerate(pieces):
        args = (torch.tensor(logits[piece]), torch.tensor(target[piece]), torch.tensor(ignore[piece]))
        streamed.update(*args)
        halves[position % 2].update(*args)
    merged = halves[0].merge(halves[1])

    expected = whole.compute()
    assert streamed.compute() == expected  # exact: integer counts and exactly rounded means
    assert merged.compute() == expected
    assert sorted(map(tuple, streamed.counts().tolist())) == sorted(map(tuple, whole.counts().tolist()))


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS, data=st.data())
def test_ignored_pixels_do_not_change_metrics_whatever_their_values(batch, threshold, data):
    logits, target, ignore = batch
    shape = logits.shape
    junk_logits = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(allow_nan=True)), label="junk")
    junk_target = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0, 2.0, 255.0])))
    first = counts_of(logits, target.astype(np.float64), ignore, threshold)
    second = counts_of(
        np.where(ignore, junk_logits, logits), np.where(ignore, junk_target, target), ignore, threshold
    )
    assert torch.equal(first, second)


@PROPERTY
@given(batch=batches())
def test_batch_dice_is_the_mean_per_image_dice(batch):
    logits, target, ignore = batch
    expected_images, _ = numpy_reference(logits, target, ignore, 0.5)
    value = batch_dice(
        torch.tensor(logits)[:, None],
        torch.tensor(target)[:, None].float(),
        ignore=torch.tensor(ignore)[:, None],
    )
    assert isinstance(value, float)
    assert value == pytest.approx(np.mean([row["dice"] for row in expected_images]), abs=1e-12)


def test_threshold_half_is_exactly_logit_zero():
    logits = torch.tensor([[[1e-30, 0.0, -1e-30, float("inf"), float("-inf")]]])
    target = torch.tensor([[[1.0, 1.0, 0.0, 1.0, 0.0]]])
    assert confusion_counts(logits, target).tolist() == [[2, 0, 1, 2]]
    assert confusion_counts(logits.bfloat16(), target).tolist() == [[2, 0, 1, 2]]


def test_per_image_rows_carry_names_counts_and_foreground_fraction():
    accumulator = MetricAccumulator()
    logits = torch.tensor([[[[5.0, 5.0], [-5.0, -5.0]]], [[[-5.0, -5.0], [-5.0, -5.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    accumulator.update(logits, target, names=["cat_1", "dog_2"])
    accumulator.update(logits[:1], target[:1])
    rows = accumulator.per_image()
    assert [row["name"] for row in rows] == ["cat_1", "dog_2", "2"]
    first = rows[0]
    assert (first["tp"], first["fp"], first["fn"], first["tn"]) == (1, 1, 1, 1)
    assert first["dice"] == 0.5 and first["iou"] == pytest.approx(1 / 3)
    assert first["precision"] == 0.5 and first["recall"] == 0.5 and first["foreground_fraction"] == 0.5
    assert rows[1]["dice"] == 1.0 and rows[1]["foreground_fraction"] == 0.0
    results = accumulator.compute()
    assert results["images"] == 3
    assert results["dice_per_image"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert results["dice_dataset"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    accumulator.reset()
    assert len(accumulator) == 0


# --- bad input ------


def test_bad_input_raises_segkit_errors():
    logits = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    with pytest.raises(DataError, match=r"only 0 and 1.*255"):
        confusion_counts(logits, target + 255)
    with pytest.raises(DataError, match="target shape"):
        confusion_counts(logits, torch.zeros(2, 1, 4, 5))
    with pytest.raises(DataError, match=r"\(N, 1, H, W\)"):
        confusion_counts(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    with pytest.raises(DataError, match="ignore"):
        confusion_counts(logits, target, ignore=torch.zeros(2, 1, 4, 4))
    with pytest.raises(SegkitError, match="NaN"):
        confusion_counts(torch.full((1, 1, 2, 2), float("nan")), torch.zeros(1, 1, 2, 2))
    for threshold in (0, 1, 1.5, -0.1, True):
        with pytest.raises(UsageError, match="threshold"):
            MetricAccumulator(threshold)
    with pytest.raises(UsageError, match="reduction"):
        reduce_counts(torch.zeros(1, 4, dtype=torch.int64), "micro")
    accumulator = MetricAccumulator()
    with pytest.raises(UsageError, match="no images"):
        accumulator.compute()
    with pytest.raises(UsageError, match="names"):
        accumulator.update(logits, target, names=["only_one"])
    with pytest.raises(UsageError, match="threshold"):
        accumulator.merge(MetricAccumulator(threshold=0.3))


# --- describe_metric ------


def test_describe_metric_states_split_reduction_threshold_and_resolution():
    assert (
        describe_metric("dice", "per_image", 0.5, 64, "valid")
        == "valid Dice (per-image mean, threshold 0.5, 64x64 network input)"
    )
    assert (
        describe_metric("iou", "dataset", 0.35, (256, 320), "test")
        == "test IoU (pooled over the dataset, threshold 0.35, 256x320 network input)"
    )
    assert describe_metric("recall", "dataset", 0.5, "original", "test").endswith("original mask size)")
    with pytest.raises(UsageError, match="micro"):
        describe_metric("dice", "micro", 0.5, 64, "test")
    with pytest.raises(UsageError, match="'f1'"):
        describe_metric("f1", "dataset", 0.5, 64, "test")


# --- torch.distributed ------


def _accumulator_with(seed: int, count: int = 3) -> MetricAccumulator:
    generator = torch.Generator().manual_seed(seed)
    accumulator = MetricAccumulator()
    logits = torch.randn(count, 1, 6, 6, generator=generator)
    target = (torch.rand(count, 1, 6, 6, generator=generator) > 0.5).float()
    accumulator.update(logits, target, names=[f"rank{seed}_{index}" for index in range(count)])
    return accumulator


def test_all_reduce_is_a_no_op_without_torch_distributed():
    accumulator = _accumulator_with(0)
    before = accumulator.compute()
    accumulator.all_reduce()
    assert accumulator.compute() == before


def test_all_reduce_in_a_single_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        accumulator = _accumulator_with(0)
        before = accumulator.compute()
        accumulator.all_reduce()
        assert accumulator.compute() == before
        with pytest.raises(UsageError, match=r"^MetricAccumulator\.all_reduce\(\) called twice"):
            accumulator.all_reduce()
        with pytest.raises(UsageError, match=r"^MetricAccumulator\.update\(\) after all_reduce\(\)"):
            accumulator.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    finally:
        dist.destroy_process_group()


def _all_reduce_worker(rank: int, world_size: int, store: str, results: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        accumulator = _accumulator_with(rank, count=rank + 2)
        accumulator.all_reduce()
        torch.save({"results": accumulator.compute(), "rows": accumulator.per_image()}, f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    world_size = 2
    results = str(tmp_path / "results")
    mp.spawn(_all_reduce_worker, args=(world_size, str(tmp_path / "store"), results), nprocs=world_size)
    expected = _accumulator_with(0, count=2).merge(_accumulator_with(1, count=3))
    for rank in range(world_size):
        saved = torch.load(f"{results}.{rank}", weights_only=False)
        assert saved["results"] == expected.compute()
        assert saved["rows"] == expected.per_image()


# --- gaps found by mutation testing (MUTATION.md) ------


@PROPERTY
@given(batch=batches(), threshold=THRESHOLDS, empty_score=st.sampled_from([0.0, 1.0]))
def test_accumulator_leaves_ignored_pixels_out_and_keeps_its_empty_score(batch, threshold, empty_score):
    logits, target, ignore = batch
    accumulator = MetricAccumulator(threshold, empty_score)
    accumulator.update(
        torch.tensor(logits)[:, None].float(), torch.tensor(target)[:, None], torch.tensor(ignore)[:, None]
    )
    per_image, pooled = numpy_reference(logits, target, ignore, threshold, empty_score)
    results = accumulator.compute()
    rows = accumulator.per_image()
    for metric in METRICS:
        assert results[f"{metric}_dataset"] == pytest.approx(pooled[metric], abs=1e-12)
        assert results[f"{metric}_per_image"] == pytest.approx(
            np.mean([s[metric] for s in per_image]), abs=1e-12
        )
        assert [row[metric] for row in rows] == pytest.approx([s[metric] for s in per_image], abs=1e-12)
    for row, image_target, image_ignore in zip(rows, target, ignore, strict=True):
        counted = (~image_ignore).sum()
        # An image with every pixel ignored has no foreground to speak of: 0, not 0 / 0.
        expected = (image_target & ~image_ignore).sum() / counted if counted else 0.0
        assert row["foreground_fraction"] == pytest.approx(expected, abs=1e-12)


def test_default_names_number_images_in_order_across_batches():
    accumulator = MetricAccumulator()
    accumulator.update(torch.zeros(3, 1, 2, 2), torch.zeros(3, 1, 2, 2))
    accumulator.update(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
    assert [row["name"] for row in accumulator.per_image()] == ["0", "1", "2", "3", "4"]


def test_an_empty_accumulator_has_no_counts_and_empty_score_defaults_to_one():
    counts = MetricAccumulator().counts()
    assert counts.shape == (0, 4) and counts.dtype == torch.int64
    nothing_to_find = torch.tensor([[0, 0, 0, 9]])
    assert reduce_counts(nothing_to_find, "per_image")["dice"] == 1.0
    assert scores_from_counts(nothing_to_find)["dice"].tolist() == [1.0]
    with pytest.raises(UsageError, match=r"^empty_score must be in \[0, 1\], got 1.5"):
        MetricAccumulator(empty_score=1.5)


def test_errors_name_the_argument_and_the_offending_values():
    logits = torch.zeros(1, 1, 2, 4)
    with pytest.raises(DataError, match=r"^logits must be a tensor, got list"):
        confusion_counts([0.0], torch.zeros(1, 1, 2, 4))
    with pytest.raises(DataError, match=r"^target must be \(N, 1, H, W\) or \(N, H, W\).*\(1, 2, 2, 4\)"):
        confusion_counts(logits, torch.zeros(1, 2, 2, 4))
    with pytest.raises(DataError, match=r"^ignore must be \(N, 1, H, W\)"):
        confusion_counts(logits, torch.zeros(1, 1, 2, 4), ignore=torch.zeros(2, 4, dtype=torch.bool))
    # Only the first five values that are neither 0 nor 1, and none of an ignored pixel.
    target = torch.tensor([[[[7.0, 1.0, 8.0, 0.0, 6.0], [9.0, 3.0, 4.0, 5.0, 2.0]]]])
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[..., 0, 2] = True
    with pytest.raises(DataError, match=r"found values \[7.0, 6.0, 9.0, 3.0, 4.0\]$"):
        confusion_counts(torch.zeros(1, 1, 2, 5), target, ignore=ignore)
    with pytest.raises(SegkitError, match=r"^logits contain NaN"):
        confusion_counts(torch.full((1, 1, 2, 2), float("nan")), torch.zeros(1, 1, 2, 2))
    with pytest.raises(UsageError, match=r"^counts must end in a dimension of 4 .*got \(3,\)"):
        scores_from_counts(torch.zeros(3))
    with pytest.raises(UsageError, match=r"reductions are: per_image, dataset$"):
        reduce_counts(torch.zeros(1, 4, dtype=torch.int64), "micro")
    with pytest.raises(UsageError, match=r"^no images to score"):
        reduce_counts(torch.zeros(0, 4, dtype=torch.int64), "dataset")
    with pytest.raises(UsageError, match=r"metrics are: dice, iou, precision, recall, hd95, boundary_f$"):
        describe_metric("f1", "dataset", 0.5, 64, "test")
    with pytest.raises(UsageError, match=r"reductions are: per_image, dataset$"):
        describe_metric("dice", "micro", 0.5, 64, "test")
    with pytest.raises(UsageError, match=r"^MetricAccumulator\.compute\(\) before any images were added"):
        MetricAccumulator().compute()


def test_a_resolution_in_words_is_used_as_given():
    label = describe_metric("dice", "dataset", 0.5, "full-size tiles", "test")
    assert label == "test Dice (pooled over the dataset, threshold 0.5, full-size tiles)"
