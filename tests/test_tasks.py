"""The task seam (segkit.task): what each kind of task does with logits, masks and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.errors import CheckpointError, DataError
from segkit.task import (
    BinaryTask,
    MulticlassTask,
    MultilabelTask,
    settings_left_out,
    task_for_dataset,
    task_from_checkpoint,
)

logit_maps = st.integers(0, 2**31 - 1).map(
    lambda seed: torch.from_numpy(
        np.random.default_rng(seed).normal(size=(2, 3, 4, 5)).astype(np.float32) * 3
    )
)


@settings(max_examples=30, deadline=None)
@given(logits=logit_maps, threshold=st.floats(0.05, 0.95))
def test_binary_and_multilabel_masks_are_the_probability_above_the_threshold(logits, threshold):
    probability = 1 / (1 + np.exp(-logits.double().numpy()))
    binary = BinaryTask(threshold).predict_mask(logits[:, :1])
    np.testing.assert_array_equal(binary.numpy(), probability[:, 0] > threshold)
    multilabel = MultilabelTask(("a", "b", "c"), threshold).predict_mask(logits)
    np.testing.assert_array_equal(multilabel.numpy(), probability > threshold)


@settings(max_examples=30, deadline=None)
@given(logits=logit_maps)
def test_multiclass_masks_are_the_most_probable_class(logits):
    task = MulticlassTask(("background", "a", "b"))
    probabilities = task.probabilities(logits).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(task.predict_mask(logits).numpy(), probabilities.argmax(axis=1))
    np.testing.assert_array_equal(
        task.mask_from_probability(probabilities[0]), probabilities[0].argmax(axis=0)
    )


def test_multiclass_background_is_the_class_named_so_and_leaves_the_mean():
    assert MulticlassTask(("road", "Background", "car")).averaged == [0, 2]
    assert MulticlassTask(("road", "car")).averaged == [0, 1]  # no background: every class
    assert MulticlassTask(("road", "car", "sky"), background=2).averaged == [0, 1]
    label = MulticlassTask(("background", "pet", "border")).record_labels(64)["valid_iou"]
    assert "2 foreground classes (pet, border)" in label and "pooled" in label and "64x64" in label


def test_multiclass_loss_inputs_mark_ignored_pixels_with_the_ignore_value():
    task = MulticlassTask(("a", "b"))
    masks = torch.tensor([[[[0, 1], [1, 0]]]])
    ignore = torch.tensor([[[[False, True], [False, False]]]])
    _, target, none = task.loss_inputs(torch.zeros(1, 2, 2, 2), masks, ignore)
    assert none is None and target.tolist() == [[[0, 255], [1, 0]]]


@pytest.mark.parametrize(
    "task",
    [
        BinaryTask(0.35),
        MulticlassTask(("background", "pet", "border"), ((0, 0, 0), (10, 20, 30), (1, 2, 3))),
        MultilabelTask(("cat", "dog"), 0.6),
    ],
)
def test_a_checkpoint_records_the_task_it_was_trained_for(task):
    fields = task.checkpoint_fields()
    assert task_from_checkpoint(fields) == task
    assert fields["out_channels"] == task.out_channels


def test_an_old_checkpoint_without_a_task_is_binary():
    assert task_from_checkpoint({"out_channels": 1, "threshold": 0.4}) == BinaryTask(0.4)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"task": "panoptic"}, "does not know"),
        ({"task": "multiclass", "out_channels": 3}, "without 'class_names'"),
        ({"task": "multiclass", "class_names": ["a", "b"], "out_channels": 5}, "out_channels 5"),
        ({"task": "binary", "out_channels": 2}, "malformed binary"),
        ({"task": "multilabel", "class_names": ["a"], "threshold": 2}, "malformed multilabel"),
    ],
)
def test_a_malformed_task_in_a_checkpoint_is_one_clear_line(payload, message):
    with pytest.raises(CheckpointError, match=message):
        task_from_checkpoint(payload, "run/best.pt")


class Named:
    def __init__(self, **attributes):
        self.__dict__.update(attributes)


def test_the_dataset_chooses_the_task():
    assert task_for_dataset(Named(), 0.5) == BinaryTask(0.5)
    multi = task_for_dataset(Named(task="multiclass", class_names=["background", "a"]), 0.5)
    assert isinstance(multi, MulticlassTask) and multi.out_channels == 2
    labels = task_for_dataset(Named(task="multilabel", class_names=["a", "b", "c"]), 0.3)
    assert isinstance(labels, MultilabelTask) and labels.threshold == 0.3
    with pytest.raises(DataError, match="'panoptic'"):
        task_for_dataset(Named(task="panoptic"), 0.5)
    with pytest.raises(DataError, match="at least 2 classes"):
        task_for_dataset(Named(task="multiclass", class_names=["only"]), 0.5)


def test_binary_levers_are_left_out_of_other_tasks_with_a_reason():
    levers = {"calibrate_threshold": True, "fill_holes": True, "keep_largest": True}
    assert settings_left_out(BinaryTask(), levers) == {}
    left_out = settings_left_out(MulticlassTask(("a", "b")), levers)
    assert set(left_out) == set(levers) and "argmax" in left_out["calibrate_threshold"]
    assert set(settings_left_out(MultilabelTask(("a",)), levers)) == set(levers)


def test_multiclass_predictions_are_written_as_index_pngs_in_the_class_colours():
    task = MulticlassTask(("background", "a", "b"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    mask = np.array([[0, 1], [2, 1]])
    (image,) = task.mask_images(mask).values()
    assert image.mode == "P" and np.array_equal(np.asarray(image), mask)
    assert image.convert("RGB").getpixel((0, 1)) == (0, 255, 0)
