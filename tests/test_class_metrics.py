"""Per-class metrics (segkit.metrics.classes) against an independent numpy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.errors import DataError, SegkitError, UsageError
from segkit.metrics.classes import ClassMetricAccumulator, multiclass_counts, multilabel_counts


@st.composite
def multiclass_batches(draw):
    classes = draw(st.integers(2, 5))
    images = draw(st.integers(1, 4))
    side = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(images, classes, side, side)).astype(np.float32)
    target = rng.integers(0, classes, size=(images, side, side))
    target[rng.random(size=target.shape) < draw(st.sampled_from([0.0, 0.2]))] = 255
    return logits, target, classes


def numpy_counts(logits: np.ndarray, target: np.ndarray, classes: int):
    """Per-image per-class tp, fp, fn and the pooled confusion matrix, pixel by pixel."""
    predicted = logits.argmax(axis=1)
    counts = np.zeros((len(target), classes, 3), dtype=np.int64)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    for image in range(len(target)):
        for truth, guess in zip(target[image].ravel(), predicted[image].ravel(), strict=True):
            if truth == 255:
                continue
            confusion[truth, guess] += 1
            if truth == guess:
                counts[image, truth, 0] += 1
            else:
                counts[image, guess, 1] += 1
                counts[image, truth, 2] += 1
    return counts, confusion


@settings(max_examples=40, deadline=None)
@given(batch=multiclass_batches())
def test_multiclass_counts_match_a_pixel_by_pixel_count(batch):
    logits, target, classes = batch
    counts, confusion = multiclass_counts(torch.from_numpy(logits), torch.from_numpy(target))
    expected_counts, expected_confusion = numpy_counts(logits, target, classes)
    np.testing.assert_array_equal(counts.numpy(), expected_counts)
    np.testing.assert_array_equal(confusion.numpy(), expected_confusion)


def reference_scores(counts: np.ndarray, averaged: list[int]):
    """Pooled per-class IoU/Dice, their macro mean over ``averaged``, and the per-image macro mean."""
    pooled = counts.sum(axis=0).astype(float)
    tp, fp, fn = pooled[:, 0], pooled[:, 1], pooled[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    per_image = []
    for image in counts.astype(float):
        scores = [
            image[c, 0] / image[c].sum() for c in averaged if image[c].sum() > 0
        ]  # IoU of the classes the image's truth or prediction holds
        per_image.append(np.mean(scores) if scores else 1.0)
    return iou, dice, np.nanmean(iou[averaged]), np.mean(per_image)


def per_image_reference(logits: np.ndarray, target: np.ndarray, classes: int):
    """Per image and class, IoU and Dice straight from the masks (NaN where neither the truth nor the
    prediction holds the class), pixel sets compared with numpy; ignored pixels (255) left out."""
    predicted = logits.argmax(axis=1)
    iou = np.full((len(target), classes), np.nan)
    dice = np.full((len(target), classes), np.nan)
    for image in range(len(target)):
        valid = target[image] != 255
        for c in range(classes):
            truth, guess = (target[image] == c) & valid, (predicted[image] == c) & valid
            union, both = (truth | guess).sum(), (truth & guess).sum()
            if union:
                iou[image, c] = both / union
                dice[image, c] = 2 * both / (truth.sum() + guess.sum())
    return iou, dice


def same(got: float, expected: float) -> bool:
    return (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@settings(max_examples=40, deadline=None)
@given(batch=multiclass_batches(), split=st.integers(1, 3), background=st.booleans())
def test_pooled_and_per_image_scores_whatever_the_batching(batch, split, background):
    logits, target, classes = batch
    names = [f"c{index}" for index in range(classes)]
    averaged = list(range(1, classes)) if background else list(range(classes))
    accumulator = multiclass_accumulator(names, averaged)
    for start in range(0, len(target), split):
        chunk = slice(start, start + split)
        accumulator.update(torch.from_numpy(logits[chunk]), torch.from_numpy(target[chunk])[:, None])
    expected_counts, expected_confusion = numpy_counts(logits, target, classes)
    iou, dice, macro_iou, per_image_iou = reference_scores(expected_counts, averaged)
    scores = accumulator.compute()
    for index, name in enumerate(names):
        for metric, reference in (("iou", iou), ("dice", dice)):
            got = scores[f"{metric}_{name}"]
            assert (math.isnan(got) and math.isnan(reference[index])) or got == pytest.approx(
                reference[index]
            )
    if math.isnan(macro_iou):
        assert math.isnan(scores["iou_macro_dataset"])
    else:
        assert scores["iou_macro_dataset"] == pytest.approx(macro_iou)
    assert scores["iou_macro_per_image"] == pytest.approx(per_image_iou)
    # the mean over every class, background included, whatever ``averaged`` says
    assert same(scores["iou_macro_all_dataset"], np.nanmean(iou) if not np.isnan(iou).all() else math.nan)
    assert same(scores["dice_macro_all_dataset"], np.nanmean(dice) if not np.isnan(dice).all() else math.nan)
    np.testing.assert_array_equal(accumulator.confusion.numpy(), expected_confusion)
    assert scores["images"] == len(target)


def test_the_mean_over_all_classes_counts_the_background():
    """Class 0 is the worst class here: a mean that left it out would read higher."""
    target = np.array([[[0, 0, 1, 1, 2, 2]]])
    # predictions: 0, 1, 1, 1, 2, 2 -> IoU of class 0 is 1/2, of classes 1 and 2: 2/3 and 1
    logits = np.eye(3, dtype=np.float32)[[[[0, 1, 1, 1, 2, 2]]]].transpose(0, 3, 1, 2)
    accumulator = ClassMetricAccumulator(
        ["background", "a", "b"], [1, 2], counter=lambda lg, tg, ig: multiclass_counts(lg, tg)
    )
    accumulator.update(torch.from_numpy(logits), torch.from_numpy(target))
    scores = accumulator.compute()
    assert scores["iou_background"] == pytest.approx(1 / 2)
    assert scores["iou_macro_all_dataset"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert scores["iou_macro_dataset"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["dice_macro_all_dataset"] == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)


@settings(max_examples=40, deadline=None)
@given(batch=multiclass_batches(), split=st.integers(1, 3), background=st.booleans())
def test_per_image_rows_hold_every_class_against_the_masks(batch, split, background):
    """The rows behind per_image.csv and the report's worst/best picks: one per image, in order, with
    each class's IoU and Dice (NaN where absent) and the mean over the averaged classes."""
    logits, target, classes = batch
    names = [f"c{index}" for index in range(classes)]
    averaged = list(range(1, classes)) if background else list(range(classes))
    accumulator = multiclass_accumulator(names, averaged)
    for start in range(0, len(target), split):
        chunk = slice(start, start + split)
        image_names = [f"img{index}" for index in range(start, min(start + split, len(target)))]
        batch_logits, batch_target = torch.from_numpy(logits[chunk]), torch.from_numpy(target[chunk])
        accumulator.update(batch_logits, batch_target, names=image_names)
    iou, dice = per_image_reference(logits, target, classes)
    rows = accumulator.per_image()
    assert [row["name"] for row in rows] == [f"img{index}" for index in range(len(target))]
    for image, row in enumerate(rows):
        keys = {"name", "iou", "dice"} | {f"{metric}_{name}" for metric in ("iou", "dice") for name in names}
        assert set(row) == keys
        for metric, reference in (("iou", iou), ("dice", dice)):
            for index, name in enumerate(names):
                assert same(row[f"{metric}_{name}"], reference[image, index]), (metric, name)
            chosen = reference[image, averaged]
            expected = 1.0 if np.isnan(chosen).all() else float(np.nanmean(chosen))
            assert row[metric] == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
    threshold=st.sampled_from([0.3, 0.5, 0.8]),
)
def test_multilabel_counts_threshold_each_channel(seed, shape, threshold):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=shape).astype(np.float32)
    target = (rng.random(size=shape) > 0.5).astype(np.float32)
    ignore = rng.random(size=(shape[0], 1, *shape[2:])) < 0.2
    counts = multilabel_counts(
        torch.from_numpy(logits), torch.from_numpy(target), threshold, torch.from_numpy(ignore)
    ).numpy()
    predicted = 1 / (1 + np.exp(-logits.astype(np.float64))) > threshold
    valid = ~np.broadcast_to(ignore, shape)
    truth = target == 1
    np.testing.assert_array_equal(counts[..., 0], (predicted & truth & valid).sum(axis=(2, 3)))
    np.testing.assert_array_equal(counts[..., 1], (predicted & ~truth & valid).sum(axis=(2, 3)))
    np.testing.assert_array_equal(counts[..., 2], (~predicted & truth & valid).sum(axis=(2, 3)))


def test_an_id_beyond_the_classes_is_a_data_error_naming_it():
    logits = torch.zeros(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [7, 255]]])
    with pytest.raises(DataError, match=r"\[7\]"):
        multiclass_counts(logits, target)


def test_a_class_absent_everywhere_has_no_score_and_leaves_the_mean():
    # Two classes predicted and true; class 2 never appears in truth or prediction.
    logits = torch.tensor([[[[5.0, -5.0]], [[-5.0, 5.0]], [[-9.0, -9.0]]]])
    target = torch.tensor([[[0, 1]]])
    accumulator = ClassMetricAccumulator(
        ["a", "b", "c"], counter=lambda lg, tg, ig: multiclass_counts(lg, tg)
    )
    accumulator.update(logits, target)
    scores = accumulator.compute()
    assert math.isnan(scores["iou_c"]) and scores["iou_a"] == scores["iou_b"] == 1.0
    assert scores["iou_macro_dataset"] == 1.0


def multiclass_accumulator(names=("bg", "a", "b"), averaged=None) -> ClassMetricAccumulator:
    return ClassMetricAccumulator(names, averaged, counter=lambda lg, tg, ig: multiclass_counts(lg, tg))


def one_hot_logits(predicted: list) -> torch.Tensor:
    """Logits whose argmax is ``predicted`` (N, H, W) over three classes."""
    return torch.from_numpy(np.eye(3, dtype=np.float32)[predicted].transpose(0, 3, 1, 2).copy())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([[[0, 3]]], r"class ids \[3\] outside 0\.\.2 "),  # K itself is one too many
        ([[[-1, 1]]], r"class ids \[-1\] outside 0\.\.2 "),
        ([[[3, 4, 5, 6, 7, 8, 4]]], r"class ids \[3, 4, 5, 6, 7\] outside"),  # the first five, once each
    ],
)
def test_class_ids_outside_the_classes_are_named(target, message):
    logits = torch.zeros(1, 3, 1, len(target[0][0]))
    with pytest.raises(DataError, match=message):
        multiclass_counts(logits, torch.tensor(target))


@pytest.mark.parametrize(
    ("logits", "target", "message"),
    [
        (torch.zeros(3, 2, 2), torch.zeros(3, 2, 2), r"logits must be \(N, K, H, W\), got shape \(3, 2, 2\)"),
        (
            torch.zeros(1, 3, 2, 2),
            torch.zeros(1, 3, 3),
            r"target shape \(1, 3, 3\) does not fit logits \(1, 3, 2, 2\) \(expected \(N, H, W\)\)",
        ),
    ],
)
def test_multiclass_shapes_that_do_not_fit_are_data_errors(logits, target, message):
    with pytest.raises(DataError, match=message):
        multiclass_counts(logits, target.long())


def test_nan_logits_are_refused_with_the_reason():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1, 0, 0] = math.nan
    with pytest.raises(
        SegkitError, match="^logits contain NaN: the model diverged or its input was corrupt$"
    ):
        multiclass_counts(logits, torch.zeros(1, 1, 2, dtype=torch.long))


@pytest.mark.parametrize(
    ("logits_shape", "target_shape"),
    [((1, 2, 3, 3), (1, 1, 3, 3)), ((2, 3, 3), (2, 3, 3))],  # channels that differ; no (N, K, H, W)
)
def test_multilabel_shapes_that_differ_or_lack_a_dimension_are_data_errors(logits_shape, target_shape):
    shapes = rf"target shape \({', '.join(map(str, target_shape))}\)"
    with pytest.raises(DataError, match=shapes + " differs from logits shape"):
        multilabel_counts(torch.zeros(logits_shape), torch.zeros(target_shape), 0.5)


def test_multilabel_counts_without_an_ignore_mask_and_values_besides_0_and_1():
    logits = torch.tensor([[[[2.0, -2.0, 2.0, -2.0]]]])
    target = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    assert multilabel_counts(logits, target, 0.5).tolist() == [[[1, 1, 1]]]
    target[0, 0, 0, 3] = 2
    with pytest.raises(
        DataError, match=r"^a multilabel target must hold only 0 and 1 \(outside ignored pixels\)$"
    ):
        multilabel_counts(logits, target, 0.5)
    # the same value under an ignored pixel counts for nothing
    ignore = torch.tensor([[[[False, False, False, True]]]])
    assert multilabel_counts(logits, target, 0.5, ignore).tolist() == [[[1, 1, 1]]]


def test_a_probability_equal_to_the_threshold_is_not_positive():
    """``sigmoid(logit) > threshold``: a logit of 0 is probability 0.5 exactly, not above 0.5."""
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert multilabel_counts(logits, target, 0.5).tolist() == [[[0, 0, 1]]]


def test_update_passes_the_ignore_mask_to_the_counter_and_names_images_in_order():
    accumulator = ClassMetricAccumulator(
        ["x", "y"], counter=lambda lg, tg, ig: (multilabel_counts(lg, tg, 0.5, ig), None)
    )
    logits = torch.tensor([[[[3.0, 3.0]], [[-3.0, 3.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    ignore = torch.tensor([[[[False, True]]]])  # the second pixel counts in no channel
    counts = accumulator.update(logits, target, ignore)
    assert counts.tolist() == [[[1, 0, 0], [0, 0, 1]]]
    accumulator.update(logits.repeat(2, 1, 1, 1), target.repeat(2, 1, 1, 1))
    assert accumulator.counts().tolist() == [[[1, 0, 0], [0, 0, 1]]] + [[[1, 1, 0], [1, 0, 1]]] * 2
    # images without names are numbered from 0 in the order they came, across batches
    assert [row["name"] for row in accumulator.per_image()] == ["0", "1", "2"]


def test_the_confusion_matrix_stays_integer_counts():
    accumulator = multiclass_accumulator()
    accumulator.update(one_hot_logits([[[0, 1, 2, 2]]]), torch.tensor([[[0, 1, 1, 2]]]))
    assert accumulator.confusion.dtype == torch.int64
    assert accumulator.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_an_empty_accumulator_has_no_rows_of_the_right_shape_and_nothing_to_compute():
    accumulator = multiclass_accumulator()
    empty = accumulator.counts()
    assert empty.shape == (0, 3, 3) and empty.dtype == torch.int64
    with pytest.raises(UsageError, match=r"compute\(\) before any images were added"):
        accumulator.compute()


def test_an_image_holding_none_of_the_averaged_classes_scores_1():
    """Nothing to find and nothing claimed: a perfect image, in the per-image mean and in its row."""
    accumulator = multiclass_accumulator(averaged=[1, 2])
    # image 0: background only, predicted so; image 1: class 1 half found (IoU 1/2, Dice 2/3)
    accumulator.update(one_hot_logits([[[0, 0]], [[1, 0]]]), torch.tensor([[[0, 0]], [[1, 1]]]))
    scores = accumulator.compute()
    assert scores["iou_macro_per_image"] == pytest.approx((1 + 1 / 2) / 2)
    assert scores["dice_macro_per_image"] == pytest.approx((1 + 2 / 3) / 2)
    rows = accumulator.per_image()
    assert (rows[0]["iou"], rows[0]["dice"]) == (1.0, 1.0)
    assert (rows[1]["iou"], rows[1]["dice"]) == pytest.approx((1 / 2, 2 / 3))


def test_a_macro_mean_over_classes_absent_everywhere_is_nan():
    accumulator = multiclass_accumulator(averaged=[2])
    accumulator.update(one_hot_logits([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    scores = accumulator.compute()
    assert math.isnan(scores["iou_macro_dataset"]) and math.isnan(scores["dice_b"])
    assert scores["iou_macro_all_dataset"] == 1.0


@pytest.mark.parametrize("averaged", [[], [3], [-1], [0, 3]])
def test_averaged_classes_must_be_ids_of_the_classes(averaged):
    with pytest.raises(UsageError, match=r"averaged classes .* must be ids of \['bg', 'a', 'b'\]"):
        multiclass_accumulator(averaged=averaged)


def test_add_refuses_counts_and_names_that_do_not_fit():
    accumulator = multiclass_accumulator()
    with pytest.raises(UsageError, match=r"^this accumulator has no counter: use add\(counts, names\)$"):
        ClassMetricAccumulator(["bg", "a"]).update(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1))
    with pytest.raises(DataError, match=r"^counts for 2 classes, but the task has 3 \(bg, a, b\)$"):
        accumulator.add(torch.zeros(1, 2, 3, dtype=torch.int64), ["x"])
    with pytest.raises(UsageError, match=r"^names must be a list of 2 names \(one per image\), got \['x'\]$"):
        accumulator.add(torch.zeros(2, 3, 3, dtype=torch.int64), ["x"])
    with pytest.raises(UsageError, match="names must be a list of 2 names"):
        accumulator.add(torch.zeros(2, 3, 3, dtype=torch.int64), "xy")  # a string is not a list of names
    assert len(accumulator) == 0


class TwoRanks:
    """torch.distributed as rank 0 of two sees it: ``all_gather_object`` answers with the peer's share."""

    def __init__(self, peer) -> None:
        self.peer = peer
        self.gathers = 0

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self, group=None) -> int:
        return 2

    def all_gather_object(self, gathered, obj, group=None) -> None:
        self.gathers += 1
        gathered[:] = [obj, self.peer]


def two_ranks(monkeypatch, peer) -> TwoRanks:
    import torch.distributed as dist

    fake = TwoRanks(peer)
    for name in ("is_available", "is_initialized", "get_world_size", "all_gather_object"):
        monkeypatch.setattr(dist, name, getattr(fake, name))
    return fake


def test_all_reduce_pools_images_names_and_confusion_of_every_rank_once(monkeypatch):
    mine, theirs = multiclass_accumulator(), multiclass_accumulator()
    mine.update(one_hot_logits([[[0, 1, 2, 2]]]), torch.tensor([[[0, 1, 1, 2]]]), names=["m"])
    theirs.update(
        one_hot_logits([[[2, 2]], [[0, 1]]]), torch.tensor([[[2, 0]], [[0, 0]]]), names=["t1", "t2"]
    )
    expected_counts = torch.cat([mine.counts(), theirs.counts()]).tolist()
    fake = two_ranks(monkeypatch, (theirs.counts().tolist(), ["t1", "t2"], theirs.confusion.tolist()))
    mine.all_reduce()
    assert fake.gathers == 1
    assert mine.counts().tolist() == expected_counts
    assert [row["name"] for row in mine.per_image()] == ["m", "t1", "t2"]
    assert mine.confusion.dtype == torch.int64
    assert mine.confusion.tolist() == [[2, 1, 1], [0, 1, 1], [0, 0, 2]]  # (truth, prediction) pairs
    with pytest.raises(UsageError, match=r"all_reduce\(\) called twice: images would be counted twice$"):
        mine.all_reduce()
    with pytest.raises(UsageError, match=r"add\(\) after all_reduce\(\): call reset\(\) first$"):
        mine.add(theirs.counts(), ["t1", "t2"])
    mine.reset()
    mine.add(theirs.counts(), ["t1", "t2"])  # a fresh start may add again
    assert len(mine) == 2


def test_all_reduce_of_ranks_without_images_keeps_integer_counts(monkeypatch):
    accumulator = multiclass_accumulator()
    two_ranks(monkeypatch, ([], [], [[0] * 3] * 3))
    accumulator.all_reduce()
    assert accumulator.counts().shape == (0, 3, 3) and accumulator.counts().dtype == torch.int64


def test_all_reduce_without_a_process_group_changes_nothing():
    accumulator = multiclass_accumulator()
    accumulator.update(one_hot_logits([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    accumulator.all_reduce()  # one process: nothing to gather, and add() still allowed
    accumulator.update(one_hot_logits([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    assert len(accumulator) == 2
