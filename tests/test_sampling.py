"""Crops at native resolution (segkit.data.sampling) and their use through the datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

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


# -- what the mutation run found untested ---------------------------------------------------------------


def test_an_unknown_sampling_mode_names_the_modes():
    with pytest.raises(ValueError, match=r"^sampling mode must be one of resize, crop, native, got 'zoom'$"):
        Sampling("zoom")


def test_rescaling_never_leaves_a_side_of_fewer_than_one_pixel():
    # float pixels: torch 2.14's antialiased uint8 kernel fails an internal assert for a 1x1 output of
    # 3 channels (a photo shrunk to one pixel is not a real use)
    pixels, mask = rescale(torch.zeros(3, 2, 3), torch.zeros(1, 2, 3, dtype=torch.uint8), 0.1)
    assert pixels.shape == (3, 1, 1) and mask.shape == (1, 1, 1)


def test_rescaling_blends_the_photo_with_antialiasing_as_pillow_does():
    """Shrinking noise without antialiasing samples a few pixels; Pillow's bilinear resize (always
    antialiased) averages all of them. torchvision's antialiased resize follows Pillow's."""
    photo = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    pixels, _ = rescale(
        torch.from_numpy(photo).permute(2, 0, 1), torch.zeros(1, 40, 60, dtype=torch.uint8), 0.25
    )
    expected = np.asarray(Image.fromarray(photo).resize((15, 10), Image.Resampling.BILINEAR))
    assert np.abs(pixels.permute(1, 2, 0).numpy().astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.5])
def test_rescaling_takes_each_mask_pixel_from_the_nearest_source_pixel(scale):
    """Nearest-neighbour (torchvision's NEAREST: source index floor(i * in / out)), never a blend of ids."""
    mask = torch.from_numpy(np.random.default_rng(2).choice([0, 7, 200], size=(1, 12, 16)).astype(np.uint8))
    _, resized = rescale(torch.zeros(3, 12, 16, dtype=torch.uint8), mask, scale)
    height, width = resized.shape[-2:]
    rows = np.floor(np.arange(height) * 12 / height).astype(int)
    columns = np.floor(np.arange(width) * 16 / width).astype(int)
    assert np.array_equal(resized[0].numpy(), mask[0].numpy()[np.ix_(rows, columns)])


def test_multiclass_foreground_is_every_pixel_of_one_present_class():
    mask = torch.ones(1, 6, 7, dtype=torch.uint8)  # class 0 (carried as 1), and ignore (0) in one corner
    mask[0, 0, 0] = 0
    mask[0, 2, 3:5] = 4  # class 3
    expected = {value: {tuple(p) for p in np.argwhere(mask[0].numpy() == value)} for value in (1, 4)}
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        found = {tuple(p) for p in foreground_pixels(mask, "multiclass").tolist()}
        value = next(value for value, pixels in expected.items() if found == pixels)
        seen.add(value)
    assert seen == {1, 4}  # both classes chosen, each with all of its pixels and nothing else
    empty = foreground_pixels(torch.zeros(1, 4, 4, dtype=torch.uint8), "multiclass")
    assert empty.shape == (0, 2) and empty.dtype == torch.int64


@pytest.mark.parametrize(("row", "column", "top", "left"), [(32, 40, 24, 32), (2, 3, 0, 0), (60, 62, 48, 48)])
def test_a_foreground_crop_is_centred_on_the_pixel_clamped_inside_the_photo(row, column, top, left):
    rows, columns = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    where = torch.stack([rows, columns]).to(torch.uint8)  # each pixel holds its own row and column
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, row, column] = 1
    pixels, cut = random_crop(where, mask, 16, 1.0, "binary")
    assert (int(pixels[0, 0, 0]), int(pixels[1, 0, 0])) == (top, left)
    assert cut[0, row - top, column - left] == 1


def test_foreground_fraction_is_the_share_of_crops_centred_on_foreground():
    """One foreground pixel in a large photo: a random crop almost never holds it, a centred one always."""
    torch.manual_seed(0)
    mask = torch.zeros(1, 200, 200, dtype=torch.uint8)
    mask[0, 100, 100] = 1
    hits = sum(
        int(random_crop(torch.zeros(1, 200, 200), mask, 16, 0.5, "binary")[1].sum()) for _ in range(300)
    )
    assert 110 < hits < 190  # about half of 300 (a random window holds the pixel about 0.6% of the time)
