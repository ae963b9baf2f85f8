"""Generated datasets in the ``folder`` layout, for measuring segkit on kinds of data we do not ship.

    python benchmarks/generated_datasets.py street DIR        # 11-class street scenes, index PNGs
    python benchmarks/generated_datasets.py street-large DIR  # the same scenes at 360x480, 370/100/40
    python benchmarks/generated_datasets.py thin DIR          # thin curved lines on texture, 0/255

``street``: photos of 240x320 pixels drawn like a road scene (sky, buildings, road, pavement, trees,
poles, signs, fences, cars, pedestrians, cyclists), with noisy textures and lighting, so that colour
alone does not tell every class apart; masks are index PNGs (class ids, 255 = void on a thin band
around object edges) with a ``classes.txt``. Several classes are small or thin (poles, signs,
pedestrians, cyclists), as in real street-scene sets, where they are the hard part. Splits: train 240,
valid 40, test 40.

``street-large``: the same scenes drawn at 360x480 (height x width): every size in pixels (objects,
textures, lighting) scaled by 1.5, so a scene looks the same with 1.5 times the pixels; splits train
370, valid 100, test 40, like the real street-scene set of issue 30 (480x360 photos, about 370 train and
100 valid, 11 classes, void borders), where a 128-px crop sees a small part of the street.

``thin``: photos of about 600x600 with a few thin (1-4 px) curved, branching lines drawn over a
textured background, the kind of structure that vanishes when a photo is squashed to 128x128.

Everything is drawn from seeds, so the same command gives the same files on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

STREET_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOID = 255
SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}
#: The height ``street`` is drawn at; sizes in pixels are scaled by height / STREET_HEIGHT.
STREET_HEIGHT = 240
LARGE_STREET_SIZE = (360, 480)


def _texture(rng: np.random.Generator, shape: tuple[int, int], scale: float, strength: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.normal(size=shape), scale)
    return noise / (noise.std() + 1e-6) * strength


def _scale(labels: np.ndarray) -> float:
    """How much larger than ``street``'s 240 rows this scene is drawn (exactly 1.0 for ``street``)."""
    return labels.shape[0] / STREET_HEIGHT


def _paint(photo, labels, region, class_id, colour, rng, texture_scale=1.5, strength=18.0):
    texture = _texture(rng, region.shape, texture_scale * _scale(labels), strength)
    for channel in range(3):
        values = colour[channel] + texture + rng.normal(0, 4, size=region.shape)
        photo[..., channel] = np.where(region, values, photo[..., channel])
    labels[region] = class_id


def street_scene(seed: int, height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """One photo (H, W, 3) uint8 and its index mask (H, W) uint8."""
    rng = np.random.default_rng(seed)
    ids = {name: index for index, name in enumerate(STREET_CLASSES)}
    photo = np.zeros((height, width, 3), dtype=np.float64)
    labels = np.zeros((height, width), dtype=np.uint8)
    rows, columns = np.mgrid[0:height, 0:width]
    scale = _scale(labels)
    horizon = int(height * rng.uniform(0.35, 0.5))
    # sky, then buildings along the horizon, then road and pavement below it
    _paint(
        photo, labels, rows < horizon, ids["sky"], rng.uniform([120, 150, 190], [170, 200, 240]), rng, 6, 10
    )
    smoothed = ndimage.gaussian_filter1d(rng.uniform(0.1, 0.3, width), 8 * scale)
    skyline = horizon - (smoothed * height).astype(int)
    buildings = (rows >= skyline[None, :]) & (rows < horizon + 5 * scale)
    _paint(
        photo, labels, buildings, ids["building"], rng.uniform([90, 80, 70], [150, 140, 130]), rng, 1.0, 25
    )
    curb = horizon + int(5 * scale) + int(rng.uniform(0.05, 0.12) * height)
    _paint(
        photo,
        labels,
        rows >= horizon + 5 * scale,
        ids["pavement"],
        rng.uniform([140, 130, 120], [180, 170, 160]),
        rng,
    )
    road_left = width * rng.uniform(0.0, 0.3) - (rows - curb) * rng.uniform(0.3, 0.8)
    road_right = width * rng.uniform(0.7, 1.0) + (rows - curb) * rng.uniform(0.3, 0.8)
    road = (rows >= curb) & (columns > road_left) & (columns < road_right)
    _paint(photo, labels, road, ids["road"], rng.uniform([60, 60, 65], [90, 90, 95]), rng, 3, 8)
    # trees: textured green blobs above the horizon
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(horizon * 0.4, horizon), rng.uniform(0, width)
        radius = rng.uniform(15, 40) * scale
        blob = (rows - cy) ** 2 / 1.3 + (columns - cx) ** 2 < radius**2
        _paint(photo, labels, blob, ids["tree"], rng.uniform([40, 90, 30], [80, 140, 60]), rng, 0.8, 30)
    # a fence: a striped band on the pavement side
    if rng.random() < 0.7:
        top, left = horizon - rng.integers(5, 15) * scale, rng.integers(0, width // 2)
        band = (
            (rows >= top)
            & (rows < horizon + 8 * scale)
            & (columns >= left)
            & (columns < left + rng.integers(40, 120) * scale)
        )
        stripes = band & ((columns // round(3 * scale)) % 2 == 0)
        _paint(photo, labels, stripes, ids["fence"], rng.uniform([110, 90, 60], [150, 120, 90]), rng, 0.5, 10)
    # cars on the road
    for _ in range(rng.integers(1, 4)):
        bottom = rng.uniform(curb + 10 * scale, height)
        size = (bottom - horizon) / height * scale
        car_h, car_w = size * rng.uniform(40, 70), size * rng.uniform(80, 140)
        cx = rng.uniform(0, width)
        body = (rows < bottom) & (rows > bottom - car_h) & (np.abs(columns - cx) < car_w / 2)
        _paint(photo, labels, body, ids["car"], rng.uniform([20, 20, 20], [220, 220, 220]), rng, 2, 12)
    _draw_poles_and_signs(photo, labels, rows, columns, horizon, ids, rng)
    _draw_people(photo, labels, rows, columns, horizon, ids, rng)
    # lighting: a smooth brightness field over the whole photo, then void on object edges
    photo *= 1 + _texture(rng, (height, width), 40 * scale, 0.15)[..., None]
    edges = ndimage.morphological_gradient(labels, size=3) > 0
    mask = np.where(edges & (rng.random(labels.shape) < 0.5), VOID, labels).astype(np.uint8)
    return photo.clip(0, 255).astype(np.uint8), mask


def _draw_poles_and_signs(photo, labels, rows, columns, horizon, ids, rng) -> None:
    """Thin vertical poles, some carrying a small sign: the thin and small classes."""
    height, width = labels.shape
    scale = _scale(labels)
    for _ in range(rng.integers(1, 5)):
        x, base = rng.uniform(0, width), rng.uniform(horizon + 5 * scale, height)
        top = base - (base - horizon + 20 * scale) * rng.uniform(1.2, 2.0)
        half = rng.uniform(0.8, 2.2) * scale
        pole = (np.abs(columns - x) < half) & (rows < base) & (rows > top)
        _paint(photo, labels, pole, ids["pole"], rng.uniform([50, 50, 50], [90, 90, 90]), rng, 0.5, 6)
        if rng.random() < 0.6:
            side = rng.uniform(5, 10) * scale
            sy = top + side
            sign = (np.abs(columns - x) < side) & (np.abs(rows - sy) < side * 0.8)
            colour = [(200, 30, 30), (30, 60, 200), (220, 200, 40)][rng.integers(0, 3)]
            _paint(photo, labels, sign, ids["sign"], np.array(colour, float), rng, 0.5, 10)


def _draw_people(photo, labels, rows, columns, horizon, ids, rng) -> None:
    """Pedestrians and cyclists: small upright shapes on the pavement and road."""
    height, width = labels.shape
    scale = _scale(labels)
    for name, count in (("pedestrian", rng.integers(0, 5)), ("bicyclist", rng.integers(0, 3))):
        for _ in range(count):
            base = rng.uniform(horizon + 10 * scale, height)
            size = (base - horizon) / height * scale
            person_h = size * rng.uniform(50, 90)
            cx = rng.uniform(0, width)
            body = ((rows - (base - person_h / 2)) / (person_h / 2)) ** 2 + (
                (columns - cx) / (person_h / 7)
            ) ** 2 < 1
            if name == "bicyclist":
                wheel = ((rows - base + person_h / 6) ** 2 + (columns - cx) ** 2) < (person_h / 5) ** 2
                body |= wheel & ~(
                    ((rows - base + person_h / 6) ** 2 + (columns - cx) ** 2) < (person_h / 8) ** 2
                )
            colour = rng.uniform([30, 20, 20], [200, 160, 160])
            _paint(photo, labels, body, ids[name], colour, rng, 0.7, 20)


def thin_scene(seed: int, size: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """One photo (size, size, 3) uint8 with thin curved lines, and its 0/255 mask."""
    rng = np.random.default_rng(seed)
    height = width = size + int(rng.integers(-60, 60))
    background = rng.uniform(90, 170, size=3)
    photo = (
        background
        + _texture(rng, (height, width), 6, 20)[..., None]
        + _texture(rng, (height, width), 1, 8)[..., None]
    )
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(3, 7)):  # a tree of curved branches from a random root
        stack = [
            (
                rng.uniform(0, height),
                rng.uniform(0, width),
                rng.uniform(0, 2 * np.pi),
                rng.uniform(2.5, 4.5),
                0,
            )
        ]
        while stack:
            y, x, angle, thickness, depth = stack.pop()
            for _ in range(int(rng.integers(60, 200))):
                angle += rng.normal(0, 0.08)
                y, x = y + np.sin(angle), x + np.cos(angle)
                if not (0 <= y < height and 0 <= x < width):
                    break
                radius = thickness / 2
                top, bottom = int(max(y - radius, 0)), int(min(y + radius + 1, height))
                left, right = int(max(x - radius, 0)), int(min(x + radius + 1, width))
                patch_rows, patch_columns = np.mgrid[top:bottom, left:right]
                mask[top:bottom, left:right] |= (patch_rows - y) ** 2 + (patch_columns - x) ** 2 <= radius**2
                if depth < 3 and rng.random() < 0.01:
                    stack.append(
                        (
                            y,
                            x,
                            angle + rng.choice([-1, 1]) * rng.uniform(0.4, 1.0),
                            max(thickness * 0.7, 1.0),
                            depth + 1,
                        )
                    )
    darker = rng.uniform(35, 70)
    vessel = background - darker + _texture(rng, (height, width), 1, 6)[..., None]
    soft = ndimage.gaussian_filter(mask.astype(float), 0.7)[..., None]
    photo = photo * (1 - soft) + vessel * soft
    return photo.clip(0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def write_folder(root: Path, scene, counts: dict[str, int], seed: int = 0, classes=None) -> Path:
    root = Path(root)
    offset = seed * 100_000
    for split, count in counts.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            photo, mask = scene(offset + SPLIT_SEEDS[split] * 10_000 + index)
            name = f"{split}-{index:04d}"
            Image.fromarray(photo).save(root / split / "images" / f"{name}.jpg", quality=92)
            Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def large_street_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``street_scene`` drawn at 360x480 (``street-large``)."""
    return street_scene(seed, *LARGE_STREET_SIZE)


#: Each kind: (scene function of a seed, photos per split, class names or None for a 0/255 mask).
KINDS = {
    "street": (street_scene, {"train": 240, "valid": 40, "test": 40}, STREET_CLASSES),
    "street-large": (large_street_scene, {"train": 370, "valid": 100, "test": 40}, STREET_CLASSES),
    "thin": (thin_scene, {"train": 30, "valid": 8, "test": 10}, None),
}


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[1] not in KINDS:
        raise SystemExit(__doc__)
    kind, root = argv[1], Path(argv[2])
    scene, counts, classes = KINDS[kind]
    write_folder(root, scene, counts, classes=classes)
    print(f"wrote {kind} dataset to {root}")


if __name__ == "__main__":
    main(sys.argv)
