"""segkit.data.transforms and the built-in augmentation pipelines: image and mask move together."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

import segkit
from segkit import plugins
from segkit.data.transforms import (
    FILL,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_sample_transform,
    denormalize,
    resize_and_normalize,
    to_float_and_normalize,
)
from segkit.errors import SegkitError, UnknownComponentError, UsageError
from segkit.plugins import get_host

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


#: The transform types of the built-in pipelines, by what they may do to a mask.
GEOMETRIC = (
    v2.RandomHorizontalFlip,
    v2.RandomVerticalFlip,
    v2.RandomResizedCrop,
    v2.RandomAffine,
    v2.RandomRotation,
    v2.RandomCrop,
    v2.RandomPerspective,
    v2.Resize,
)
COLOUR = (v2.ColorJitter, v2.RandomGrayscale, v2.GaussianBlur, v2.ToDtype, v2.Normalize)


def split_pipeline(name: str, image_size: int) -> tuple[list, list]:
    """The geometric and the colour transforms of the train pipeline ``name`` as segkit builds it
    (through ``build_sample_transform``); fails on a transform of neither kind, so a new one is sorted."""
    pipeline = build_sample_transform(name, image_size, train=True).pipeline
    geometric, colour = [], []
    for transform in pipeline.transforms:
        inner = transform.transforms if isinstance(transform, v2.RandomApply) else [transform]
        if all(isinstance(t, COLOUR) for t in inner):
            colour.append(transform)
        elif all(isinstance(t, GEOMETRIC) for t in inner):
            geometric.append(transform)
        else:
            raise AssertionError(f"{name}: {transform!r} is neither geometric nor colour; sort it here")
    return geometric, colour


def nearest_for_images(transforms: list) -> list:
    """Copies of ``transforms`` that sample images by nearest neighbour too (masks always are), so a
    pixel's colour still says where it came from."""
    copies = copy.deepcopy(transforms)
    for transform in copies:
        if hasattr(transform, "interpolation"):
            transform.interpolation = NEAREST
    return copies


class GeometryUnderTest:
    """A plugin pipeline, ``test_geometry``: the transforms a test sets, then float and normalise."""

    transforms: list = []

    @segkit.hookimpl
    def register_augmentations(self, register):
        register(
            "test_geometry",
            lambda image_size, train: v2.Compose([*GeometryUnderTest.transforms, *to_float_and_normalize()]),
        )


@pytest.fixture
def geometry_pipeline():
    host = get_host()
    host.register_plugin(GeometryUnderTest(), name="test-geometry")
    try:
        yield GeometryUnderTest
    finally:
        host.unregister_plugin("test-geometry")
        GeometryUnderTest.transforms = []


@st.composite
def geometries(draw):
    """Drawn geometric transforms, or those of the built-in train pipelines (image sampling made nearest)."""
    source = draw(st.sampled_from(["drawn", "default", "strong"]))
    if source == "drawn":
        return source, draw(st.lists(geometric_transforms(), min_size=1, max_size=3))
    geometric, _ = split_pipeline(source, draw(st.integers(8, 48)))
    return source, nearest_for_images(geometric)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    labels=label_tables(),
    geometry=geometries(),
    task=st.sampled_from(["binary", "multiclass"]),
    seed=st.integers(0, 10_000),
)
def test_geometric_transforms_keep_image_and_mask_aligned(geometry_pipeline, labels, geometry, task, seed):
    """Through ``build_sample_transform`` (its checks, and for multiclass the id shift that makes an
    invented pixel ignored): every real pixel of the output keeps its own label, and every invented
    one gets the fill (background for binary, ignore for multiclass)."""
    source, transforms = geometry
    geometry_pipeline.transforms = transforms
    if task == "multiclass":  # ids 0..3 and ignore, where the binary table has 0, 1 and ignore
        labels = np.where(labels == 1, (np.arange(labels.size).reshape(labels.shape) % 3) + 1, labels)
        labels = labels.astype(np.uint8)
    height, width = labels.shape
    torch.manual_seed(seed)
    out = build_sample_transform("test_geometry", 8, train=True)(
        coordinate_image(height, width), labels, task
    )
    pixels = (denormalize(out["image"]) * 255).round().long()
    assert pixels.shape[-2:] == out["mask"].shape[-2:]
    real = pixels[2] == 255
    assert bool(((pixels[2] == 0) | real).all()), "image pixels must be real or filled, never blended"
    expected = torch.from_numpy(labels).long()[pixels[1][real], pixels[0][real]]
    mask, ignore = out["mask"][0], out["ignore"][0]
    if task == "binary":
        assert torch.equal(ignore[real], expected == IGNORE_INDEX), (
            f"{source}: ignore does not follow the image"
        )
        assert torch.equal(mask[real].bool(), expected == 1), f"{source}: mask does not follow the image"
        assert not bool(mask[~real].any() or ignore[~real].any()), "invented pixels must be background"
    else:
        assert torch.equal(mask[real], expected), f"{source}: class ids do not follow the image"
        assert bool((mask[~real] == IGNORE_INDEX).all() and ignore[~real].all()), "invented pixels: ignore"
        assert torch.equal(ignore, mask == IGNORE_INDEX)


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
@given(
    labels=label_tables(min_side=6), name=st.sampled_from(["default", "strong"]), seed=st.integers(0, 10_000)
)
def test_colour_transforms_touch_only_the_image(labels, name, seed):
    """The colour transforms of the built-in train pipelines (as ``build_sample_transform`` builds
    them) leave the mask as it was; and a whole pipeline, at a given seed, makes the same mask and
    ignore of the same labels whatever the photo's colours."""
    height, width = labels.shape
    mask = tv_tensors.Mask(torch.from_numpy(labels)[None])
    rng = np.random.default_rng(seed)
    photo = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
    _, colour = split_pipeline(name, 32)
    assert colour, f"{name} has no colour transforms to check"
    torch.manual_seed(seed)
    out = v2.Compose(colour)({"image": tv_tensors.Image(photo), "mask": mask})
    assert torch.equal(out["mask"], mask) and out["mask"].dtype == torch.uint8
    assert not torch.equal(out["image"], photo)  # the image did change (at least its dtype and scale)

    transform = build_sample_transform(name, 32, train=True)
    torch.manual_seed(seed)
    first = transform(photo, labels)
    torch.manual_seed(seed)
    other = transform(torch.full_like(photo, 200), labels)
    assert torch.equal(first["mask"], other["mask"]) and torch.equal(first["ignore"], other["ignore"])


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
