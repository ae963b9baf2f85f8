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


# --- gaps found by mutation testing (MUTATION.md) ------


def test_the_dataset_passes_its_names_palette_and_background_on():
    palette = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    multi = task_for_dataset(
        Named(task="multiclass", class_names=[1, "sky", "road"], palette=palette, background_index=2), 0.5
    )
    assert multi == MulticlassTask(("1", "sky", "road"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)), 2)
    assert multi.averaged == [0, 1]
    labels = task_for_dataset(Named(task="multilabel", class_names=["a", "b"], palette=palette[:2]), 0.3)
    assert labels == MultilabelTask(("a", "b"), 0.3, ((1, 2, 3), (4, 5, 6)))
    # A task attribute of None (or empty) means binary, as a missing one does.
    assert task_for_dataset(Named(task=None), 0.4) == BinaryTask(0.4)
    assert task_for_dataset(Named(task=""), 0.4) == BinaryTask(0.4)
    with pytest.raises(
        DataError,
        match=r"^the dataset asks for a 'panoptic' task; known tasks: binary, multiclass, multilabel$",
    ):
        task_for_dataset(Named(task="panoptic"), 0.5)


def test_a_binary_checkpoint_defaults_to_one_channel_and_threshold_one_half():
    assert task_from_checkpoint({"task": "binary"}) == BinaryTask(0.5)
    assert task_from_checkpoint({}) == BinaryTask(0.5)
    # A multi-class checkpoint that does not say its channel count is taken at its class count.
    assert task_from_checkpoint({"task": "multiclass", "class_names": ["a", "b"]}).out_channels == 2
    with pytest.raises(
        CheckpointError,
        match=r"^checkpoint has a malformed binary task: out_channels 2; a binary task has 1$",
    ):
        task_from_checkpoint({"task": "binary", "out_channels": 2})
    with pytest.raises(CheckpointError, match=r"\(it knows: binary, multiclass, multilabel\)$"):
        task_from_checkpoint({"task": "panoptic"})


def test_multiclass_records_name_every_column_and_label_it_in_words():
    task = MulticlassTask(("background", "cat", "dog"))
    scores = {
        "dice_macro_dataset": 0.1,
        "iou_macro_dataset": 0.2,
        "dice_macro_per_image": 0.3,
        "iou_macro_per_image": 0.4,
        "iou_macro_all_dataset": 0.5,
        "iou_background": 0.6,
        "iou_cat": 0.7,
        "iou_dog": 0.8,
        "dice_background": 0.9,
        "dice_cat": 0.15,
        "dice_dog": 0.25,
    }
    assert task.record_fields(scores) == {
        "valid_dice": 0.1,
        "valid_iou": 0.2,
        "valid_dice_per_image": 0.3,
        "valid_iou_per_image": 0.4,
        "valid_iou_all_classes": 0.5,
        "valid_iou_background": 0.6,
        "valid_iou_cat": 0.7,
        "valid_iou_dog": 0.8,
        "valid_dice_background": 0.9,
        "valid_dice_cat": 0.15,
        "valid_dice_dog": 0.25,
    }
    means = "macro over 2 foreground classes (cat, dog), argmax, 64x48 network input)"
    per_class = "argmax, 64x48 network input)"
    assert task.record_labels((64, 48)) == {
        "valid_dice": f"valid mean Dice (pooled over the dataset, {means}",
        "valid_dice_per_image": f"valid mean Dice (per-image mean, {means}",
        "valid_iou": f"valid mean IoU (pooled over the dataset, {means}",
        "valid_iou_per_image": f"valid mean IoU (per-image mean, {means}",
        "valid_iou_all_classes": "valid mean IoU (pooled over the dataset, macro over 3 classes "
        "(all, background included), argmax, 64x48 network input)",
        **{
            f"valid_{metric}_{name}": f"valid {word} of class {name} (pooled over the dataset, {per_class}"
            for metric, word in (("iou", "IoU"), ("dice", "Dice"))
            for name in ("background", "cat", "dog")
        },
    }
    # Without a background every class is averaged, and there is no all-classes column.
    plain = MulticlassTask(("sky", "road"))
    assert "valid_iou_all_classes" not in plain.record_labels(32)
    assert "valid_iou_all_classes" not in plain.record_fields(
        {**scores, "iou_sky": 0, "iou_road": 0, "dice_sky": 0, "dice_road": 0}
    )
    assert plain.record_labels("original")["valid_dice"] == (
        "valid mean Dice (pooled over the dataset, macro over 2 classes (all), argmax, original mask size)"
    )
    assert plain.record_labels("tiles of 256")["valid_iou_sky"].endswith("argmax, tiles of 256)")


@pytest.mark.parametrize(
    "palette",
    [[[0, 0, 0]], [[0, 0, 0], [1, 2]], [[0, 0, 0], [1, 2, 256]], [[0, 0, 0], [-1, 2, 3]]],
)
def test_a_palette_needs_a_colour_of_three_values_0_to_255_per_class(palette):
    with pytest.raises(ValueError, match=r"^a palette needs 2 colours of three values 0-255"):
        MulticlassTask(("a", "b"), palette)
    assert MulticlassTask(("a", "b"), [[0, 0, 0], [255, 255, 255], [9, 9, 9]]).palette == (
        (0, 0, 0),
        (255, 255, 255),
    )


def test_the_binary_task_scores_and_records_at_its_own_threshold():
    task = BinaryTask(0.75)
    # Probability exactly at the threshold is background: the mask is "above", not "at least".
    at = torch.full((1, 1, 1, 2), float(np.log(0.75 / 0.25)))
    assert not task.predict_mask(at).any()
    assert not BinaryTask(0.5).predict_mask(torch.zeros(1, 1, 2, 2)).any()
    # Probability 0.6 on a full mask: Dice 1 at threshold 0.5, 0 at 0.75.
    logits, masks = torch.full((2, 1, 2, 2), float(np.log(0.6 / 0.4))), torch.ones(2, 1, 2, 2)
    assert task.batch_score(logits, masks) == 0.0 and BinaryTask(0.5).batch_score(logits, masks) == 1.0
    accumulator = task.new_accumulator(empty_score=0.0)
    accumulator.update(logits, masks)
    accumulator.update(torch.full((1, 1, 2, 2), -5.0), torch.zeros(1, 1, 2, 2))  # empty: scores 0 here
    assert accumulator.compute()["dice_per_image"] == 0.0
    assert task.record_fields({"dice_per_image": 0.1, "dice_dataset": 0.2, "iou_per_image": 0.3}) == {
        "valid_dice": 0.1,
        "valid_dice_dataset": 0.2,
        "valid_iou": 0.3,
    }
    assert task.record_labels(64) == {
        "valid_dice": "valid Dice (per-image mean, threshold 0.75, 64x64 network input)"
    }
    assert task.metric_label("iou", "dataset", 32, "test") == (
        "test IoU (pooled over the dataset, threshold 0.75, 32x32 network input)"
    )
    assert task.checkpoint_fields() == {"task": "binary", "out_channels": 1, "threshold": 0.75}


def test_levers_left_out_say_why_in_words_for_each_task():
    multi, labels = MulticlassTask(("background", "a")), MultilabelTask(("a", "b"))
    assert settings_left_out(multi, {"calibrate_threshold": True, "fill_holes": True}) == {
        "calibrate_threshold": "an argmax has no threshold",
        "fill_holes": "post-processing works on binary masks, not on multiclass ones",
    }
    assert settings_left_out(labels, {"calibrate_threshold": True, "keep_largest": True}) == {
        "calibrate_threshold": "one threshold sweep per label is not built; "
        "--threshold applies to every label",
        "keep_largest": "post-processing works on binary masks, not on multilabel ones",
    }


def test_the_progress_figure_of_several_classes_averages_the_classes_present():
    task = MulticlassTask(("background", "a", "b"))
    masks = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    masks[0, 0, 0] = 1  # class a on the top row; class b nowhere
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = 5.0  # class a predicted on one of its two pixels: Dice 2/3
    assert task.batch_score(logits, masks) == pytest.approx(2 / 3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 5.0  # only background, as the truth: no class to score
    assert task.batch_score(logits, torch.zeros(1, 1, 2, 2, dtype=torch.long)) == 1.0


# --- what predict and export write (the file-writing side of each task), against plain numpy ------------


def reference_counts(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray, classes: int) -> np.ndarray:
    """(N, K, 3) tp, fp, fn per image and class, counted pixel by pixel in Python."""
    counts = np.zeros((predicted.shape[0], classes, 3), np.int64)
    for n, k in np.ndindex(predicted.shape[0], classes):
        for p, t, v in zip(predicted[n].ravel(), truth[n].ravel(), valid[n].ravel(), strict=True):
            if v:
                counts[n, k] += [p == k and t == k, p == k and t != k, p != k and t == k]
    return counts


def test_binary_mask_image_is_255_on_the_foreground_and_0_elsewhere():
    mask = np.array([[True, False, True], [False, False, True]])
    (name, image), *rest = BinaryTask(0.3).mask_images(mask).items()
    assert name == "mask" and rest == [] and image.mode == "L"
    assert np.asarray(image).tolist() == [[255, 0, 255], [0, 0, 255]]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.875])
def test_binary_export_description_and_its_steps_give_the_predicted_mask(threshold):
    task = BinaryTask(threshold)
    assert task.output_description() == {
        "shape": ["batch", 1, "height", "width"],
        "kind": "logits: apply a sigmoid to get the foreground probability",
        "threshold": threshold,
    }
    lines = task.postprocessing_lines()
    assert lines == ["probability = 1 / (1 + exp(-logits))", f"mask = probability > {threshold:g}"]
    # The lines are what a caller runs: executed with numpy they give predict's mask.
    logits = np.random.default_rng(3).normal(size=(1, 1, 6, 7)) * 3
    names = {"exp": np.exp, "logits": logits}
    for line in lines:
        exec(line, names)
    np.testing.assert_array_equal(names["mask"][:, 0], task.predict_mask(torch.from_numpy(logits)).numpy())
    assert task.mask_from_probability(np.array([threshold, threshold + 0.01])).tolist() == [False, True]


def test_multiclass_mask_image_holds_the_ids_and_the_palette_padded_to_256_colours():
    palette = ((0, 0, 0), (200, 10, 20), (5, 250, 6), (7, 8, 255))
    task = MulticlassTask(("background", "a", "b", "c"), palette)
    mask = np.array([[0, 1, 2], [3, 3, 1]], dtype=np.int64)
    (name, image), *rest = task.mask_images(mask).items()
    assert name == "mask" and rest == [] and image.mode == "P"
    assert np.asarray(image).tolist() == mask.tolist()
    expected = [value for colour in palette for value in colour]
    assert image.getpalette("RGB") == expected + [0] * (768 - len(expected))
    rgb = np.asarray(image.convert("RGB"))
    assert [[tuple(rgb[y, x]) for x in range(3)] for y in range(2)] == [
        [palette[mask[y, x]] for x in range(3)] for y in range(2)
    ]


@pytest.mark.parametrize(
    "names, background",
    [(("background", "a", "b"), 0), (("a", "Background", "b"), 1), (("a", "b", "c"), None)],
)
def test_multiclass_colour_mask_tints_every_class_but_the_background(names, background):
    palette = ((1, 2, 3), (40, 50, 60), (70, 80, 90))
    task = MulticlassTask(names, palette)
    mask = np.array([[0, 1], [2, 0], [1, 1]])
    colours, tinted = task.colour_mask(mask)
    assert colours.dtype == np.float32 and colours.shape == (3, 2, 3)
    for y, x in np.ndindex(mask.shape):
        assert tuple(colours[y, x]) == palette[mask[y, x]]
        assert tinted[y, x] == (background is None or mask[y, x] != background)
    assert tinted.dtype == bool and tinted.shape == mask.shape


def test_multiclass_export_description_names_the_classes_in_order():
    task = MulticlassTask(("sky", "road", "car"))
    assert task.output_description() == {
        "shape": ["batch", 3, "height", "width"],
        "kind": "logits, one channel per class: the argmax over channels is the predicted class id",
        "classes": ["sky", "road", "car"],
    }
    assert task.postprocessing_lines() == [
        "mask = argmax over the class channel (class ids, in the order of 'classes')",
        "probabilities, where wanted = softmax over the class channel",
    ]
    assert task.threshold is None and task.with_threshold(0.2) is task


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), channel_axis=st.booleans(), use_ignore=st.booleans())
def test_multiclass_counts_per_image_and_class_match_a_pixel_count(seed, channel_axis, use_ignore):
    rng = np.random.default_rng(seed)
    task = MulticlassTask(("background", "a", "b"))
    logits = torch.from_numpy(rng.normal(size=(2, 3, 3, 4)).astype(np.float32))
    truth = rng.integers(0, 3, size=(2, 3, 4))
    ignored = rng.random((2, 3, 4)) < 0.3 if use_ignore else np.zeros((2, 3, 4), bool)
    target = torch.from_numpy(truth[:, None] if channel_axis else truth)
    ignore = torch.from_numpy(ignored[:, None] if channel_axis else ignored) if use_ignore else None
    counts = task.new_accumulator().update(logits, target, ignore)
    expected = reference_counts(logits.numpy().argmax(axis=1), truth, ~ignored, 3)
    np.testing.assert_array_equal(counts.numpy(), expected)


def test_multilabel_mask_images_are_one_0_255_png_per_label():
    task = MultilabelTask(("cat", "dog"))
    mask = np.array([[[True, False], [False, False]], [[True, True], [False, True]]])
    images = task.mask_images(mask)
    assert list(images) == ["mask_cat", "mask_dog"]
    assert [image.mode for image in images.values()] == ["L", "L"]
    assert np.asarray(images["mask_cat"]).tolist() == [[255, 0], [0, 0]]
    assert np.asarray(images["mask_dog"]).tolist() == [[255, 255], [0, 255]]


def test_multilabel_colour_mask_shows_the_last_label_where_labels_overlap():
    palette = ((10, 0, 0), (0, 20, 0), (0, 0, 30))
    task = MultilabelTask(("a", "b", "c"), palette=palette)
    mask = np.random.default_rng(5).random((3, 4, 5)) < 0.4
    colours, tinted = task.colour_mask(mask)
    assert colours.dtype == np.float32 and colours.shape == (4, 5, 3)
    for y, x in np.ndindex(4, 5):
        on = [index for index in range(3) if mask[index, y, x]]
        assert tuple(colours[y, x]) == (palette[on[-1]] if on else (0, 0, 0))
        assert tinted[y, x] == bool(on)


def test_multilabel_default_palette_is_the_distinct_colours_without_black():
    from segkit.task.palette import DISTINCT_COLOURS

    assert MultilabelTask(("a", "b")).palette == tuple(tuple(colour) for colour in DISTINCT_COLOURS[:2])


@pytest.mark.parametrize("threshold", [0.5, 0.35])
def test_multilabel_export_description_and_steps_give_the_predicted_masks(threshold):
    task = MultilabelTask(("cat", "dog"), threshold)
    assert task.output_description() == {
        "shape": ["batch", 2, "height", "width"],
        "kind": "logits, one independent channel per label: a sigmoid per channel gives its probability",
        "classes": ["cat", "dog"],
        "threshold": threshold,
    }
    assert task.postprocessing_lines() == [
        "probability = 1 / (1 + exp(-logits)), per channel",
        f"mask of each label = its probability > {threshold:g} (labels may overlap)",
    ]
    assert task.mask_rule == f"threshold {threshold:g} per class"
    probability = np.array([[threshold, threshold + 0.01]])
    assert task.mask_from_probability(probability).tolist() == [[False, True]]


def test_multilabel_with_threshold_keeps_names_and_palette():
    task = MultilabelTask(("a", "b"), 0.5, ((1, 2, 3), (4, 5, 6)))
    assert task.with_threshold(0.2) == MultilabelTask(("a", "b"), 0.2, ((1, 2, 3), (4, 5, 6)))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), threshold=st.floats(0.1, 0.9), ignore_shape=st.sampled_from([1, 2, 0]))
def test_multilabel_counts_and_loss_inputs_follow_each_channel_and_the_ignore_map(
    seed, threshold, ignore_shape
):
    rng = np.random.default_rng(seed)
    task = MultilabelTask(("a", "b"), threshold)
    logits = torch.from_numpy(rng.normal(size=(2, 2, 3, 4)).astype(np.float32))
    truth = rng.random((2, 2, 3, 4)) < 0.5
    # ignore as one map for every channel (N, 1, H, W), per channel (N, K, H, W), or none
    ignored = rng.random((2, ignore_shape or 1, 3, 4)) < 0.3
    ignore = torch.from_numpy(ignored) if ignore_shape else None
    valid = ~np.broadcast_to(ignored, truth.shape) if ignore_shape else np.ones(truth.shape, bool)
    masks = torch.from_numpy(truth.astype(np.float32))
    counts = task.new_accumulator().update(logits, masks, ignore)
    predicted = 1 / (1 + np.exp(-logits.double().numpy())) > threshold
    expected = np.zeros((2, 2, 3), np.int64)
    for n, k in np.ndindex(2, 2):
        p, t, v = predicted[n, k], truth[n, k], valid[n, k]
        expected[n, k] = [(p & t & v).sum(), (p & ~t & v).sum(), (~p & t & v).sum()]
    np.testing.assert_array_equal(counts.numpy(), expected)
    loss_logits, loss_masks, loss_ignore = task.loss_inputs(logits.half(), masks, ignore)
    assert loss_logits.dtype == torch.float32 and loss_masks is masks
    if ignore_shape:
        assert loss_ignore.shape == logits.shape
        np.testing.assert_array_equal(loss_ignore.numpy(), ~valid)
    else:
        assert loss_ignore is None


def test_checkpoint_fields_of_several_classes_are_plain_lists_and_read_back():
    multi = MulticlassTask(("background", "a"), ((0, 0, 0), (9, 8, 7)), None, 250)
    assert multi.checkpoint_fields() == {
        "task": "multiclass",
        "out_channels": 2,
        "class_names": ["background", "a"],
        "palette": [[0, 0, 0], [9, 8, 7]],
        "background": 0,
        "ignore_index": 250,
    }
    assert MulticlassTask.from_fields(multi.checkpoint_fields()) == multi
    read = MulticlassTask.from_fields({"class_names": [1, 2], "background": "1"})
    assert read == MulticlassTask(("1", "2"), background=1) and read.ignore_index == 255
    labels = MultilabelTask(("a", "b"), 0.4, ((1, 2, 3), (4, 5, 6)))
    assert labels.checkpoint_fields() == {
        "task": "multilabel",
        "out_channels": 2,
        "class_names": ["a", "b"],
        "palette": [[1, 2, 3], [4, 5, 6]],
        "threshold": 0.4,
    }
    assert MultilabelTask.from_fields(labels.checkpoint_fields()) == labels
    assert MultilabelTask.from_fields({"class_names": [7]}) == MultilabelTask(("7",), 0.5)


def test_probabilities_are_the_sigmoid_or_the_softmax_in_float32():
    logits = np.random.default_rng(9).normal(size=(2, 3, 4, 5)) * 3
    half = torch.from_numpy(logits).half()
    sigmoid = 1 / (1 + np.exp(-half.double().numpy()))
    for task, channels in ((BinaryTask(), 1), (MultilabelTask(("a", "b", "c")), 3)):
        probability = task.probabilities(half[:, :channels])
        assert probability.dtype == torch.float32
        np.testing.assert_allclose(probability.numpy(), sigmoid[:, :channels], rtol=1e-6)
    exp = np.exp(half.double().numpy())
    softmax = MulticlassTask(("a", "b", "c")).probabilities(half)
    assert softmax.dtype == torch.float32
    np.testing.assert_allclose(softmax.numpy(), exp / exp.sum(axis=1, keepdims=True), rtol=1e-5)


def test_threshold_changes_keep_the_task_and_a_probability_at_the_threshold_is_background():
    assert BinaryTask(0.5).with_threshold(0.3) == BinaryTask(0.3)
    labels = MultilabelTask(("a", "b"), 0.5)
    at = torch.full((1, 2, 1, 1), float(np.log(0.5 / 0.5)))
    assert not labels.predict_mask(at).any()
    with pytest.raises(ValueError, match=r"^a multilabel task needs at least one class$"):
        MultilabelTask(())


def test_multiclass_counts_use_the_tasks_own_ignore_value():
    task = MulticlassTask(("a", "b"), ignore_index=7)
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])  # predicted: a, b
    ignore = torch.tensor([[[True, False]]])
    counts = task.new_accumulator().update(logits, torch.tensor([[[1, 1]]]), ignore)
    # the first pixel ignored; the second predicted b, truly b
    assert counts.tolist() == [[[0, 0, 0], [1, 0, 0]]]
