"""Tiled (sliding-window) inference at native resolution, for photos far larger than the network's input.

``segkit.inference.predictor.predict_probability`` resizes a photo to the network's square input; a 8000x8000
scan shrunk to 256x256 loses everything small. Here the network runs on ``tile`` x ``tile`` windows
of the photo at its own resolution, and their logits are blended into one map, as MONAI's
``sliding_window_inference`` and nnU-Net's Gaussian-weighted tiles do (the code is segkit's own)::

    logits = sliding_window_logits(model_fn, image, tile=256)          # (K, H, W), in memory at once
    probability = predict_tiled(trained, photo, tile=256)              # like predict_probability
    mask = predict_tiled_mask(trained, photo, tile=256)                # band by band, bounded memory

**Where the tiles go** (``tile_positions``): along each axis, starts ``0, s, 2s, ...`` with the stride
``s = round(tile * (1 - overlap))`` (at least 1), and a last tile flush with the bottom or right edge
(so the last step may be shorter than ``s``); the grid is row-major. No padding is needed unless the
image is smaller than a tile along an axis: then it is padded at the bottom/right up to the tile
(``pad_mode`` "reflect", a mirror repeated as often as needed, or "zeros") and the result cropped back.

**Blending** (``blend_weights``): each pixel's logits are ``sum(w * tile_logits) / sum(w)`` over the
tiles covering it. ``"constant"`` weighs every pixel of a tile alike; ``"gaussian"`` (the default) is
nnU-Net's importance map: a 2-D Gaussian of sigma ``tile / 8`` centred on the tile, scaled to a
maximum of 1 and floored at ``GAUSSIAN_FLOOR`` (1e-3), so tile centres, where the network sees the
most context, dominate, and no pixel has zero weight.

**Exactness: no seams** (``margin``). A network of receptive-field radius ``r`` (e.g. ``r`` stacked
3x3 convolutions) computes, inside a tile, the same value as on the whole image for pixels at least
``r`` pixels from every tile side that lies inside the image; within ``r`` of such a side it sees the
tile's zero padding (or the AnySizeModel's reflect padding) instead of the neighbouring pixels. A
weighted average with nonzero weights there (either blend, ``margin=0``) mixes those values in, so
tiled output differs from whole-image output near tile borders. With ``margin=m`` the outer ``m``
pixels of each tile side get weight zero unless that side lies on the (padded) image border, where the
whole-image run sees the same padding. Every pixel is then a weighted average of values that are all
exact, so **for a model of receptive-field radius r, ``margin >= r`` and tiles overlapping by at least
``2 * margin`` pixels (``tile - stride >= 2 * margin``; checked, a ``ValueError`` otherwise), tiled
output equals whole-image output up to float rounding (1e-5 in the tests)**, with either blend. The
property needs translation equivariance at the tiles' offsets: a network that pools by 2^L is
equivariant only to shifts that are multiples of 2^L, and its receptive field is large (hundreds of
pixels for a 4-level UNet), so for such networks the margin is a quality knob, not a guarantee.

**Bounded memory** (``sliding_window_rows``, ``predict_tiled_mask``): tiles are processed band by
band (all tiles of one row of positions, ``batch_size`` at a time). Rows above the next band's top
are final once a band is done: they are divided by their weight sum and handed to ``emit(top,
logits)`` (``predict_tiled_mask`` turns them into mask rows at once), and the rest of the float
accumulator is shifted up. The float buffers are therefore one band: the accumulator ``(K, tile, W)``,
its weight sum ``(tile, W)``, the normalised input band ``(C, tile, W)``, one batch of tiles and
the rows just finished, whatever the height; the photo stays uint8 (``read_rows(top, bottom)`` returns
its rows ``(rows, W, C)``, normalised band by band), and the output is the mask itself (bool or uint8).
Per pixel, tiles are added in the same order as in ``sliding_window_logits``, so both give the same
logits (to float rounding: only how tiles are batched differs). ``TilingStats`` records the buffer
shapes.

**Measured** (``benchmarks/test_tiling.py``; ``predict_tiled_mask`` of a binary UNet with
``base_channels=4``, tile 256, overlap 0.25, Gaussian blend, batch 4, on a 2-core AMD EPYC CPU, 2
torch threads, each size in a fresh process; peak RSS is the process's ``ru_maxrss``, which includes
the ~0.3 GB of Python, torch and the model, the uint8 photo and the output mask):

- 2000x2000 (121 tiles): 11.6 s; peak RSS 815 MB, of which 773 MB were there before the call (Python,
  torch, segkit and its plugins, the model, the 12 MB photo): the call added 42 MB (the 4 MB mask,
  14 MB of band float buffers, one batch's activations);
- 8000x8000 (1764 tiles): 173 s; peak RSS 1115 MB, 957 MB before the call (the photo is 192 MB): the
  call added 158 MB (the 64 MB mask, 53 MB of band float buffers, one batch's activations).

The time is the network's (about 0.1 s per tile here; the machine was shared, load ~5 on 2 cores).

A float32 ``(3, H, W)`` input alone would be 48 MB at 2000x2000 and 768 MB at 8000x8000.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segkit.inference.forward import input_logits, model_logits

if TYPE_CHECKING:  # segkit.inference.predictor imports much of segkit: loaded lazily where it is used
    from segkit.inference.predictor import TrainedModel
    from segkit.task import Task

__all__ = [
    "BLEND_MODES",
    "PAD_MODES",
    "GAUSSIAN_FLOOR",
    "GAUSSIAN_SIGMA_SCALE",
    "TilingStats",
    "tile_stride",
    "axis_positions",
    "tile_positions",
    "blend_weights",
    "pad_to_size",
    "normalise_pixels",
    "sliding_window_logits",
    "sliding_window_rows",
    "predict_tiled",
    "predict_tiled_mask",
]

BLEND_MODES = ("gaussian", "constant")
PAD_MODES = ("reflect", "zeros")
#: nnU-Net's Gaussian importance map: sigma = tile * GAUSSIAN_SIGMA_SCALE, max 1, floored here.
GAUSSIAN_SIGMA_SCALE = 1 / 8
GAUSSIAN_FLOOR = 1e-3

#: ``model_fn(batch (N, C, tile, tile)) -> logits (N, K, tile, tile)``
ModelFn = Callable[[torch.Tensor], torch.Tensor]
#: ``read_rows(top, bottom) -> (bottom - top, W, C) or (bottom - top, W)`` pixels (numpy or torch)
ReadRows = Callable[[int, int], Any]
#: ``emit(top, logits (K, rows, W) float32)``: image rows ``top .. top + rows`` are final
Emit = Callable[[int, torch.Tensor], None]


@dataclass
class TilingStats:
    """What a band-by-band pass did and the largest float buffers it held (for tests and benchmarks)."""

    tiles: int = 0
    batches: int = 0
    bands: int = 0
    #: ``(K, rows, W)`` of the float32 logit accumulator (``rows`` is the tile, or the padded height)
    accumulator_shape: tuple[int, ...] = ()
    #: ``(C, rows, W)`` of the normalised float input band
    input_band_shape: tuple[int, ...] = ()
    #: the most float elements held at once in the pass's own buffers (accumulators, input band, one
    #: batch of tiles and its logits, finished rows); the model's activations are not counted
    peak_float_elements: int = 0

    def _holding(self, *tensors: torch.Tensor | None) -> None:
        held = sum(tensor.numel() for tensor in tensors if tensor is not None)
        self.peak_float_elements = max(self.peak_float_elements, held)


# -- where the tiles go ------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, smallest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
        raise ValueError(f"{name} must be an integer of at least {smallest}, got {value!r}")
    return int(value)


def tile_stride(tile: int, overlap: float) -> int:
    """``round(tile * (1 - overlap))``, at least 1: the step between tile starts along an axis."""
    tile = _check_int("tile", tile, 1)
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    return max(1, round(tile * (1 - overlap)))


def axis_positions(size: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis of ``size`` pixels: ``0, stride, 2 * stride, ...`` and a last one
    flush with the end (``size - tile``); ``[0]`` when the axis is no longer than a tile (pad it)."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / stride) + 1
    return [min(index * stride, size - tile) for index in range(count)]


def tile_positions(height: int, width: int, tile: int, overlap: float) -> list[tuple[int, int]]:
    """``(top, left)`` of every ``tile`` x ``tile`` window, row by row, covering a ``height`` x ``width``
    image (padded to the tile where smaller), the last row and column flush with the bottom and right."""
    height, width = _check_int("height", height, 1), _check_int("width", width, 1)
    stride = tile_stride(tile, overlap)
    lefts = axis_positions(width, tile, stride)
    return [(top, left) for top in axis_positions(height, tile, stride) for left in lefts]


# -- blending ------------------------------------------------------------------------------------------------


def blend_weights(tile: int, mode: str = "gaussian") -> torch.Tensor:
    """``(tile, tile)`` float32 weights of a tile's pixels: ``"constant"`` ones, or ``"gaussian"``
    (sigma ``tile / 8``, centred, maximum 1, floored at ``GAUSSIAN_FLOOR``)."""
    tile = _check_int("tile", tile, 1)
    if mode == "constant":
        return torch.ones(tile, tile)
    if mode != "gaussian":
        raise ValueError(f"blend must be one of {', '.join(BLEND_MODES)}, got {mode!r}")
    sigma = tile * GAUSSIAN_SIGMA_SCALE
    offsets = torch.arange(tile, dtype=torch.float64) - (tile - 1) / 2
    along = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = torch.outer(along, along)
    return (weights / weights.max()).clamp_min(GAUSSIAN_FLOOR).float()


class _Plan:
    """Tile starts along both axes of the padded image and the weights of each kind of tile."""

    def __init__(
        self, height: int, width: int, tile: int, overlap: float, blend: str, margin: int, device: Any
    ):
        self.tile, self.stride = _check_int("tile", tile, 1), tile_stride(tile, overlap)
        self.height, self.width = max(height, tile), max(width, tile)  # padded where smaller
        self.tops = axis_positions(self.height, tile, self.stride)
        self.lefts = axis_positions(self.width, tile, self.stride)
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be a non-negative integer, got {margin!r}")
        several = len(self.tops) > 1 or len(self.lefts) > 1
        if margin and several and tile - self.stride < 2 * margin:
            raise ValueError(
                f"a margin of {margin} pixels needs tiles overlapping by at least {2 * margin} pixels; "
                f"tile {tile} at overlap {overlap} overlaps by {tile - self.stride} (raise the overlap)"
            )
        self.margin = margin
        self.base = blend_weights(tile, blend).to(device)
        self._weights: dict[tuple[bool, bool, bool, bool], torch.Tensor] = {}

    def weight(self, top: int, left: int) -> torch.Tensor:
        """The tile's weights: the blend, zero within ``margin`` of its sides inside the image."""
        if not self.margin:
            return self.base
        tile, margin = self.tile, self.margin
        inner = (top > 0, top + tile < self.height, left > 0, left + tile < self.width)
        if inner not in self._weights:
            weights = self.base.clone()
            if inner[0]:
                weights[:margin] = 0
            if inner[1]:
                weights[tile - margin :] = 0
            if inner[2]:
                weights[:, :margin] = 0
            if inner[3]:
                weights[:, tile - margin :] = 0
            self._weights[inner] = weights
        return self._weights[inner]


# -- pixels in ---------------------------------------------------------------------------------------------


def _mirror(size: int, padded: int, device: Any) -> torch.Tensor:
    """Indices reflecting ``0 .. size - 1`` out to ``padded`` (edge not repeated; period 2 * (size - 1))."""
    index = torch.arange(padded, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index % period
    return torch.where(index < size, index, period - index)


def pad_to_size(image: torch.Tensor, height: int, width: int, mode: str = "reflect") -> torch.Tensor:
    """Pad a ``(C, h, w)`` image at the bottom and right to at least ``height`` x ``width``:
    ``"reflect"`` mirrors (repeatedly where the pad is longer than the image, as ``numpy.pad`` does; a
    one-pixel side is repeated), ``"zeros"`` adds zeros. Returns ``image`` itself when large enough."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
    rows, cols = image.shape[-2:]
    if rows >= height and cols >= width:
        return image
    new_rows, new_cols = max(rows, height), max(cols, width)
    if mode == "zeros":
        return F.pad(image, (0, new_cols - cols, 0, new_rows - rows), mode="constant", value=0.0)
    if new_rows > rows:
        image = image.index_select(-2, _mirror(rows, new_rows, image.device))
    if new_cols > cols:
        image = image.index_select(-1, _mirror(cols, new_cols, image.device))
    return image


def normalise_pixels(
    pixels: Any, normalization: Mapping[str, Sequence[float]] | None, device: Any = None
) -> torch.Tensor:
    """``(rows, W, C)`` or ``(rows, W)`` pixels (numpy or torch) -> a float32 ``(C, rows, W)`` tensor on
    ``device``: divided by 255 and normalised with ``normalization``'s mean and std exactly as
    ``segkit.inference.predictor.image_to_tensor`` does; cast as they are when ``normalization`` is None."""
    if isinstance(pixels, np.ndarray):  # PIL's arrays are read-only: copy those (one band, uint8)
        pixels = np.ascontiguousarray(pixels) if pixels.flags.writeable else pixels.copy()
    values = torch.as_tensor(pixels)
    if values.dim() == 2:
        values = values.unsqueeze(-1)
    if values.dim() != 3:
        raise ValueError(f"pixels must be shaped (rows, W, C) or (rows, W), got {tuple(values.shape)}")
    values = values.to(device).permute(2, 0, 1)
    if normalization is None:
        return values.float().contiguous()
    scaled = values.float() / 255.0
    # torchvision's normalize, written out: importing torchvision costs a tiled predict ~170 MB resident.
    mean = torch.as_tensor(normalization["mean"], dtype=scaled.dtype, device=scaled.device).view(-1, 1, 1)
    std = torch.as_tensor(normalization["std"], dtype=scaled.dtype, device=scaled.device).view(-1, 1, 1)
    return scaled.sub_(mean).div_(std)


# -- the model over tiles ----------------------------------------------------------------------------------


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run(
    model_fn: ModelFn, tiles: torch.Tensor, out_channels: int | None, device: torch.device
) -> torch.Tensor:
    """``model_fn(tiles)`` as float32 on ``device``, its shape checked."""
    logits = model_fn(tiles)
    count, _, tile, _ = tiles.shape
    if (
        not isinstance(logits, torch.Tensor)
        or logits.dim() != 4
        or logits.shape[0] != count
        or tuple(logits.shape[-2:]) != (tile, tile)
        or (out_channels is not None and logits.shape[1] != out_channels)
    ):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        channels = "K" if out_channels is None else out_channels
        raise ValueError(
            f"model_fn must map {tuple(tiles.shape)} tiles to ({count}, {channels}, {tile}, {tile}) logits, "
            f"got {shape}"
        )
    return logits.to(device=device, dtype=torch.float32)


@torch.no_grad()
def sliding_window_logits(
    model_fn: ModelFn,
    image: torch.Tensor,
    tile: int,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    out_channels: int | None = None,
    *,
    margin: int = 0,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Stitched ``(K, H, W)`` float32 logits of a normalised ``(C, H, W)`` image: ``model_fn`` runs on
    batches of ``batch_size`` tiles, and each pixel gets ``sum(w * tile_logits) / sum(w)`` over the tiles
    covering it (see the module docstring for ``blend``, ``margin`` and ``pad_mode``). The sums are kept
    on ``image``'s device, for the whole image at once; ``sliding_window_rows`` keeps one band."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a (C, H, W) tensor, got {getattr(image, 'shape', image)!r}")
    batch_size = _check_int("batch_size", batch_size, 1)
    height, width = image.shape[-2:]
    plan = _Plan(height, width, tile, overlap, blend, margin, image.device)
    padded = pad_to_size(image, plan.height, plan.width, pad_mode)
    weight_sum = torch.zeros(plan.height, plan.width, device=image.device)
    summed: torch.Tensor | None = None
    positions = [(top, left) for top in plan.tops for left in plan.lefts]
    for batch in _batches(positions, batch_size):
        tiles = torch.stack([padded[:, top : top + tile, left : left + tile] for top, left in batch])
        logits = _run(model_fn, tiles, out_channels, image.device)
        if summed is None:
            summed = torch.zeros(logits.shape[1], plan.height, plan.width, device=image.device)
        for (top, left), tile_logits in zip(batch, logits, strict=True):
            weights = plan.weight(top, left)
            summed[:, top : top + tile, left : left + tile].addcmul_(tile_logits, weights)
            weight_sum[top : top + tile, left : left + tile].add_(weights)
    assert summed is not None  # there is always at least one tile
    return (summed[:, :height, :width] / weight_sum[:height, :width]).contiguous()


@dataclass(frozen=True)
class Tiles:
    """Tiled inference settings: ``size`` x ``size`` tiles overlapping by ``overlap``, blended."""

    size: int
    overlap: float = 0.25
    blend: str = "gaussian"

    def logits(self, model, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """``(N, K, H, W)`` logits of a batch, each image stitched from its tiles."""

        def run(batch: torch.Tensor) -> torch.Tensor:
            return model_logits(model, batch, tta)

        stitched = [
            sliding_window_logits(run, image, self.size, self.overlap, self.blend) for image in images
        ]
        return torch.stack(stitched).to(images.device)


def _read_band(
    read_rows: ReadRows,
    top: int,
    bottom: int,
    width: int,
    plan: _Plan,
    normalization: Mapping[str, Sequence[float]] | None,
    pad_mode: str,
    device: torch.device,
) -> torch.Tensor:
    pixels = read_rows(top, bottom)
    shape = tuple(pixels.shape)
    if len(shape) not in (2, 3) or shape[:2] != (bottom - top, width):
        raise ValueError(
            f"read_rows({top}, {bottom}) must return {bottom - top} rows of {width} pixels "
            f"((rows, W, C) or (rows, W)), got shape {shape}"
        )
    band = normalise_pixels(pixels, normalization, device)
    return pad_to_size(band, plan.tile, plan.width, pad_mode)


@torch.no_grad()
def sliding_window_rows(
    model_fn: ModelFn,
    read_rows: ReadRows,
    height: int,
    width: int,
    tile: int,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    emit: Emit | None = None,
    *,
    normalization: Mapping[str, Sequence[float]] | None = None,
    margin: int = 0,
    pad_mode: str = "reflect",
    out_channels: int | None = None,
    device: torch.device | str = "cpu",
    stats: TilingStats | None = None,
) -> TilingStats:
    """``sliding_window_logits`` band by band, never holding float logits of the whole image.

    ``read_rows(top, bottom)`` returns image rows ``top .. bottom - 1`` as ``(rows, width, C)`` pixels
    (uint8 numpy, say), normalised here with ``normalization`` (as ``normalise_pixels`` does; None:
    they are the model's input values already). Each row band of tiles is run through ``model_fn``
    ``batch_size`` tiles at a time; the rows no later tile touches are then passed on as
    ``emit(top, logits)`` with ``logits`` float32 ``(K, rows, width)``, in order, each row once. The
    float buffers (on ``device``) span one band, ``tile`` rows of ``width``. Returns ``stats`` (a new
    ``TilingStats`` when None), filled in."""
    if emit is None:
        raise TypeError("sliding_window_rows needs emit(top, logits), which receives the finished rows")
    height, width = _check_int("height", height, 1), _check_int("width", width, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    device = torch.device(device)
    stats = TilingStats() if stats is None else stats
    plan = _Plan(height, width, tile, overlap, blend, margin, device)
    summed: torch.Tensor | None = None  # rows top .. top + tile of the current band
    weight_sum = torch.zeros(tile, plan.width, device=device)
    for index, top in enumerate(plan.tops):
        band = _read_band(
            read_rows, top, min(top + tile, height), width, plan, normalization, pad_mode, device
        )
        stats.bands += 1
        stats.input_band_shape = tuple(band.shape)
        for lefts in _batches(plan.lefts, batch_size):
            tiles = torch.stack([band[:, :, left : left + tile] for left in lefts])
            logits = _run(model_fn, tiles, out_channels, device)
            if summed is None:
                summed = torch.zeros(logits.shape[1], tile, plan.width, device=device)
                stats.accumulator_shape = tuple(summed.shape)
            for left, tile_logits in zip(lefts, logits, strict=True):
                weights = plan.weight(top, left)
                summed[:, :, left : left + tile].addcmul_(tile_logits, weights)
                weight_sum[:, left : left + tile].add_(weights)
            stats.tiles += len(lefts)
            stats.batches += 1
            stats._holding(summed, weight_sum, band, tiles, logits)
        assert summed is not None
        # rows above the next band's top are final; the last band finishes every row
        following = plan.tops[index + 1] if index + 1 < len(plan.tops) else plan.height
        finished = following - top
        rows = min(following, height) - top
        finished_logits = (summed[:, :rows, :width] / weight_sum[:rows, :width]).contiguous()
        stats._holding(summed, weight_sum, band, finished_logits)
        emit(top, finished_logits)
        del finished_logits
        if index + 1 < len(plan.tops):  # shift the unfinished rows up to the top of the buffers
            kept, kept_weights = summed[:, finished:].clone(), weight_sum[finished:].clone()
            stats._holding(summed, weight_sum, band, kept, kept_weights)
            summed.zero_()
            weight_sum.zero_()
            summed[:, : tile - finished] = kept
            weight_sum[: tile - finished] = kept_weights
    return stats


# -- with a trained model ---------------------------------------------------------------------------------


def _pixels(image: Image.Image | np.ndarray | Any) -> tuple[int, int, ReadRows]:
    """Height, width and a ``read_rows`` of a PIL image (cropped band by band, never copied whole), a
    ``(H, W[, C])`` array or a row source with ``height``, ``width`` and ``read_rows`` (such as
    ``segkit.data.tiff.TiffRows``, which decodes only the rows asked for)."""
    source: Any = image
    if callable(getattr(source, "read_rows", None)):
        return source.height, source.width, source.read_rows
    if isinstance(image, Image.Image):
        width, height = image.size
        return height, width, lambda top, bottom: np.asarray(image.crop((0, top, width, bottom)))
    pixels = np.asarray(image)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"image must be a PIL image or an (H, W[, C]) array, got shape {pixels.shape}")
    return pixels.shape[0], pixels.shape[1], lambda top, bottom: pixels[top:bottom]


def _model_fn(trained: TrainedModel, tta: bool) -> ModelFn:
    def run(batch: torch.Tensor) -> torch.Tensor:
        return input_logits(trained.model, trained.device, batch, tta)  # as predict_logits

    return run


def predict_tiled(
    trained: TrainedModel,
    image: Image.Image | np.ndarray,
    tile: int,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: bool = False,
    batch_size: int = 4,
    *,
    margin: int = 0,
    pad_mode: str = "reflect",
) -> np.ndarray:
    """Probabilities at the image's own resolution, float32, as
    ``segkit.inference.predictor.predict_probability`` gives them (binary ``(H, W)``, multiclass and
    multilabel ``(K, H, W)``), without resizing: the photo,
    normalised as in training, runs tile by tile (``sliding_window_logits``; with ``tta``, each tile is
    averaged with its horizontal flip). Holds float logits of the whole image: for big photos and
    masks only, ``predict_tiled_mask``."""
    height, width, read_rows = _pixels(image)
    normalised = normalise_pixels(read_rows(0, height), trained.normalization)
    logits = sliding_window_logits(
        _model_fn(trained, tta),
        normalised,
        tile,
        overlap,
        blend,
        batch_size,
        trained.task.out_channels,
        margin=margin,
        pad_mode=pad_mode,
    )
    probabilities = trained.task.probabilities(logits.unsqueeze(0))[0].cpu().numpy()
    return probabilities[0] if trained.task.kind == "binary" else probabilities


def predict_tiled_mask(
    trained: TrainedModel,
    image: Image.Image | np.ndarray,
    tile: int,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: bool = False,
    batch_size: int = 4,
    task: Task | None = None,
    *,
    margin: int = 0,
    pad_mode: str = "reflect",
    stats: TilingStats | None = None,
) -> np.ndarray:
    """The predicted mask at the image's own resolution, band by band (``sliding_window_rows``): a
    binary task gives a bool ``(H, W)``, a multiclass one uint8 class ids ``(H, W)`` (uint16 beyond
    256 classes), a multilabel one a bool ``(K, H, W)``. ``task`` (default ``trained.task``) decides,
    with its threshold. Memory: the uint8 photo, the mask and one band of floats, whatever the height
    (``image`` may be a PIL image, cropped band by band, an ``(H, W[, C])`` uint8 array, or a row
    source such as ``segkit.data.tiff.TiffRows``, read band by band: then not even the photo is held). Bands
    are normalised and blended on ``trained.device``."""
    task = trained.task if task is None else task
    height, width, read_rows = _pixels(image)
    classes = task.out_channels
    if task.kind == "multilabel":
        mask = np.zeros((classes, height, width), dtype=bool)
    elif task.kind == "multiclass":
        mask = np.zeros((height, width), dtype=np.uint8 if classes <= 256 else np.uint16)
    else:
        mask = np.zeros((height, width), dtype=bool)

    def emit(top: int, logits: torch.Tensor) -> None:
        decided = task.predict_mask(logits.unsqueeze(0))[0].cpu().numpy()
        mask[..., top : top + logits.shape[1], :] = decided

    sliding_window_rows(
        _model_fn(trained, tta),
        read_rows,
        height,
        width,
        tile,
        overlap,
        blend,
        batch_size,
        emit,
        normalization=trained.normalization,
        margin=margin,
        pad_mode=pad_mode,
        out_channels=classes,
        device=trained.device,
        stats=stats,
    )
    return mask
