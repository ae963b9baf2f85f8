"""Dataset "synthetic": deterministic, conformant, hard for a global threshold, learnable from texture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

import segkit
from segkit.errors import UsageError
from segkit.testing import check_dataset
from segkit_builtin.synthetic import (
    DEFAULTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_FOREGROUND_FRACTION,
    SyntheticShapes,
    build_synthetic_dataset,
    generate_sample,
    value_noise,
)


def dice(prediction: np.ndarray, mask: np.ndarray) -> float:
    """Dice of two bool masks; 1.0 when both are empty."""
    total = prediction.sum() + mask.sum()
    return 1.0 if total == 0 else float(2 * (prediction & mask).sum() / total)


def equal_items(first: dict, second: dict) -> bool:
    return (
        first["name"] == second["name"]
        and torch.equal(first["image"], second["image"])
        and torch.equal(first["mask"], second["mask"])
    )


# -- registration and the contract ---------------------------------------------------------------
def test_registered_with_training_defaults():
    component = segkit.get_component("dataset", "synthetic")
    defaults = component.metadata["defaults"]
    assert defaults is DEFAULTS
    for key in ("image_size", "epochs", "batch_size", "learning_rate"):
        assert isinstance(defaults[key], (int, float)) and defaults[key] > 0, key
    assert defaults["model_options"]["unet"] == {"base_channels": 16}


@pytest.mark.parametrize("split, size", [("train", 512), ("valid", 128), ("test", 128)])
def test_each_split_conforms_and_has_its_default_size(split, size):
    dataset = segkit.create_dataset("synthetic", split=split)
    assert isinstance(dataset, SyntheticShapes) and len(dataset) == size
    check_dataset(dataset, max_items=3)
    item = dataset[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and item["mask"].dtype == torch.float32
    assert item["name"] == f"synthetic-{split}-00000"
    assert dataset[-1]["name"] == f"synthetic-{split}-{size - 1:05d}"


def test_sizes_and_length_options():
    assert len(build_synthetic_dataset(split="train", train_size=40)) == 40
    assert len(build_synthetic_dataset(split="valid", valid_size=7)) == 7
    assert len(build_synthetic_dataset(split="test", test_size=0)) == 0
    assert len(build_synthetic_dataset(split="test", length=9, test_size=3)) == 9
    dataset = build_synthetic_dataset(split="valid", length=5)
    with pytest.raises(IndexError, match="5 items"):
        dataset[5]
    assert dataset[-5]["name"] == "synthetic-valid-00000"


def test_augmented_training_items_still_conform():
    dataset = build_synthetic_dataset(split="train", image_size=32, length=4, augment="default")
    check_dataset(dataset)
    assert dataset[0]["image"].shape == (3, 32, 32)


def test_images_are_imagenet_normalised_and_say_so():
    dataset = build_synthetic_dataset(split="valid", length=8)
    assert dataset.normalization == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert dataset.in_memory  # the engine starts no loader worker processes for it
    for index in range(len(dataset)):
        rgb, _ = dataset.raw(index)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        restored = dataset[index]["image"] * std + mean
        # The image goes through uint8 like a photo: within half a grey level of the generated one.
        assert torch.allclose(restored, torch.from_numpy(rgb).permute(2, 0, 1), atol=0.5 / 255 + 1e-5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "validation"}, "'split' must be one of train, valid, test"),
        ({"image_size": 8}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"length": -1}, "length"),
        ({"valid_size": 2.5}, "valid_size"),
        ({"seed": -3}, "seed"),
        ({"colour": "red"}, "colour"),
        ({"augment": "sparkles"}, "sparkles"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(options, message):
    with pytest.raises(UsageError, match=message):
        build_synthetic_dataset(**options)


# -- determinism ---------------------------------------------------------------------------------
def test_same_seed_gives_identical_items_across_instances_and_cache_settings():
    first = build_synthetic_dataset(split="valid", seed=3, length=6)
    second = build_synthetic_dataset(split="valid", seed=3, length=6, cache=False)
    for index in reversed(range(6)):  # order of access must not matter
        assert equal_items(first[index], second[index])
        assert equal_items(first[index], first[index])  # cached copy equals the generated one


def test_changing_a_returned_item_does_not_change_the_cache():
    dataset = build_synthetic_dataset(split="valid", length=2)
    item = dataset[1]
    expected = item["image"].clone()
    item["image"].zero_()
    item["mask"].fill_(1)
    again = dataset[1]
    assert torch.equal(again["image"], expected) and again["mask"].min() == 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10_000))
def test_splits_and_seeds_give_different_images(seed, index):
    images = {split: generate_sample(seed, split, index, (32, 32))[0] for split in ("train", "valid", "test")}
    assert not np.array_equal(images["train"], images["valid"])
    assert not np.array_equal(images["valid"], images["test"])
    assert not np.array_equal(images["train"], images["test"])
    assert not np.array_equal(images["train"], generate_sample(seed + 1, "train", index, (32, 32))[0])
    assert not np.array_equal(images["train"], generate_sample(seed, "train", index + 1, (32, 32))[0])
    again = generate_sample(seed, "train", index, (32, 32))
    assert np.array_equal(images["train"], again[0])


# -- what the images hold ------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    split=st.sampled_from(["train", "valid", "test"]),
    index=st.integers(0, 100_000),
    size=st.integers(16, 96),
)
def test_masks_are_binary_with_both_classes_and_images_are_finite(seed, split, index, size):
    rgb, mask = generate_sample(seed, split, index, (size, size))
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.float32
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    assert mask.shape == (size, size) and mask.dtype == bool
    # Both classes always present: the first object is centred inside, and no object is added that
    # would make the foreground exceed MAX_FOREGROUND_FRACTION.
    fraction = mask.mean()
    assert 0 < fraction <= MAX_FOREGROUND_FRACTION
    item = build_synthetic_dataset(split=split, image_size=size, length=index + 1, seed=seed)[index]
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    assert torch.equal(item["mask"][0].bool(), torch.from_numpy(mask))


def test_images_vary_in_layout_and_grey_level():
    samples = [generate_sample(0, "train", index, (64, 64)) for index in range(48)]
    fractions = np.array([mask.mean() for _, mask in samples])
    means = np.array([rgb.mean() for rgb, _ in samples])
    touching_border = [
        bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()) for _, mask in samples
    ]
    assert fractions.std() > 0.05 and 0.1 < fractions.mean() < 0.4
    assert means.std() > 0.04
    assert 0.2 < np.mean(touching_border) < 0.95
    # Several objects in some images: count connected foreground regions.
    regions = [ndimage.label(mask)[1] for _, mask in samples]
    assert max(regions) >= 3 and min(regions) >= 1


def test_a_global_threshold_fails_but_local_texture_separates():
    """Otsu on the grayscale image, better polarity per image, scores mean per-image Dice <= 0.60 over
    64 valid images; the same threshold on a local texture-energy map does far better, so the label
    is in the texture, where a network can learn it."""
    plain, textured = [], []
    for index in range(64):
        rgb, mask = generate_sample(0, "valid", index, (64, 64))
        gray = rgb2gray(rgb)
        above = gray > threshold_otsu(gray)
        plain.append(max(dice(above, mask), dice(~above, mask)))
        energy = ndimage.gaussian_filter((gray - ndimage.gaussian_filter(gray, 1.5)) ** 2, 2.0)
        textured.append(dice(energy > threshold_otsu(energy), mask))
    assert np.mean(plain) <= 0.60, np.mean(plain)
    assert np.mean(textured) >= 0.75, np.mean(textured)
    assert np.mean(textured) > np.mean(plain) + 0.3


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    cell=st.floats(3.0, 12.0),
    shape=st.sampled_from([(64, 64), (40, 72), (64, 48, 3)]),
)
def test_value_noise_is_smooth_alike_in_every_direction(seed, cell, shape):
    """Lattice noise changes by about 1/cell of its spread from one pixel to the next, along rows and
    columns alike (no blocks or seams), with independent channels."""
    rng = np.random.default_rng(seed)
    steps = np.zeros(2)
    for _ in range(6):
        noise = value_noise(rng, shape, cell)
        assert noise.shape == shape and np.isfinite(noise).all()
        spread = noise.std()
        assert spread > 0.1
        steps += [np.abs(np.diff(noise, axis=axis)).mean() / spread / 6 for axis in (0, 1)]
        if len(shape) == 3:
            correlation = np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]
            assert abs(correlation) < 0.95
    assert steps.max() < 3 / cell + 0.05, steps
    assert steps.max() / steps.min() < 1.5, steps
