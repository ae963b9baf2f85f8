"""Crops at native resolution (segkit.sampling) and their use through the datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.sampling import Sampling, foreground_pixels, random_crop, rescale
from segkit.transforms import build_sample_transform

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
