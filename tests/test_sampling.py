"""Crops at native resolution (segkit.data.sampling) and their use through the datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.data.sampling import Sampling, foreground_pixels, random_crop, rescale
from segkit.data.transforms import build_sample_transform
from segkit.engine.step import TrainingStep
from segkit.task import BinaryTask, MulticlassTask, MultilabelTask

sizes = st.tuples(st.integers(4, 60), st.integers(4, 60))


@settings(max_examples=60, deadline=None)
@given(
    shape=sizes,
    crop=st.integers(8, 40),
    seed=st.integers(0, 2**31 - 1),
    fraction=st.sampled_from([0, 0.5, 1]),
)
def test_a_crop_is_a_window_of_the_padded_photo(shape, crop, seed, fraction):
    torch.manual_seed(seed)
    height, width = shape
    # Pixels that say where they came from: row * 1000 + column (+1, so padding's 0 is told apart).
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    where = (rows * 1000 + columns + 1).to(torch.int64)
    mask = (torch.rand(1, height, width) > 0.7).to(torch.uint8)
    pixels, cut_mask = random_crop(where[None], mask, crop, fraction, "binary")
    assert pixels.shape[-2:] == (crop, crop) and cut_mask.shape[-2:] == (crop, crop)
    inside = pixels[0] > 0
    first = pixels[0][inside].min() - 1
    top, left = int(first // 1000), int(first % 1000)
    # Every real pixel is where a window at (top, left) puts it; the rest is padding (0) beyond the photo.
    expected = torch.zeros(crop, crop, dtype=torch.int64)
    window = where[top : top + crop, left : left + crop]
    expected[: window.shape[0], : window.shape[1]] = window
    assert torch.equal(pixels[0], expected)
    assert torch.equal(
        cut_mask[0][inside],
        mask[0, top : top + crop, left : left + crop][inside[: window.shape[0], : window.shape[1]]],
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_with_foreground_fraction_one_every_crop_holds_foreground(seed):
    torch.manual_seed(seed)
    mask = torch.zeros(1, 120, 90, dtype=torch.uint8)
    row, column = int(torch.randint(120, ())), int(torch.randint(90, ()))
    mask[0, row, column] = 1  # a single foreground pixel somewhere in a large photo
    _, cut = random_crop(torch.zeros(3, 120, 90), mask, 16, 1.0, "binary")
    assert cut.sum() == 1


def test_multiclass_crops_centre_on_each_present_class_alike():
    torch.manual_seed(0)
    mask = torch.ones(1, 200, 200, dtype=torch.uint8)  # class 0 everywhere (carried as id + 1)
    mask[0, 5, 5] = 3  # one pixel of class 2
    hits = sum(
        bool((random_crop(torch.zeros(3, 200, 200), mask, 16, 1.0, "multiclass")[1] == 3).any())
        for _ in range(200)
    )
    assert 70 < hits < 130  # about half the crops: two classes present, one chosen at random
    assert len(foreground_pixels(torch.zeros(1, 4, 4, dtype=torch.uint8), "multiclass")) == 0  # only ignore


@given(scale=st.sampled_from([0.5, 0.75, 2.0]), seed=st.integers(0, 1000))
def test_rescaling_keeps_mask_ids_and_scales_sides(scale, seed):
    rng = np.random.default_rng(seed)
    mask = torch.from_numpy(rng.integers(0, 4, size=(1, 30, 44)).astype(np.uint8))
    pixels = torch.from_numpy(rng.integers(0, 255, size=(3, 30, 44)).astype(np.uint8))
    new_pixels, new_mask = rescale(pixels, mask, scale)
    assert new_mask.shape[-2:] == (round(30 * scale), round(44 * scale)) == new_pixels.shape[-2:]
    assert set(torch.unique(new_mask).tolist()) <= set(torch.unique(mask).tolist())


def test_bad_sampling_values_are_refused():
    with pytest.raises(ValueError, match="crop size"):
        Sampling.crops(4)
    with pytest.raises(ValueError, match="scale"):
        Sampling.native(0)
    with pytest.raises(ValueError, match="foreground_fraction"):
        Sampling.crops(16, foreground_fraction=2)


@pytest.mark.parametrize("augment", ["none", "default", "strong"])
def test_every_built_in_pipeline_augments_a_crop_without_resizing_it(augment):
    torch.manual_seed(1)
    transform = build_sample_transform(augment, 256, train=True, sampling=Sampling.crops(24))
    photo = torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8)
    labels = (np.arange(50 * 70).reshape(50, 70) % 2).astype(np.uint8)
    sample = transform(photo, labels)
    assert sample["image"].shape == (3, 24, 24) and sample["mask"].shape == (1, 24, 24)


def test_native_sampling_keeps_the_photo_size_and_only_normalises():
    transform = build_sample_transform("default", 64, train=False, sampling=Sampling.native(0.5))
    photo = torch.full((3, 40, 60), 128, dtype=torch.uint8)
    sample = transform(photo, np.zeros((40, 60), np.uint8))
    assert sample["image"].shape == (3, 20, 30)


def test_a_folder_split_yields_crops_and_whole_photos(tmp_path):
    from data_fixtures import write_folder_layout

    root = tmp_path / "data"
    write_folder_layout(root, [f"p{i}" for i in range(4)], size=(40, 52))
    crops = segkit.create_dataset("folder", root=root, split="train", sampling=Sampling.crops(16))
    assert crops[0]["image"].shape == (3, 16, 16)
    whole = segkit.create_dataset("folder", root=root, split="train", sampling=Sampling.native())
    assert whole[0]["image"].shape == (3, 40, 52)


# -- a crop larger than the photo: its padding is ignored, for every task ------------------------------

TASK_KINDS = ("binary", "multiclass", "multilabel")


def labels_of(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    """Labels without any ignored pixel: binary 0/1, three class ids, two 0/1 label channels."""
    rng = np.random.default_rng(seed)
    if kind == "multilabel":
        return rng.integers(0, 2, (2, height, width)).astype(np.uint8)
    return rng.integers(0, 3 if kind == "multiclass" else 2, (height, width)).astype(np.uint8)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(TASK_KINDS),
    shape=sizes,
    crop=st.integers(8, 40),
    fraction=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_crop_beyond_the_photo_ignores_exactly_the_padding_for_every_task(
    kind, shape, crop, fraction, seed
):
    """The sample a dataset yields: ``ignore`` is True exactly on the pixels beyond the photo (found
    from the photo's own pixels, all nonzero here), and the labels inside are the photo's."""
    torch.manual_seed(seed)
    height, width = shape
    photo = torch.from_numpy(
        np.random.default_rng(seed).integers(1, 256, (3, height, width)).astype(np.uint8)
    )
    labels = labels_of(kind, height, width, seed)
    transform = build_sample_transform(
        "none", 32, train=True, sampling=Sampling.crops(crop, foreground_fraction=fraction)
    )
    sample = transform(photo, labels, task=kind)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    beyond = ((sample["image"] * std + mean) * 255).round().sum(dim=0) == 0  # black: padding only
    rows, columns = max(0, crop - height), max(0, crop - width)
    assert int(beyond.sum()) == crop * crop - (crop - rows) * (crop - columns)  # a band at bottom/right
    channels = 2 if kind == "multilabel" else 1
    assert sample["ignore"].shape == (channels, crop, crop)
    assert torch.equal(sample["ignore"], beyond.expand(channels, crop, crop))
    if kind == "multiclass":
        assert bool((sample["mask"][0][beyond] == 255).all()) and int(sample["mask"][0][~beyond].max()) <= 2
    else:
        assert set(torch.unique(sample["mask"]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "kind, task, loss",
    [
        ("binary", BinaryTask(), "bce_dice"),
        ("multiclass", MulticlassTask(("a", "b", "c")), "ce_dice"),
        ("multilabel", MultilabelTask(("a", "b")), "bce_dice"),
    ],
)
def test_a_training_step_on_a_padded_crop_counts_only_the_photo(kind, task, loss):
    """The step's loss and gradients on a 16x16 crop of a 10x12 photo equal those of the same loss
    over the photo's 10x12 pixels of the same logits: the padding adds nothing."""
    height, width = 10, 12
    torch.manual_seed(3)
    photo = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    transform = build_sample_transform("none", 32, train=True, sampling=Sampling.crops(16))
    sample = transform(photo, labels_of(kind, height, width, 3), task=kind)
    batch = {name: sample[name][None] for name in ("image", "mask", "ignore")}

    model = torch.nn.Conv2d(3, task.out_channels, 3, padding=1)
    loss_fn = segkit.create_loss(loss)
    logits = model(batch["image"])[..., :height, :width]
    target = batch["mask"][..., :height, :width]
    if kind == "multiclass":
        target = target[:, 0]
    expected = loss_fn(logits, target)
    expected.backward()
    expected_gradients = [parameter.grad.clone() for parameter in model.parameters()]

    step = TrainingStep(
        model,
        loss_fn,
        torch.optim.SGD(model.parameters(), lr=0.0),
        task,
        device=torch.device("cpu"),
        amp_dtype=None,
        channels_last=False,
    )
    result = step([batch])
    assert result.loss == pytest.approx(float(expected.detach()), rel=1e-5)
    for found, wanted in zip([p.grad for p in model.parameters()], expected_gradients, strict=True):
        assert torch.allclose(found, wanted, rtol=1e-4, atol=1e-7)
