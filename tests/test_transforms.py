"""segkit.transforms and the built-in augmentation pipelines: image and mask move together."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

import segkit
from segkit import plugins
from segkit.errors import SegkitError, UnknownComponentError, UsageError
from segkit.plugins import get_host
from segkit.transforms import (
    FILL,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MASK_FILL,
    build_sample_transform,
    denormalize,
    resize_and_normalize,
)

PIPELINES = ("none", "default", "strong")
NEAREST = InterpolationMode.NEAREST
FAST = settings(max_examples=30, deadline=None)


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """uint8 (3, H, W): red = column, green = row, blue = 255 (marks a real, not invented, pixel)."""
    rows = torch.arange(height, dtype=torch.uint8).view(-1, 1).expand(height, width)
    columns = torch.arange(width, dtype=torch.uint8).view(1, -1).expand(height, width)
    return torch.stack([columns, rows, torch.full((height, width), 255, dtype=torch.uint8)])


@st.composite
def label_tables(draw, min_side=4, max_side=40):
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    values = np.random.default_rng(seed).choice(
        np.array([0, 1, IGNORE_INDEX], dtype=np.uint8), (height, width)
    )
    return values


@st.composite
def geometric_transforms(draw):
    """Every kind of geometric transform the pipelines use (and a few more), with nearest sampling."""
    size = draw(st.integers(4, 48))
    kind = draw(
        st.sampled_from(
            ["hflip", "vflip", "resize", "resized_crop", "affine", "rotation", "crop", "perspective"]
        )
    )
    if kind == "hflip":
        return v2.RandomHorizontalFlip(p=1.0)
    if kind == "vflip":
        return v2.RandomVerticalFlip(p=1.0)
    if kind == "resize":
        return v2.Resize((size, draw(st.integers(4, 48))), interpolation=NEAREST)
    if kind == "resized_crop":
        low = draw(st.floats(0.05, 1.0))
        return v2.RandomResizedCrop(size, scale=(low, 1.0), interpolation=NEAREST)
    if kind == "affine":
        return v2.RandomAffine(
            degrees=draw(st.floats(0, 180)),
            translate=(draw(st.floats(0, 0.5)), draw(st.floats(0, 0.5))),
            scale=(draw(st.floats(0.5, 1.0)), draw(st.floats(1.0, 2.0))),
            shear=draw(st.floats(0, 30)),
            interpolation=NEAREST,
            fill=FILL,
        )
    if kind == "rotation":
        return v2.RandomRotation(
            draw(st.floats(0, 180)), interpolation=NEAREST, expand=draw(st.booleans()), fill=FILL
        )
    if kind == "crop":
        return v2.RandomCrop(size, padding=draw(st.integers(0, 6)), pad_if_needed=True, fill=FILL)
    return v2.RandomPerspective(
        distortion_scale=draw(st.floats(0, 0.9)), p=1.0, interpolation=NEAREST, fill=FILL
    )


@FAST
@given(
    labels=label_tables(),
    transforms=st.lists(geometric_transforms(), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_geometric_transforms_keep_image_and_mask_aligned(labels, transforms, seed):
    height, width = labels.shape
    sample = {
        "image": tv_tensors.Image(coordinate_image(height, width)),
        "mask": tv_tensors.Mask(torch.from_numpy(labels)[None]),
    }
    torch.manual_seed(seed)
    out = v2.Compose(transforms)(sample)
    image, mask = out["image"], out["mask"][0]
    assert image.shape[-2:] == mask.shape
    real = image[2] == 255
    assert bool(((image[2] == 0) | real).all()), "image pixels must be real or filled, never blended"
    columns, rows = image[0].long(), image[1].long()
    expected = torch.from_numpy(labels)[rows[real], columns[real]]
    assert torch.equal(mask[real], expected), "mask does not follow the image"
    assert bool((mask[~real] == MASK_FILL).all()), "invented pixels must be background"


def brightness_coded(labels: np.ndarray) -> torch.Tensor:
    """An image whose grey level encodes the label: background black, ignore grey, foreground white."""
    grey = np.select([labels == 1, labels == IGNORE_INDEX], [255, 128], 0).astype(np.uint8)
    return torch.from_numpy(grey)[None].expand(3, -1, -1).contiguous()


def eroded(region: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels whose whole (2r+1)^2 neighbourhood lies in ``region`` (the image edge counts as outside)."""
    outside = F.pad((~region).float()[None, None], (radius,) * 4, value=1.0)
    return ~(F.max_pool2d(outside, 2 * radius + 1, stride=1)[0, 0] > 0)


@st.composite
def block_labels(draw, image_size):
    """Labels in whole blocks of 16 px (so regions have interiors), on a photo 1-2x the output size."""
    low, high = -(-image_size // 16), 2 * image_size // 16
    rows, columns = draw(st.integers(low, high)), draw(st.integers(low, high))
    seed = draw(st.integers(0, 2**31 - 1))
    cells = np.random.default_rng(seed).choice(
        np.array([0, 1, IGNORE_INDEX], dtype=np.uint8), (rows, columns)
    )
    return np.kron(cells, np.ones((16, 16), dtype=np.uint8))


@FAST
@given(data=st.data(), name=st.sampled_from(PIPELINES), train=st.booleans(), seed=st.integers(0, 10_000))
def test_pipelines_keep_labels_with_their_pixels(data, name, train, seed):
    image_size = data.draw(st.integers(32, 64))
    labels = data.draw(block_labels(image_size))
    transform = build_sample_transform(name, image_size, train=train)
    torch.manual_seed(seed)
    out = transform(brightness_coded(labels), labels)
    grey = denormalize(out["image"]).mean(0)
    foreground = out["mask"][0] == 1
    ignore = out["ignore"][0]
    background = ~foreground & ~ignore
    # Bilinear resampling, rotation and blur spread edges by at most about 4 output pixels.
    regions = [eroded(region, 5) for region in (background, ignore, foreground)]
    for darker, brighter in ((0, 1), (1, 2), (0, 2)):
        if regions[darker].any() and regions[brighter].any():
            assert grey[regions[brighter]].min() > grey[regions[darker]].max(), (
                name,
                train,
                darker,
                brighter,
            )


@FAST
@given(
    name=st.sampled_from(PIPELINES),
    train=st.booleans(),
    image_size=st.integers(8, 48),
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    seed=st.integers(0, 10_000),
)
def test_pipelines_give_the_requested_size_and_binary_masks(name, train, image_size, height, width, seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([0, 1, IGNORE_INDEX], dtype=np.uint8), (height, width))
    image = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
    torch.manual_seed(seed)
    out = build_sample_transform(name, image_size, train=train)(image, labels)
    assert out["image"].shape == (3, image_size, image_size) and out["image"].dtype == torch.float32
    assert type(out["image"]) is torch.Tensor  # plain tensors, not tv_tensors, leave the dataset
    assert torch.isfinite(out["image"]).all()
    assert out["mask"].shape == out["ignore"].shape == (1, image_size, image_size)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert out["ignore"].dtype == torch.bool
    assert not bool((out["mask"].bool() & out["ignore"]).any()), "ignored pixels are not foreground"


@FAST
@given(labels=label_tables(min_side=6), seed=st.integers(0, 10_000))
def test_colour_transforms_touch_only_the_image(labels, seed):
    height, width = labels.shape
    mask = tv_tensors.Mask(torch.from_numpy(labels)[None])
    image = tv_tensors.Image(
        torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8))
    )
    colour = v2.Compose(
        [
            v2.ColorJitter(0.5, 0.5, 0.5, 0.2),
            v2.RandomGrayscale(p=0.5),
            v2.GaussianBlur(5, sigma=(0.1, 2.0)),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
        ]
    )
    torch.manual_seed(seed)
    out = colour({"image": image, "mask": mask})
    assert torch.equal(out["mask"], mask) and out["mask"].dtype == torch.uint8


def test_evaluation_only_resizes_and_normalises():
    labels = np.zeros((30, 50), dtype=np.uint8)
    labels[5:20, 10:30] = 1
    image = torch.randint(0, 256, (3, 30, 50), dtype=torch.uint8)
    outputs = [build_sample_transform(name, 16, train=False)(image, labels) for name in PIPELINES]
    reference = resize_and_normalize(16)(
        {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(torch.from_numpy(labels)[None])}
    )
    for out in outputs:
        assert torch.equal(out["image"], reference["image"].as_subclass(torch.Tensor))
        assert torch.equal(out["mask"], (reference["mask"] == 1).float())


def test_normalisation_constants_and_denormalize():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    image = torch.full((3, 8, 8), 255, dtype=torch.uint8)
    out = build_sample_transform("none", 8, train=False)(image, np.zeros((8, 8), np.uint8))
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]).view(
        3, 1, 1
    )
    assert torch.allclose(out["image"], expected.expand(3, 8, 8), atol=1e-5)
    assert torch.allclose(denormalize(out["image"]), torch.ones(3, 8, 8), atol=1e-5)


def test_train_pipelines_are_random_and_reproducible_by_seed():
    labels = np.zeros((40, 40), dtype=np.uint8)
    labels[:, :13] = 1
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    transform = build_sample_transform("default", 32, train=True)
    torch.manual_seed(3)
    first = transform(image, labels)
    torch.manual_seed(3)
    again = transform(image, labels)
    different = [transform(image, labels)["image"] for _ in range(3)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert any(not torch.equal(first["image"], other) for other in different)


def test_built_in_pipelines_are_registered():
    names = {component.name for component in segkit.list_components("augmentation")}
    assert set(PIPELINES) <= names


def test_none_works_without_the_built_in_pipelines(monkeypatch):
    monkeypatch.setenv("SEGKIT_DISABLE_PLUGINS", "augmentations")
    plugins.reset_host()
    try:
        assert "none" not in {component.name for component in segkit.list_components("augmentation")}
        out = build_sample_transform("none", 8, train=False)(
            torch.zeros(3, 10, 12, dtype=torch.uint8), np.ones((10, 12), np.uint8)
        )
        assert out["image"].shape == (3, 8, 8) and bool(out["mask"].all())
        with pytest.raises(UnknownComponentError, match="augmentation 'default'"):
            build_sample_transform("default", 8, train=True)
    finally:
        monkeypatch.delenv("SEGKIT_DISABLE_PLUGINS")
        plugins.reset_host()


def test_unknown_pipeline_and_bad_sizes_are_usage_errors():
    with pytest.raises(UnknownComponentError, match="Did you mean 'default'"):
        build_sample_transform("defualt", 64, train=True)
    for size in (0, 7, 64.0, True, "64"):
        with pytest.raises(UsageError, match="image_size"):
            build_sample_transform("none", size, train=False)
    with pytest.raises(UsageError, match="augment"):
        build_sample_transform(None, 64, train=False)


def test_mismatched_image_and_labels_are_refused():
    with pytest.raises(ValueError, match="differ"):
        build_sample_transform("none", 8, train=False)(
            torch.zeros(3, 10, 10, dtype=torch.uint8), np.zeros((10, 9), np.uint8)
        )


class ExtraPipelines:
    """A plugin adding pipelines, as a third-party package would."""

    @segkit.hookimpl
    def register_augmentations(self, register):
        register(
            "test_mirror",
            lambda image_size, train: v2.Compose(
                [v2.RandomHorizontalFlip(p=1.0), *resize_and_normalize(image_size).transforms]
            ),
        )
        register("test_no_float", lambda image_size, train: v2.Resize((image_size, image_size)))
        register("test_bilinear_mask", lambda image_size, train: BlurMask(image_size))


class BlurMask:
    """A broken pipeline: it smears the mask, producing values that are no labels."""

    def __init__(self, image_size):
        self.resize = resize_and_normalize(image_size)

    def __call__(self, sample):
        out = self.resize(sample)
        out["mask"] = tv_tensors.Mask(out["mask"] * 3)
        return out


@pytest.fixture
def extra_pipelines():
    host = get_host()
    host.register_plugin(ExtraPipelines(), name="test-extra-pipelines")
    try:
        yield
    finally:
        host.unregister_plugin("test-extra-pipelines")


def test_plugins_can_add_pipelines(extra_pipelines):
    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[:, :4] = 1
    image = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    mirrored = build_sample_transform("test_mirror", 12, train=True)(image, labels)
    plain = build_sample_transform("none", 12, train=False)(image.flip(-1), labels[:, ::-1])
    assert torch.allclose(mirrored["image"], plain["image"]) and torch.equal(mirrored["mask"], plain["mask"])


def test_broken_plugin_pipelines_are_named(extra_pipelines):
    image, labels = torch.zeros(3, 9, 9, dtype=torch.uint8), np.ones((9, 9), np.uint8)
    with pytest.raises(SegkitError, match="'test_no_float' returned a torch.uint8 image"):
        build_sample_transform("test_no_float", 8, train=True)(image, labels)
    with pytest.raises(SegkitError, match=r"'test_bilinear_mask' produced mask values \[3\]"):
        build_sample_transform("test_bilinear_mask", 8, train=True)(image, labels)
