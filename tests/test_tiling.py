"""segkit.inference.tiling: sliding-window inference at native resolution, whole-image and band by band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from segkit.inference.forward import model_logits
from segkit.inference.predictor import IMAGENET_NORMALIZATION, TrainedModel, predict_probability
from segkit.inference.tiling import (
    Tiles,
    TilingStats,
    blend_weights,
    normalise_pixels,
    pad_to_size,
    predict_tiled,
    predict_tiled_mask,
    sliding_window_logits,
    sliding_window_rows,
    tile_positions,
    tile_stride,
)
from segkit.task import BinaryTask, MulticlassTask, MultilabelTask

# -- helpers -------------------------------------------------------------------------------------------


def conv_stack(out_channels: int = 1, layers: int = 3, seed: int = 0) -> nn.Module:
    """A fully convolutional model of receptive-field radius ``layers`` (3x3 convolutions, zero padding 1)."""
    torch.manual_seed(seed)
    widths = [3] + [6] * (layers - 1) + [out_channels]
    modules: list[nn.Module] = []
    for index, (inputs, outputs) in enumerate(zip(widths, widths[1:], strict=False)):
        modules.append(nn.Conv2d(inputs, outputs, kernel_size=3, padding=1))
        if index < layers - 1:
            modules.append(nn.Tanh())
    return nn.Sequential(*modules).eval()


def runner(model: nn.Module, seen: list[tuple[int, ...]] | None = None):
    """``model_fn`` for the tiling functions; records the batch shapes it was given in ``seen``."""

    @torch.no_grad()
    def model_fn(batch: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.append(tuple(batch.shape))
        return model(batch)

    return model_fn


def random_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return normalise_pixels(random_pixels(height, width, seed), IMAGENET_NORMALIZATION)


def collect_rows(height: int, width: int, channels: int):
    """An ``emit`` callback that writes bands into a (K, H, W) array, and checks they come in order."""
    out = torch.full((channels, height, width), float("nan"))
    next_row = [0]

    def emit(top: int, logits: torch.Tensor) -> None:
        assert top == next_row[0], "bands must come in order, without gaps or repeats"
        assert logits.dtype == torch.float32 and logits.shape[0] == channels and logits.shape[2] == width
        out[:, top : top + logits.shape[1]] = logits
        next_row[0] = top + logits.shape[1]

    return out, emit, next_row


def banded(model_fn, pixels: np.ndarray, tile: int, **options) -> tuple[torch.Tensor, TilingStats]:
    height, width = pixels.shape[:2]
    channels = options.pop("channels")
    out, emit, next_row = collect_rows(height, width, channels)
    stats = sliding_window_rows(
        model_fn,
        lambda top, bottom: pixels[top:bottom],
        height,
        width,
        tile,
        emit=emit,
        normalization=IMAGENET_NORMALIZATION,
        **options,
    )
    assert next_row[0] == height
    return out, stats


def trained_model(model: nn.Module, task, image_size: int = 64) -> TrainedModel:
    return TrainedModel(
        model=model,
        model_name="conv_stack",
        image_size=image_size,
        normalization=IMAGENET_NORMALIZATION,
        threshold=getattr(task, "threshold", None) or 0.5,
        checkpoint={"in_channels": 3},
        path=Path("unused.pt"),
        device=torch.device("cpu"),
        task=task,
    )


# -- positions -----------------------------------------------------------------------------------------


@given(
    height=st.integers(1, 400),
    width=st.integers(1, 400),
    tile=st.integers(1, 96),
    overlap=st.floats(0, 0.95),
)
def test_positions_cover_every_pixel_inside_the_image_at_the_stated_stride(height, width, tile, overlap):
    positions = tile_positions(height, width, tile, overlap)
    assert positions == tile_positions(height, width, tile, overlap)  # deterministic
    stride = tile_stride(tile, overlap)
    assert stride == max(1, round(tile * (1 - overlap)))
    padded_height, padded_width = max(height, tile), max(width, tile)
    tops, lefts = sorted({top for top, _ in positions}), sorted({left for _, left in positions})
    assert positions == [(top, left) for top in tops for left in lefts]  # row-major grid
    for starts, size in ((tops, padded_height), (lefts, padded_width)):
        assert starts[0] == 0 and starts[-1] + tile == size  # first at the edge, last flush with the other
        steps = np.diff(starts)
        assert all(step == stride for step in steps[:-1])
        assert all(0 < step <= stride for step in steps[-1:])
    covered = np.zeros((padded_height, padded_width), dtype=np.int32)
    for top, left in positions:
        assert 0 <= top and top + tile <= padded_height and 0 <= left and left + tile <= padded_width
        covered[top : top + tile, left : left + tile] += 1
    assert covered.min() >= 1


@given(tile=st.integers(1, 64), overlap=st.floats(0, 0.9), steps=st.integers(0, 5), small=st.integers(1, 64))
def test_exact_multiples_and_small_images(tile, overlap, steps, small):
    stride = tile_stride(tile, overlap)
    size = tile + steps * stride  # an exact multiple: no extra flush tile
    assert [top for top, _ in tile_positions(size, tile, tile, overlap)] == [
        i * stride for i in range(steps + 1)
    ]
    assert tile_positions(min(small, tile), min(small, tile), tile, overlap) == [(0, 0)]


def test_positions_of_a_known_case():
    assert tile_stride(256, 0.25) == 192
    assert sorted({top for top, _ in tile_positions(512, 300, 256, 0.25)}) == [0, 192, 256]
    assert sorted({left for _, left in tile_positions(512, 300, 256, 0.25)}) == [0, 44]


@pytest.mark.parametrize(
    "arguments",
    [(10, 10, 0, 0.25), (10, 10, 8, 1.0), (10, 10, 8, -0.1), (0, 10, 8, 0.25), (10, 10, 8.0, 0.25)],
)
def test_bad_position_arguments_are_refused(arguments):
    with pytest.raises(ValueError):
        tile_positions(*arguments)


# -- blend weights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [1, 2, 7, 32, 64])
def test_blend_weights(tile):
    constant = blend_weights(tile, "constant")
    assert constant.shape == (tile, tile) and constant.dtype == torch.float32 and bool((constant == 1).all())
    gaussian = blend_weights(tile, "gaussian")
    assert gaussian.shape == (tile, tile) and gaussian.dtype == torch.float32
    assert float(gaussian.max()) == pytest.approx(1.0) and float(gaussian.min()) > 0
    assert torch.equal(gaussian, gaussian.flip(0)) and torch.equal(gaussian, gaussian.flip(1))
    assert torch.equal(gaussian, gaussian.T)
    if tile >= 32:
        sigma, centre = tile / 8, (tile - 1) / 2
        row = gaussian[tile // 2]
        expected = np.exp(-((np.arange(tile) - centre) ** 2) / (2 * sigma**2))
        expected = expected / expected.max()
        unclamped = expected > 1e-2
        assert np.allclose(row.numpy()[unclamped], expected[unclamped], rtol=1e-5)
        assert float(gaussian[0, 0]) == pytest.approx(1e-3)  # the floor, far out in the corner


def gaussian_reference(tile: int) -> np.ndarray:
    """nnU-Net's importance map, computed here in float64 from its definition: sigma tile / 8, centred
    on the tile, scaled to a maximum of 1, floored at 1e-3."""
    offsets = np.arange(tile) - (tile - 1) / 2
    along = np.exp(-(offsets**2) / (2 * (tile / 8) ** 2))
    weights = np.outer(along, along)
    return np.maximum(weights / weights.max(), 1e-3)


def blended_reference(tiles: dict, height: int, width: int, weights: np.ndarray) -> np.ndarray:
    """``sum(w * c) / sum(w)`` per pixel over ``{(top, left): c}`` tiles of constant logit ``c``."""
    tile = len(weights)
    summed, weight_sum = np.zeros((height, width)), np.zeros((height, width))
    for (top, left), value in tiles.items():
        summed[top : top + tile, left : left + tile] += weights * value
        weight_sum[top : top + tile, left : left + tile] += weights
    return summed / weight_sum


# A 48x48 image in 32-pixel tiles at overlap 0.5: tiles at rows and columns 0 and 16, four of them, each
# giving its own constant logit. Every pixel of the central 16x16 square is covered by all four.
TILE, SIDE = 32, 48
TILE_LOGITS = {(0, 0): 1.0, (0, 16): 5.0, (16, 0): -3.0, (16, 16): 10.0}


def tile_code_image() -> np.ndarray:
    """(H, W, 3) float pixels whose channel 0 at each tile's top-left corner holds that tile's logit."""
    pixels = np.zeros((SIDE, SIDE, 3), np.float32)
    for (top, left), value in TILE_LOGITS.items():
        pixels[top, left, 0] = value
    return pixels


def constant_per_tile(batch: torch.Tensor) -> torch.Tensor:
    """Each tile's logits: two channels, ``c`` and ``-2c``, ``c`` read from the tile's top-left pixel
    (so the logits do not depend on how tiles are batched or ordered)."""
    value = batch[:, :1, :1, :1]
    return torch.cat([value, -2 * value], dim=1).expand(-1, -1, *batch.shape[-2:]).clone()


@pytest.mark.parametrize("path", ["whole", "banded"])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_overlapping_tiles_are_mixed_with_the_blend_weights(blend, path):
    """The stitched value is the weight-normalised mix of the tiles' logits with the weights the blend
    names, computed here independently; gaussian differs from the plain average where tiles overlap."""
    pixels = tile_code_image()
    if path == "whole":
        image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
        stitched = sliding_window_logits(constant_per_tile, image, TILE, 0.5, blend=blend, batch_size=3)
    else:
        stitched, emit, _ = collect_rows(SIDE, SIDE, 2)
        sliding_window_rows(
            constant_per_tile, lambda top, bottom: pixels[top:bottom], SIDE, SIDE, TILE, 0.5, blend, 3, emit
        )
    assert tile_positions(SIDE, SIDE, TILE, 0.5) == list(TILE_LOGITS)
    weights = gaussian_reference(TILE) if blend == "gaussian" else np.ones((TILE, TILE))
    expected = blended_reference(TILE_LOGITS, SIDE, SIDE, weights)
    np.testing.assert_allclose(stitched[0].numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(stitched[1].numpy(), -2 * expected, rtol=0, atol=1e-5)
    plain = blended_reference(TILE_LOGITS, SIDE, SIDE, np.ones((TILE, TILE)))
    gap = float(np.abs(expected - plain)[16:32, 16:32].max())
    assert gap > 1.0 if blend == "gaussian" else gap == 0.0
    # Where one tile alone covers a pixel, its own logit comes out whatever the weights.
    assert stitched[0, 0, 0] == pytest.approx(1.0) and stitched[0, SIDE - 1, SIDE - 1] == pytest.approx(10.0)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_predict_tiled_and_its_mask_blend_as_asked(blend):
    """``predict_tiled``'s and ``predict_tiled_mask``'s ``blend`` reach the stitching: binary
    probabilities are the sigmoid of the reference mix of each tile's constant logit."""

    class ConstantPerTile(nn.Module):
        def forward(self, batch):
            return constant_per_tile(batch)[:, :1] - 5.5  # logits -5.5 .. 7.5, none mixing to 0

    trained = trained_model(ConstantPerTile(), BinaryTask(0.5))
    trained.normalization = {"mean": [0.0] * 3, "std": [1 / 255] * 3}  # the model sees raw pixel values
    codes = {position: value + 3 for position, value in TILE_LOGITS.items()}  # 4, 8, 0, 13: uint8
    pixels = np.zeros((SIDE, SIDE, 3), np.uint8)
    for (top, left), value in codes.items():
        pixels[top, left, 0] = value
    weights = gaussian_reference(TILE) if blend == "gaussian" else np.ones((TILE, TILE))
    logits = blended_reference(codes, SIDE, SIDE, weights) - 5.5
    probability = predict_tiled(trained, Image.fromarray(pixels), TILE, 0.5, blend)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-logits)), rtol=0, atol=1e-5)
    mask = predict_tiled_mask(trained, pixels, TILE, 0.5, blend)
    assert np.array_equal(mask, logits > 0)  # the two blends' masks differ on 329 of 2304 pixels


def test_unknown_blend_mode_is_refused():
    with pytest.raises(ValueError, match="blend"):
        blend_weights(8, "triangle")


# -- padding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 3), (9, 31), (32, 32)])
def test_reflect_padding_mirrors_as_numpy_does_even_past_the_image(size):
    image = torch.randn(3, *size, generator=torch.Generator().manual_seed(0))
    padded = pad_to_size(image, 32, 32, "reflect")
    if min(size) > 1:
        expected = np.pad(image.numpy(), ((0, 0), (0, 32 - size[0]), (0, 32 - size[1])), mode="reflect")
    else:  # a single pixel has nothing to mirror: numpy repeats it, as does segkit
        expected = np.pad(image.numpy(), ((0, 0), (0, 32 - size[0]), (0, 32 - size[1])), mode="edge")
    assert np.array_equal(padded.numpy(), expected)
    zeros = pad_to_size(image, 32, 32, "zeros")
    assert zeros.shape == (3, 32, 32) and torch.equal(zeros[:, : size[0], : size[1]], image)
    zeros[:, : size[0], : size[1]] = 0
    assert not zeros.any()


# -- one tile: the model run once ------------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_an_image_of_exactly_one_tile_is_the_model_run_once(blend):
    model = conv_stack(out_channels=2)
    image = random_image(32, 32)
    tiled = sliding_window_logits(runner(model), image, 32, blend=blend)
    with torch.no_grad():
        whole = model(image[None])[0]
    assert tiled.shape == (2, 32, 32) and tiled.dtype == torch.float32
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("size", [(20, 27), (5, 32), (32, 3), (1, 1)])
def test_an_image_smaller_than_a_tile_is_the_model_run_on_it_padded_then_cropped(size, pad_mode):
    model = conv_stack(out_channels=1)
    height, width = size
    image = random_image(height, width, seed=1)
    tiled = sliding_window_logits(runner(model), image, 32, blend="gaussian", pad_mode=pad_mode)
    with torch.no_grad():
        whole = model(pad_to_size(image, 32, 32, pad_mode)[None])[0, :, :height, :width]
    assert tiled.shape == (1, height, width)
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-6)
    banded_logits, _ = banded(
        runner(model), random_pixels(height, width, seed=1), 32, channels=1, pad_mode=pad_mode
    )
    assert torch.allclose(banded_logits, whole, rtol=0, atol=1e-6)


# -- no seams ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("size", [(70, 101), (32, 77), (96, 96)])
def test_with_a_margin_of_the_receptive_field_tiled_output_equals_whole_image_output(blend, size):
    radius = 3
    model = conv_stack(out_channels=2, layers=radius)
    image = random_image(*size, seed=2)
    with torch.no_grad():
        whole = model(image[None])[0]
    # tile 32, overlap 0.25: stride 24, tiles overlap by 8 > 2 * radius pixels
    tiled = sliding_window_logits(runner(model), image, 32, 0.25, blend=blend, margin=radius)
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-5)
    rows, _ = banded(
        runner(model), random_pixels(*size, seed=2), 32, overlap=0.25, blend=blend, margin=radius, channels=2
    )
    assert torch.allclose(rows, whole, rtol=0, atol=1e-5)


def test_without_a_margin_zero_padding_at_tile_borders_leaves_seams():
    """Why ``margin`` exists: the plain weighted average mixes in border pixels of the tiles."""
    model = conv_stack(out_channels=1, layers=3)
    image = random_image(70, 101, seed=2)
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = sliding_window_logits(runner(model), image, 32, 0.25, blend="constant")
    assert float((tiled - whole).abs().max()) > 1e-3


@pytest.mark.parametrize("margin, overlap", [(5, 0.25), (16, 0.9), (-1, 0.25)])
def test_a_margin_the_overlap_cannot_cover_is_refused(margin, overlap):
    # stride 24 leaves 8 pixels of overlap: a margin of 5 would leave pixels with no weight
    with pytest.raises(ValueError, match="margin"):
        sliding_window_logits(runner(conv_stack()), random_image(70, 70), 32, overlap, margin=margin)


def test_a_margin_is_harmless_where_one_tile_spans_the_axis():
    model = conv_stack(out_channels=1)
    image = random_image(32, 70, seed=3)  # one row of tiles: the margin only trims left and right
    tiled = sliding_window_logits(runner(model), image, 32, 0.25, margin=3)
    with torch.no_grad():
        whole = model(image[None])[0]
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-5)


# -- band by band ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(100, 75), (20, 75), (75, 20), (32, 32), (129, 33)])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_band_by_band_equals_the_whole_image_path(channels, size, blend):
    model = conv_stack(out_channels=channels, seed=channels)
    pixels = random_pixels(*size, seed=4)
    whole = sliding_window_logits(
        runner(model), normalise_pixels(pixels, IMAGENET_NORMALIZATION), 32, 0.3, blend=blend, batch_size=3
    )
    rows, stats = banded(runner(model), pixels, 32, overlap=0.3, blend=blend, batch_size=3, channels=channels)
    assert rows.shape == whole.shape == (channels, *size)
    assert torch.allclose(rows, whole, rtol=0, atol=1e-5)
    assert stats.tiles == len(tile_positions(*size, 32, 0.3))


def test_the_band_buffers_do_not_grow_with_the_height():
    tile, overlap, width, channels = 32, 0.25, 90, 3
    stride = tile_stride(tile, overlap)
    model_fn = runner(conv_stack(out_channels=channels))
    found = []
    for height in (70, 300):
        _, stats = banded(model_fn, random_pixels(height, width), tile, overlap=overlap, channels=channels)
        found.append(stats)
        rows, band_width = stats.accumulator_shape[1:]
        assert stats.accumulator_shape[0] == channels and band_width == width
        assert np.prod(stats.accumulator_shape) <= (tile + stride) * width * channels
        assert stats.input_band_shape == (3, tile, width)
    assert found[0].accumulator_shape == found[1].accumulator_shape
    assert found[0].peak_float_elements == found[1].peak_float_elements
    assert found[1].bands > found[0].bands and found[1].tiles > found[0].tiles


def test_read_rows_must_return_the_rows_asked_for():
    def read_rows(top, bottom):
        return np.zeros((bottom - top + 1, 40, 3), np.uint8)

    with pytest.raises(ValueError, match="read_rows"):
        sliding_window_rows(runner(conv_stack()), read_rows, 60, 40, 32, emit=lambda top, logits: None)


def test_a_model_that_changes_the_tile_size_is_refused():
    with pytest.raises(ValueError, match="model_fn"):
        sliding_window_logits(lambda batch: batch[:, :1, :16, :16], random_image(40, 40), 32)


# -- batching ----------------------------------------------------------------------------------------------


def test_batch_size_changes_nothing_but_the_batches():
    model = conv_stack(out_channels=2)
    pixels = random_pixels(90, 70, seed=5)
    image = normalise_pixels(pixels, IMAGENET_NORMALIZATION)
    results = {}
    for batch_size in (1, 4):
        seen: list[tuple[int, ...]] = []
        results[batch_size] = sliding_window_logits(runner(model, seen), image, 32, batch_size=batch_size)
        assert all(shape[0] <= batch_size and shape[1:] == (3, 32, 32) for shape in seen)
        assert sum(shape[0] for shape in seen) == len(tile_positions(90, 70, 32, 0.25))
        assert max(shape[0] for shape in seen) == batch_size
        seen.clear()
        rows, stats = banded(runner(model, seen), pixels, 32, batch_size=batch_size, channels=2)
        assert all(shape[0] <= batch_size for shape in seen) and stats.batches == len(seen)
        assert torch.allclose(rows, results[batch_size], rtol=0, atol=1e-5)
    assert torch.allclose(results[1], results[4], rtol=0, atol=1e-5)


# -- with a trained model -------------------------------------------------------------------------------


TASKS = {
    "binary": BinaryTask(0.4),
    "multiclass": MulticlassTask(("background", "cat", "dog")),
    "multilabel": MultilabelTask(("a", "b"), threshold=0.6),
}


@pytest.mark.parametrize("kind", TASKS)
@pytest.mark.parametrize("tta", [False, True])
def test_predict_tiled_and_its_mask(kind, tta):
    task = TASKS[kind]
    model = conv_stack(out_channels=task.out_channels, seed=7)
    trained = trained_model(model, task)
    pixels = random_pixels(83, 61, seed=6)
    image = Image.fromarray(pixels)
    probabilities = predict_tiled(trained, image, 32, 0.25, "gaussian", tta=tta, batch_size=2)
    logits = sliding_window_logits(
        lambda batch: model_logits(model, batch, tta), normalise_pixels(pixels, trained.normalization), 32
    )
    expected = task.probabilities(logits[None])[0].numpy()
    if kind == "binary":
        assert probabilities.shape == (83, 61)
        expected = expected[0]
    else:
        assert probabilities.shape == (task.out_channels, 83, 61)
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities, expected, atol=1e-6)

    stats = TilingStats()
    mask = predict_tiled_mask(trained, image, 32, 0.25, "gaussian", tta=tta, batch_size=2, stats=stats)
    assert stats.tiles == len(tile_positions(83, 61, 32, 0.25))
    decided = task.predict_mask(logits[None])[0].numpy()
    if kind == "binary":
        assert mask.shape == (83, 61) and mask.dtype == bool
    elif kind == "multiclass":
        assert mask.shape == (83, 61) and mask.dtype == np.uint8
    else:
        assert mask.shape == (2, 83, 61) and mask.dtype == bool
    assert np.array_equal(mask, decided.astype(mask.dtype))


def test_predict_tiled_mask_takes_the_task_to_decide_with():
    model = conv_stack(out_channels=1, seed=8)
    trained = trained_model(model, BinaryTask(0.5))
    image = Image.fromarray(random_pixels(40, 50, seed=8))
    low = predict_tiled_mask(trained, image, 32, task=BinaryTask(0.05))
    high = predict_tiled_mask(trained, image, 32, task=BinaryTask(0.95))
    assert low.sum() >= predict_tiled_mask(trained, image, 32).sum() >= high.sum()
    assert low.sum() > high.sum()


def test_predict_tiled_on_one_tile_at_the_network_size_is_predict_probability():
    """Where the photo is the network's size, resizing is a no-op and one tile is the whole photo."""
    model = conv_stack(out_channels=1, seed=9)
    trained = trained_model(model, BinaryTask(), image_size=64)
    image = Image.fromarray(random_pixels(64, 64, seed=9))
    assert np.allclose(predict_tiled(trained, image, 64), predict_probability(trained, image), atol=1e-6)


def test_predict_tiled_mask_of_a_greyscale_array():
    model = nn.Conv2d(1, 1, 3, padding=1).eval()
    trained = trained_model(model, BinaryTask())
    trained.normalization = {"mean": [0.5], "std": [0.25]}
    pixels = random_pixels(50, 40)[:, :, 0]
    mask = predict_tiled_mask(trained, pixels, 32)
    whole = predict_tiled(trained, Image.fromarray(pixels), 32)
    assert mask.shape == (50, 40) and np.array_equal(mask, whole > 0.5)


# -- what the mutation run found untested (each value against the model run whole, or a hand count) -------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tile_positions(0, 5, 4, 0.25), r"^height must be an integer of at least 1, got 0$"),
        (lambda: tile_positions(5, 0, 4, 0.25), r"^width must be an integer of at least 1, got 0$"),
        (lambda: tile_stride(0, 0.25), r"^tile must be an integer of at least 1, got 0$"),
        (lambda: tile_stride(4, 1.0), r"^overlap must be a number in \[0, 1\), got 1\.0$"),
        (lambda: tile_stride(4, False), r"^overlap must be a number in \[0, 1\), got False$"),
        (lambda: blend_weights(0), r"^tile must be an integer of at least 1, got 0$"),
        (lambda: blend_weights(4, "box"), r"^blend must be one of gaussian, constant, got 'box'$"),
        (lambda: sliding_window_logits(torch.neg, random_image(8, 8), 0), r"^tile must be an integer"),
        (
            lambda: sliding_window_logits(torch.neg, random_image(8, 8), 4, margin=True),
            r"^margin must be a non-negative integer, got True$",
        ),
        (
            lambda: sliding_window_logits(torch.neg, random_image(8, 8), 4, margin=1.5),
            r"^margin must be a non-negative integer, got 1\.5$",
        ),
        (
            lambda: pad_to_size(torch.zeros(1, 2, 2), 4, 4, "edge"),
            r"^pad_mode must be one of reflect, zeros, got 'edge'$",
        ),
        (
            lambda: normalise_pixels(np.zeros((2, 3, 4, 5), np.uint8), None),
            r"^pixels must be shaped \(rows, W, C\) or \(rows, W\), got \(2, 3, 4, 5\)$",
        ),
    ],
)
def test_bad_arguments_are_refused_with_what_was_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("size", "margin", "refused"),
    [
        ((28, 16), 3, True),  # two rows of tiles, one column: 4 px of overlap cannot hold 2 x 3
        ((16, 28), 3, True),  # one row, two columns
        ((16, 16), 3, False),  # one tile: every side is the image's, the margin zeroes nothing
        ((28, 16), 2, False),  # an overlap of exactly 2 x margin is enough
    ],
)
def test_a_margin_needs_the_overlap_wherever_tiles_meet(size, margin, refused):
    model = conv_stack(layers=2)
    image = random_image(*size)
    call = lambda: sliding_window_logits(runner(model), image, 16, 0.25, margin=margin)  # noqa: E731
    if refused:
        message = (
            rf"^a margin of {margin} pixels needs tiles overlapping by at least {2 * margin} pixels; "
            r"tile 16 at overlap 0\.25 overlaps by 4 \(raise the overlap\)$"
        )
        with pytest.raises(ValueError, match=message):
            call()
    else:
        assert torch.allclose(call(), model(image[None])[0], atol=1e-5)


def test_a_margin_zeroes_the_inner_side_of_tiles_one_pixel_from_the_border():
    """Stride 1: tiles start at rows and columns 1, whose top and left sides lie inside the image."""
    model = conv_stack(layers=1, seed=3)
    image = random_image(7, 9, seed=3)
    tiled = sliding_window_logits(runner(model), image, 4, 0.75, margin=1)
    assert torch.allclose(tiled, model(image[None])[0], atol=1e-5)


def test_default_blend_and_pad_mode_are_gaussian_and_reflect():
    assert torch.equal(blend_weights(8), blend_weights(8, "gaussian"))
    image = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(pad_to_size(image, 5, 5), pad_to_size(image, 5, 5, "reflect"))
    # large enough already: the image itself, whatever the mode
    assert pad_to_size(image, 2, 3, "zeros") is image and pad_to_size(image, 2, 2, "zeros") is image


def test_read_only_pixels_are_copied_not_shared():
    """PIL's arrays are read-only: a tensor sharing their memory could be written through (torch
    warns about it). Float grey pixels taken as they are would otherwise be the array itself."""
    pixels = np.random.default_rng(0).random((4, 5), dtype=np.float32)
    pixels.flags.writeable = False
    values = normalise_pixels(pixels, None)
    assert values.shape == (1, 4, 5) and torch.equal(values[0], torch.from_numpy(pixels.copy()))
    assert not np.shares_memory(values.numpy(), pixels)


@pytest.mark.parametrize(
    ("model_fn", "size", "message"),
    [
        (lambda batch: batch.numpy(), (16, 16), r"to \(1, K, 16, 16\) logits, got ndarray$"),
        (lambda batch: batch[:, 0], (16, 16), r"to \(1, K, 16, 16\) logits, got \(1, 16, 16\)$"),
        (lambda batch: batch[:1, :1], (16, 28), r"^model_fn must map \(2, 3, 16, 16\) tiles to \(2, K"),
    ],
)
def test_a_model_giving_other_than_one_logit_map_per_tile_is_refused(model_fn, size, message):
    with pytest.raises(ValueError, match=message):
        sliding_window_logits(model_fn, random_image(*size), 16, 0.25)


def test_a_band_of_the_wrong_height_is_named_with_its_rows():
    pixels = random_pixels(40, 10)

    def read_rows(top, bottom):
        return pixels[top:bottom] if top == 0 else pixels[top : bottom - 1]

    message = r"^read_rows\(12, 28\) must return 16 rows of 10 pixels .* got shape \(15, 10, 3\)$"
    with pytest.raises(ValueError, match=message):
        sliding_window_rows(runner(conv_stack()), read_rows, 40, 10, 16, emit=lambda top, logits: None)


def test_peak_float_elements_of_one_tile_is_every_buffer_held_at_once():
    """One 8x8 tile, 3 input channels, 1 output: accumulator 64 + weights 64 + input band 192 + the
    batch's tiles 192 + its logits 64 = 576 floats at most (later, the finished rows replace the batch)."""
    _, stats = banded(runner(conv_stack(out_channels=1)), random_pixels(8, 8), 8, channels=1)
    assert stats.peak_float_elements == 64 + 64 + 3 * 64 + 3 * 64 + 64


def test_tiles_stitch_a_batch_without_test_time_augmentation_by_default():
    model = conv_stack(out_channels=2, seed=4)
    images = torch.stack([random_image(16, 16, seed=1), random_image(16, 16, seed=2)])
    # one tile per image: the model's own output; flipping (tta) would differ for its lopsided kernels
    assert torch.allclose(Tiles(16).logits(model, images), model(images), atol=1e-6)
    assert not torch.allclose(Tiles(16).logits(model, images, tta=True), model(images), atol=1e-3)
    pointwise = nn.Conv2d(3, 2, 1).eval()  # no reach: tiles of any size give the whole-image output
    wide = torch.stack([random_image(30, 41, seed=1), random_image(30, 41, seed=2)])
    for blend in ("gaussian", "constant"):
        with torch.no_grad():
            assert torch.allclose(Tiles(8, 0.5, blend).logits(pointwise, wide), pointwise(wide), atol=1e-5)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_predict_tiled_with_a_margin_is_the_whole_photo_pass(kind):
    task = TASKS[kind]
    model = conv_stack(out_channels=task.out_channels, layers=3, seed=11)
    trained = trained_model(model, task)
    pixels = random_pixels(70, 90, seed=11)
    with torch.no_grad():
        logits = model(normalise_pixels(pixels, trained.normalization)[None])
    probabilities = task.probabilities(logits)[0].numpy()
    found = predict_tiled(trained, Image.fromarray(pixels), 32, 0.25, margin=3)
    assert np.allclose(found, probabilities[0] if kind == "binary" else probabilities, atol=1e-5)
    mask = predict_tiled_mask(trained, Image.fromarray(pixels), 32, 0.25, margin=3)
    assert np.array_equal(mask, task.predict_mask(logits)[0].numpy().astype(mask.dtype))


def test_predict_tiled_pads_a_small_photo_as_asked():
    model = conv_stack(out_channels=1, layers=3, seed=12)
    pixels = random_pixels(20, 27, seed=12)
    normalised = normalise_pixels(pixels, IMAGENET_NORMALIZATION)
    with torch.no_grad():  # zeros below and right of the photo, up to the tile, then cropped back
        logits = model(torch.nn.functional.pad(normalised, (0, 5, 0, 12))[None])[..., :20, :27]
    probabilities = torch.sigmoid(logits)[0, 0].numpy()
    task = BinaryTask(float(np.median(probabilities)))  # a mask of about half the pixels
    trained = trained_model(model, task)
    found = predict_tiled(trained, pixels, 32, pad_mode="zeros")
    assert np.allclose(found, probabilities, atol=1e-5)
    assert not np.allclose(predict_tiled(trained, pixels, 32), probabilities, atol=1e-3)  # reflect
    mask = predict_tiled_mask(trained, pixels, 32, pad_mode="zeros")
    assert np.array_equal(mask, task.predict_mask(logits)[0].numpy())
    assert not np.array_equal(predict_tiled_mask(trained, pixels, 32), mask)


def test_a_model_whose_channels_do_not_fit_the_task_is_refused():
    trained = trained_model(conv_stack(out_channels=2), TASKS["binary"])
    pixels = random_pixels(40, 40)
    for predict in (predict_tiled, predict_tiled_mask):
        with pytest.raises(ValueError, match=r"to \(\d, 1, 32, 32\) logits, got \(\d, 2, 32, 32\)"):
            predict(trained, pixels, 32)


def test_a_row_source_is_read_band_by_band():
    trained = trained_model(conv_stack(out_channels=1, seed=13), TASKS["binary"])
    pixels = random_pixels(60, 45, seed=13)

    class Rows:
        height, width = pixels.shape[:2]
        asked: list[tuple[int, int]] = []

        def read_rows(self, top, bottom):
            self.asked.append((top, bottom))
            return pixels[top:bottom]

    source = Rows()
    assert np.array_equal(predict_tiled_mask(trained, source, 32), predict_tiled_mask(trained, pixels, 32))
    assert source.asked == [(0, 32), (24, 56), (28, 60)]
    with pytest.raises(
        ValueError, match=r"^image must be a PIL image or an \(H, W\[, C\]\) array, got shape \(5,\)$"
    ):
        predict_tiled_mask(trained, np.zeros(5, np.uint8), 32)


class ClassAtLeft(nn.Module):
    """Logits of ``classes`` classes: the last class on the left half of the photo, class 0 elsewhere."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(images), self.classes, *images.shape[-2:])
        logits[:, -1, :, : images.shape[-1] // 2] = 1
        logits[:, 0, :, images.shape[-1] // 2 :] = 1
        return logits


@pytest.mark.parametrize(("classes", "dtype"), [(256, np.uint8), (257, np.uint16)])
def test_a_multiclass_mask_holds_every_class_id(classes, dtype):
    task = MulticlassTask(tuple(f"c{index}" for index in range(classes)))
    mask = predict_tiled_mask(trained_model(ClassAtLeft(classes), task), random_pixels(8, 8), 8)
    assert mask.dtype == dtype
    assert (mask[:, :4] == classes - 1).all() and (mask[:, 4:] == 0).all()


def test_gaussian_weights_are_computed_in_float64_and_rounded_once():
    for tile in (7, 32, 64, 100):
        offsets = np.arange(tile) - (tile - 1) / 2
        along = np.exp(-(offsets**2) / (2 * (tile / 8) ** 2))
        expected = np.maximum(np.outer(along, along) / along.max() ** 2, 1e-3).astype(np.float32)
        assert np.array_equal(blend_weights(tile).numpy(), expected), tile


def test_tiles_of_one_pixel_are_allowed():
    pointwise = nn.Conv2d(3, 2, 1).eval()
    image = random_image(5, 6)
    with torch.no_grad():
        assert torch.allclose(
            sliding_window_logits(pointwise, image, 1, 0.0), pointwise(image[None])[0], atol=1e-6
        )


def test_tiles_blend_as_asked():
    """A model that answers each tile with its mean: where two tiles overlap, a constant blend gives the
    plain mean of their two answers, a gaussian one leans towards the nearer tile's centre."""

    def tile_mean(batch: torch.Tensor) -> torch.Tensor:
        return batch.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, *batch.shape[-2:])

    images = torch.stack([random_image(8, 12, seed=1), random_image(8, 12, seed=2)])
    for index, image in enumerate(images.numpy()):  # tiles at columns 0-7 and 4-11
        left, right = image[:, :, :8].mean(), image[:, :, 4:].mean()
        expected = np.concatenate([[left] * 4, [(left + right) / 2] * 4, [right] * 4])
        constant = Tiles(8, 0.5, "constant").logits(tile_mean, images)[index, 0]
        assert np.allclose(constant.numpy(), np.broadcast_to(expected, (8, 12)), atol=1e-5)
        gaussian = Tiles(8, 0.5, "gaussian").logits(tile_mean, images)[index, 0]
        assert not np.allclose(gaussian.numpy()[:, 4], (left + right) / 2, atol=1e-3)
