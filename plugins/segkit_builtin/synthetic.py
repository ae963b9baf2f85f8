"""Dataset "synthetic": textured shapes on textured backgrounds, generated on the fly from a seed.

It is segkit's default data: nothing to download, the same image for the same ``(seed, split, index)``
on every machine, and not trivial. Foreground objects (ellipses, polygons, stars, blobs; one to four
per image, varied sizes, some cut by the border) are filled with *fine* textures (gratings and
checkerboards of a 3-7 pixel period, grainy noise); the background is *coarse* texture (Perlin-like
lattice noise, wide gratings, large checkerboards) plus up to two background-textured decoy shapes.
Foreground and background grey levels are drawn from the same range, and colour is one tint for the
whole image, so neither intensity nor colour tells the classes apart; local texture does.

Measured at 64x64 on the first 64 valid images (the test suite checks these bounds):

- Otsu's threshold on the grayscale image, better polarity per image: mean per-image Dice 0.27
  (required: at most 0.60);
- the same threshold on a local texture-energy map (squared high-pass, smoothed): 0.85;
- UNet with ``base_channels=16``, bce_dice, the ``DEFAULTS`` below: valid Dice (per-image mean,
  threshold 0.5, 64x64) 0.90 after 2 epochs and 0.951 after 12, about 3 minutes of 2-core CPU.

Images are returned ImageNet-normalised (``(rgb - IMAGENET_MEAN) / IMAGENET_STD`` with ``rgb`` in
[0, 1], quantised to uint8 like a photo), as the photo datasets are, so checkpoints record the same
normalisation and ``segkit predict`` treats photos alike. The foreground covers 17% of an image on
average and never more than ``MAX_FOREGROUND_FRACTION``; every image holds both classes.

``task="multiclass"`` (``generate_multiclass_sample``) draws four classes, ``MULTICLASS_NAMES`` =
background, ellipse, polygon, star: each object class has its own shape and its own fine texture
(striped ellipses, checked polygons, speckled stars) on the same coarse background with decoys, one
object of every class per image (the objects cover about 19% of an image). Measured at 64x64 with
the ``DEFAULTS`` model and schedule (UNet ``base_channels=16``, batch 16, Adam 3e-3 on a cosine
schedule) and plain cross-entropy, over the 128 valid images: mean IoU of the three object classes
0.68 after 5 epochs and 0.80 after 10 (background 0.97, ellipse 0.90, polygon 0.78, star 0.70).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from skimage import draw
from torch.utils.data import Dataset

import segkit
from segkit.component_options import (
    Option,
    boolean,
    choice,
    int_at_least,
    non_negative_int,
    optional,
    parse_component_options,
)
from segkit.datasets import AUGMENT, SAMPLING

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Each split draws from its own seed stream: item i of "valid" never equals any item of "train".
SPLIT_STREAMS = {"train": 0, "valid": 1, "test": 2}
DEFAULT_SPLIT_SIZES = {"train": 512, "valid": 128, "test": 128}
TASK_CHOICES = ("binary", "multiclass")
MIN_IMAGE_SIZE = 16

# No object is added that would make more than this fraction of the image foreground, so every image
# keeps plenty of background (the mean foreground fraction is about 0.17).
MAX_FOREGROUND_FRACTION = 0.55

# Settings `segkit run` uses with this dataset unless a recipe, config file or flag says otherwise:
# small images, a light UNet (1.9M parameters instead of 31M), a higher learning rate decayed by a
# cosine schedule, and no augmentation (the generator already varies everything; crops and zooms would
# change the texture scale the task is about). See the measurements in the module docstring.
DEFAULTS: dict[str, Any] = {
    "image_size": 64,
    "epochs": 12,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "scheduler": "cosine",
    "augment": "none",
    "model_options": {"unet": {"base_channels": 16}},
}


# -- textures: each returns a float array of the requested shape with mean ~0 and std ~1 ----------
def _standardize(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-6)


@functools.lru_cache(maxsize=8)
def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel (cached: every texture of every item needs them)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def _coordinates(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle, so stripes and checks run in any direction."""
    angle = rng.uniform(0, math.pi)
    rows, cols = _grid(shape)
    along = cols * math.cos(angle) + rows * math.sin(angle)
    across = -cols * math.sin(angle) + rows * math.cos(angle)
    return along, across


def value_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Random values on a lattice ``cell`` pixels apart, blended with smoothstep weights (not standardised).

    ``shape`` is ``(H, W)`` or ``(H, W, channels)`` for independent noise per channel. Far cheaper
    than smoothing white noise with a wide Gaussian, which matters at about 3 ms per item.
    """
    lattice = rng.standard_normal((int(shape[0] / cell) + 3, int(shape[1] / cell) + 3, *shape[2:]))
    # Weights vary along their own axis and broadcast over the others (lattice columns, channels).
    extra = (None,) * (len(shape) - 2)
    along_rows, along_cols = (slice(None), None, *extra), (slice(None), *extra)

    def along(length: int) -> tuple[np.ndarray, np.ndarray]:
        position = np.arange(length) / cell + rng.uniform(0, 1)
        index = position.astype(int)
        fraction = position - index
        return index, fraction * fraction * (3 - 2 * fraction)

    row_index, row_weight = along(shape[0])
    col_index, col_weight = along(shape[1])
    rows = lattice[row_index] * (1 - row_weight)[along_rows] + lattice[row_index + 1] * row_weight[along_rows]
    return rows[:, col_index] * (1 - col_weight)[along_cols] + rows[:, col_index + 1] * col_weight[along_cols]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Perlin-like noise: lattice noise ``scale`` pixels apart plus an octave at half the scale."""
    return _standardize(value_noise(rng, shape, scale) + 0.5 * value_noise(rng, shape, max(scale / 2, 1.0)))


def grating(rng: np.random.Generator, shape: tuple[int, int], period: float) -> np.ndarray:
    """Sinusoidal stripes ``period`` pixels apart, at a random angle and phase."""
    along, _ = _coordinates(shape, rng)
    return math.sqrt(2) * np.sin(2 * math.pi * along / period + rng.uniform(0, 2 * math.pi))


def checkerboard(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """A checkerboard of ``cell``-pixel squares at a random angle and offset, values -1 and +1."""
    along, across = _coordinates(shape, rng)
    offset = rng.uniform(0, 2 * cell, size=2)
    parity = (np.floor((along + offset[0]) / cell) + np.floor((across + offset[1]) / cell)) % 2
    return np.where(parity, 1.0, -1.0)


def speckle(rng: np.random.Generator, shape: tuple[int, int], grain: float) -> np.ndarray:
    """Grainy noise: lattice noise ``grain`` pixels apart (well under the object size)."""
    return _standardize(value_noise(rng, shape, grain))


def foreground_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Fine texture for objects: what a model must learn to recognise."""
    return fine_texture(rng, shape, int(rng.integers(3)))


def fine_texture(rng: np.random.Generator, shape: tuple[int, int], kind: int) -> np.ndarray:
    """Fine texture ``kind``: 0 grating, 1 checkerboard, 2 speckle (random period or grain)."""
    if kind == 0:
        return grating(rng, shape, period=rng.uniform(3.0, 7.0))
    if kind == 1:
        return checkerboard(rng, shape, cell=rng.uniform(1.6, 3.5))
    return speckle(rng, shape, grain=rng.uniform(1.2, 2.0))


def background_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Coarse texture for the background: smoothed noise mixed with a wide grating or checkerboard."""
    size = min(shape)
    texture = smooth_noise(rng, shape, scale=rng.uniform(size / 6, size / 3))
    extra = rng.integers(3)
    if extra == 1:
        period = rng.uniform(size / 5, size / 2)
        texture = texture + rng.uniform(0.5, 1.0) * grating(rng, shape, period=period)
    elif extra == 2:
        cell = rng.uniform(size / 8, size / 3)
        texture = texture + rng.uniform(0.5, 1.0) * checkerboard(rng, shape, cell=cell)
    return _standardize(texture)


# -- shapes: each returns a bool mask of one object ----------------------------------------------
def _polygon_mask(
    shape: tuple[int, int], center: np.ndarray, angles: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    rows = center[0] + radii * np.sin(angles)
    cols = center[1] + radii * np.cos(angles)
    mask = np.zeros(shape, dtype=bool)
    mask[draw.polygon(rows, cols, shape=shape)] = True
    return mask


def random_shape(
    rng: np.random.Generator, shape: tuple[int, int], center: np.ndarray, radius: float
) -> np.ndarray:
    """An ellipse, polygon, star or blob of roughly ``radius`` pixels around ``center`` (row, col)."""
    return shape_of_kind(rng, shape, center, radius, int(rng.integers(4)))


def shape_of_kind(
    rng: np.random.Generator, shape: tuple[int, int], center: np.ndarray, radius: float, kind: int
) -> np.ndarray:
    """Shape ``kind`` (0 ellipse, 1 polygon, 2 star, 3 blob) of roughly ``radius`` pixels, random pose."""
    turn = rng.uniform(0, 2 * math.pi)
    if kind == 0:  # ellipse
        mask = np.zeros(shape, dtype=bool)
        minor = radius * rng.uniform(0.5, 1.0)
        rr, cc = draw.ellipse(center[0], center[1], radius, minor, shape=shape, rotation=turn)
        mask[rr, cc] = True
        return mask
    if kind == 1:  # polygon with 3 to 7 corners
        corners = int(rng.integers(3, 8))
        # Evenly spread corners, jittered: fully random angles give slivers too thin to see.
        step = 2 * math.pi / corners
        angles = turn + step * np.arange(corners) + rng.uniform(-0.3, 0.3, corners) * step
        return _polygon_mask(shape, center, angles, radius * rng.uniform(0.6, 1.1, corners))
    if kind == 2:  # star with 4 to 7 points
        points = int(rng.integers(4, 8))
        angles = turn + np.linspace(0, 2 * math.pi, 2 * points, endpoint=False)
        radii = np.tile([radius * 1.1, radius * rng.uniform(0.4, 0.65)], points)
        return _polygon_mask(shape, center, angles, radii)
    # blob: a circle whose radius wobbles with a few low harmonics
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    wobble = sum(rng.uniform(0, 0.22) * np.cos(k * angles + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4))
    return _polygon_mask(shape, center, angles, radius * (1 + wobble))


def _random_center(rng: np.random.Generator, shape: tuple[int, int], margin: float) -> np.ndarray:
    """A centre in the image widened by ``margin`` (a fraction), so objects may be cut by the border."""
    low, high = -margin, 1 + margin
    return np.array([rng.uniform(low, high) * shape[0], rng.uniform(low, high) * shape[1]])


def generate_sample(
    seed: int, split: str, index: int, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Item ``index`` of ``split``: an RGB float32 ``(H, W, 3)`` image in [0, 1] and a bool ``(H, W)`` mask.

    A pure function of its arguments: the random stream is seeded with ``(seed, split, index)``.
    """
    rng = np.random.default_rng([int(seed), SPLIT_STREAMS[split], int(index)])
    shape = (int(image_size[0]), int(image_size[1]))
    size = min(shape)

    # Grey levels: background and foreground share the same range of means and contrasts, so the
    # intensity histogram says little about which pixel is which.
    level = rng.uniform(0.35, 0.65)
    gray = level + rng.uniform(0.12, 0.22) * background_texture(rng, shape)

    # Decoys: background-textured shapes, so that "any closed shape" is not the answer either.
    decoys = int(rng.integers(0, 3))
    decoy_texture = smooth_noise(rng, shape, scale=size / 5) if decoys else None
    for _ in range(decoys):
        decoy = random_shape(rng, shape, _random_center(rng, shape, 0.1), size * rng.uniform(0.08, 0.2))
        tone = level + rng.uniform(-0.12, 0.12)
        gray[decoy] = tone + rng.uniform(0.05, 0.15) * decoy_texture[decoy]

    mask = np.zeros(shape, dtype=bool)
    for number in range(int(rng.integers(1, 5))):
        # The first object is centred well inside the image, so every image has foreground.
        margin = -0.2 if number == 0 else 0.1
        radius = size * math.exp(rng.uniform(math.log(0.12), math.log(0.3)))
        radius = max(radius, 2.5)
        obj = random_shape(rng, shape, _random_center(rng, shape, margin), radius)
        if number > 0 and np.count_nonzero(mask | obj) > MAX_FOREGROUND_FRACTION * mask.size:
            continue
        tone = level + rng.uniform(-0.1, 0.1)
        gray[obj] = (tone + rng.uniform(0.12, 0.22) * foreground_texture(rng, shape))[obj]
        mask |= obj

    gray += rng.normal(0, 0.03, shape)  # sensor noise
    # Colour carries no label information: one random tint for the whole image plus a faint,
    # mask-independent colour drift.
    tint = rng.uniform(0.75, 1.15, size=3)
    drift = value_noise(rng, (*shape, 3), size / 2)
    rgb = gray[..., None] * tint + 0.04 * drift
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), mask


# -- the multiclass variant ---------------------------------------------------------------------
#: Class names of ``task="multiclass"``, in id order: the background and one class per shape.
MULTICLASS_NAMES = ["background", "ellipse", "polygon", "star"]
#: Shape kind (``shape_of_kind``) of each object class.
CLASS_SHAPES = {1: 0, 2: 1, 3: 2}
#: Fine texture of each object class, with ranges kept apart so that no two classes look alike up
#: close: ellipses striped (grating, period 4-7 px), polygons checked (3-5 px squares), stars
#: speckled (1.2-1.6 px grain).
CLASS_TEXTURES = {
    1: lambda rng, shape: grating(rng, shape, period=rng.uniform(4.0, 7.0)),
    2: lambda rng, shape: checkerboard(rng, shape, cell=rng.uniform(3.0, 5.0)),
    3: lambda rng, shape: speckle(rng, shape, grain=rng.uniform(1.2, 1.6)),
}
# The multiclass images draw from their own random stream, apart from the binary ones.
_MULTICLASS_STREAM = 1
# Tries to place an object where it hides at most this share of itself behind (or over) earlier ones.
_PLACEMENT_TRIES, _MAX_OVERLAP = 6, 0.25


def generate_multiclass_sample(
    seed: int, split: str, index: int, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Item ``index`` of the multiclass ``split``: an RGB float32 ``(H, W, 3)`` image in [0, 1] and a
    uint8 ``(H, W)`` mask of class ids (``MULTICLASS_NAMES``; 0 is the background).

    As ``generate_sample``, on a background of coarse texture with background-textured decoys, but
    each object's class fixes both its shape and its fine texture (``CLASS_SHAPES``,
    ``CLASS_TEXTURES``): one object of every class, in random order and well inside the image, then
    up to one more of a random class. Objects drawn later cover earlier ones, placed so that little
    overlaps. A pure function of its arguments (its own seed stream, apart from the binary images).
    """
    rng = np.random.default_rng([int(seed), SPLIT_STREAMS[split], int(index), _MULTICLASS_STREAM])
    shape = (int(image_size[0]), int(image_size[1]))
    size = min(shape)

    level = rng.uniform(0.35, 0.65)
    gray = level + rng.uniform(0.12, 0.22) * background_texture(rng, shape)
    decoys = int(rng.integers(0, 3))
    decoy_texture = smooth_noise(rng, shape, scale=size / 5) if decoys else np.zeros(shape)
    for _ in range(decoys):
        decoy = random_shape(rng, shape, _random_center(rng, shape, 0.1), size * rng.uniform(0.08, 0.2))
        tone = level + rng.uniform(-0.12, 0.12)
        gray[decoy] = tone + rng.uniform(0.05, 0.15) * decoy_texture[decoy]

    classes = [int(c) for c in rng.permutation(sorted(CLASS_SHAPES))]
    classes += [int(c) for c in rng.integers(1, len(MULTICLASS_NAMES), size=int(rng.integers(0, 2)))]
    ids = np.zeros(shape, dtype=np.uint8)
    for number, class_id in enumerate(classes):
        # One object of each class centred well inside the image, so every image holds every class.
        margin = -0.2 if number < len(CLASS_SHAPES) else 0.1
        radius = max(size * math.exp(rng.uniform(math.log(0.12), math.log(0.25))), 2.5)
        for _ in range(_PLACEMENT_TRIES):
            obj = shape_of_kind(
                rng, shape, _random_center(rng, shape, margin), radius, CLASS_SHAPES[class_id]
            )
            if np.count_nonzero(obj & (ids > 0)) <= _MAX_OVERLAP * np.count_nonzero(obj):
                break
        if (
            number >= len(CLASS_SHAPES)
            and np.count_nonzero((ids > 0) | obj) > MAX_FOREGROUND_FRACTION * ids.size
        ):
            continue
        tone = level + rng.uniform(-0.1, 0.1)
        texture = CLASS_TEXTURES[class_id](rng, shape)
        gray[obj] = (tone + rng.uniform(0.12, 0.22) * texture)[obj]
        ids[obj] = class_id

    gray += rng.normal(0, 0.03, shape)
    tint = rng.uniform(0.75, 1.15, size=3)
    drift = value_noise(rng, (*shape, 3), size / 2)
    rgb = gray[..., None] * tint + 0.04 * drift
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), ids


# -- the dataset ---------------------------------------------------------------------------------
class SyntheticShapes(Dataset):
    """Textured-shape images generated from ``(seed, split, index)``; see the module docstring.

    Items are dicts: ``image`` float32 ``(3, H, W)`` ImageNet-normalised, ``mask`` float32 ``(1, H, W)``
    in {0, 1}, ``name`` like ``"synthetic-train-00042"``. With ``task="multiclass"`` (classes
    ``MULTICLASS_NAMES``, see ``generate_multiclass_sample``) ``mask`` is int64 ``(1, H, W)`` class
    ids and ``ignore`` bool ``(1, H, W)`` (True only where an augmentation invented pixels, whose id
    is then ``IGNORE_INDEX``). The augmentation pipeline ``augment`` runs
    on every access (``segkit.data.transforms.build_sample_transform``), on the image quantised to uint8
    like a photo. Generated images are cached in memory per instance unless ``cache=False``: about
    3 ms to generate and 16 KiB to keep at 64x64.
    """

    #: Tells the engine not to start loader worker processes: items are made in memory, cheaply.
    in_memory = True
    #: Recorded in checkpoints so that inference normalises photos the same way.
    normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def __init__(
        self,
        split: str,
        image_size: int,
        length: int,
        seed: int,
        augment: str,
        cache: bool = True,
        task: str = "binary",
        sampling: Any = None,
    ) -> None:
        from segkit.data.transforms import IGNORE_INDEX, build_sample_transform

        if task not in TASK_CHOICES:
            raise ValueError(f"task must be one of {', '.join(TASK_CHOICES)}, got {task!r}")
        if task == "multiclass":  # binary datasets leave these to segkit.datasets.dataset_task_info
            self.task = task
            self.class_names = list(MULTICLASS_NAMES)
            self.ignore_index = IGNORE_INDEX
        self.split = split
        self.image_size = image_size
        self.length = length
        self.seed = seed
        self.augment = augment
        self.transform = build_sample_transform(
            augment, image_size, train=split == "train", sampling=sampling
        )
        self._cache: dict[int, tuple[torch.Tensor, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index`` before augmentation: RGB float32 ``(H, W, 3)`` in [0, 1] and a bool mask
        (multiclass: a uint8 mask of class ids)."""
        size = (self.image_size, self.image_size)
        if getattr(self, "task", "binary") == "multiclass":
            return generate_multiclass_sample(self.seed, self.split, index, size)
        return generate_sample(self.seed, self.split, index, size)

    def _pixels_and_labels(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rgb, mask = self.raw(index)
        pixels = torch.from_numpy(np.round(rgb * 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
        pair = (pixels, mask.astype(np.uint8))
        if self._cache is not None:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"synthetic dataset indices are ints, got {type(index).__name__}")
        index = int(index) + (self.length if index < 0 else 0)
        if not 0 <= index < self.length:
            raise IndexError(
                f"synthetic {self.split} split has {self.length} items; index {index} is out of range"
            )
        pixels, labels = self._pixels_and_labels(index)
        # The transform builds new tensors, so nobody can modify the cached ones through an item.
        name = f"synthetic-{self.split}-{index:05d}"
        if getattr(self, "task", "binary") == "multiclass":
            sample = self.transform(pixels, labels, task="multiclass")
            return {
                "image": sample["image"],
                "mask": sample["mask"],
                "ignore": sample["ignore"],
                "name": name,
            }
        sample = self.transform(pixels, labels)
        return {"image": sample["image"], "mask": sample["mask"], "name": name}

    def __repr__(self) -> str:
        task = getattr(self, "task", "binary")
        return (
            f"SyntheticShapes(split={self.split!r}, image_size={self.image_size}, length={self.length}, "
            f"seed={self.seed}, augment={self.augment!r}" + (f", task={task!r})" if task != "binary" else ")")
        )


def _split_size(split: str) -> Option:
    return Option(DEFAULT_SPLIT_SIZES[split], non_negative_int, help=f"items in the {split} split")


OPTIONS = {
    "split": Option("train", choice(*SPLIT_STREAMS), help="which stream of images"),
    "image_size": Option(64, int_at_least(MIN_IMAGE_SIZE), help="side of the square images"),
    "length": Option(None, optional(non_negative_int), help="items in this split (default: its size)"),
    "seed": Option(0, non_negative_int, help="seed of every image"),
    "augment": Option("none", AUGMENT.parse, AUGMENT.allowed, help="augmentation pipeline (default none)"),
    "train_size": _split_size("train"),
    "valid_size": _split_size("valid"),
    "test_size": _split_size("test"),
    "cache": Option(True, boolean, help="keep generated images in memory"),
    "sampling": SAMPLING,
    "task": Option(
        "binary",
        choice(*TASK_CHOICES),
        help="binary (shape vs background) or multiclass (background, ellipse, polygon, star)",
    ),
}


def build_synthetic_dataset(root: Any = None, **options: Any) -> SyntheticShapes:
    """Textured shapes generated from a seed: no download, the default data of ``segkit run``.

    ``root`` is accepted for the common dataset signature and ignored: nothing is read from disk. It
    is not among the declared ``OPTIONS``, which tells ``segkit run`` that ``--data-path`` means
    nothing here (a usage error suggesting ``--dataset folder``).
    Options (``OPTIONS``): ``split``, ``image_size`` (64), ``length`` overrides the split's size;
    ``train_size`` / ``valid_size`` / ``test_size`` set the sizes per split (512 / 128 / 128);
    ``seed``; ``augment`` names an augmentation pipeline ("none" by default: the generator already
    varies everything); ``cache`` keeps generated images in memory; ``task`` "binary" (default) or
    "multiclass" (four classes, ``MULTICLASS_NAMES``).
    """
    parsed = parse_component_options("dataset", "synthetic", options, OPTIONS)
    split = parsed["split"]
    length = parsed["length"] if parsed["length"] is not None else parsed[f"{split}_size"]
    augment = parsed["augment"] if parsed["augment"] is not None else "none"
    return SyntheticShapes(
        split,
        parsed["image_size"],
        length,
        parsed["seed"],
        augment,
        parsed["cache"],
        task=parsed["task"],
        sampling=parsed["sampling"],
    )


@segkit.hookimpl
def register_datasets(register):
    register(
        "synthetic",
        build_synthetic_dataset,
        description="Textured shapes on textured backgrounds, generated from a seed (no download)",
        defaults=DEFAULTS,
        options=OPTIONS,
    )
