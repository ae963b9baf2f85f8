"""Tiled inference at native resolution: time and peak memory of
``segkit.inference.tiling.predict_tiled_mask``.

One binary UNet with ``base_channels=4`` (random weights, BatchNorm folded as ``segkit predict`` loads
it), tile 256, overlap 0.25, Gaussian blend, batch 4, on a synthetic uint8 RGB photo of each size.
Each size runs in a fresh Python process, so that process's memory is this size's alone:

- ``seconds``: the ``predict_tiled_mask`` call, timed inside that process (after a one-tile warm-up
  call, which pays for oneDNN's kernel selection); pytest-benchmark's own figure is the whole child
  process (start, imports, photo, warm-up, call), kept for ``compare``;
- ``peak_rss_mb``: the process's resident-set high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``)
  after the call: everything, i.e. Python, torch and the model, the uint8 photo (generated band by
  band, no float copy), the output mask and the peak of the tiling itself;
- ``before_call_mb``: the resident set just before the call (photo and warm-up included), so
  ``peak_rss_mb - before_call_mb`` is what the call added at its peak: the mask, one band of float
  buffers, the model's activations for one batch of tiles, and allocator slack.

By default only 2000x2000 runs (some seconds on 2 cores). 8000x8000 (1764 tiles; minutes on 2 cores)
and 20000x20000 (~11000 tiles, a 1.2 GB photo) are marked ``slow``::

    python -m pytest benchmarks/test_tiling.py -p no:randomly               # 2000x2000
    python -m pytest benchmarks/test_tiling.py -p no:randomly -m slow       # 8000 and 20000

``test_predict_tiled_tiff_time_and_peak_memory`` measures the same sizes from a tiled TIFF photo read
band by band (``segkit.data.tiff``, the photo never held) to a tiled TIFF mask; ``-k tiff`` selects it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TILE, OVERLAP, BATCH_SIZE, BASE_CHANNELS = 256, 0.25, 4, 4

#: What both children start with: the arguments, ``rss_mb()``, and a narrow binary UNet (random weights,
#: BatchNorm folded as ``segkit predict`` loads it) ready for tiled inference.
SETUP = r"""
import json, os, resource, sys, time
from pathlib import Path
import numpy as np
import torch
import segkit
from segkit.inference.predictor import IMAGENET_NORMALIZATION, TrainedModel
from segkit.execution.fast_path import prepare_for_inference
from segkit.task import BinaryTask
from segkit.inference.tiling import TilingStats, predict_tiled_mask, tile_positions

arguments = json.loads(sys.argv[1])
size, tile, overlap, batch_size, base_channels = (arguments[key] for key in
    ("size", "tile", "overlap", "batch_size", "base_channels"))

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

torch.manual_seed(0)
model = segkit.create_model("unet", in_channels=3, out_channels=1, base_channels=base_channels)
trained = TrainedModel(
    model=prepare_for_inference(model, "cpu"), model_name="unet", image_size=tile,
    normalization=IMAGENET_NORMALIZATION, threshold=0.5, checkpoint={"in_channels": 3},
    path=Path("synthetic.pt"), device=torch.device("cpu"), task=BinaryTask(),
)
"""

CHILD = (
    SETUP
    + r"""
rng = np.random.default_rng(0)
photo = np.empty((size, size, 3), dtype=np.uint8)  # filled band by band: no big temporary
for top in range(0, size, 512):
    photo[top : top + 512] = rng.integers(0, 256, photo[top : top + 512].shape, dtype=np.uint8)
predict_tiled_mask(trained, photo[:tile, :tile], tile, overlap, batch_size=batch_size)  # warm-up
before_call_mb = rss_mb()
stats = TilingStats()
start = time.perf_counter()
mask = predict_tiled_mask(trained, photo, tile, overlap, batch_size=batch_size, stats=stats)
seconds = time.perf_counter() - start
assert mask.shape == (size, size) and mask.dtype == bool
assert stats.tiles == len(tile_positions(size, size, tile, overlap))
print(json.dumps({
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    "before_call_mb": before_call_mb,
    "photo_mb": photo.nbytes / 1e6,
    "mask_mb": mask.nbytes / 1e6,
    "tiles": stats.tiles,
    "accumulator_shape": list(stats.accumulator_shape),
    "peak_float_mb": stats.peak_float_elements * 4 / 1e6,
    "torch_threads": torch.get_num_threads(),
    "foreground_fraction": float(mask.mean()),
}))
"""
)


def run_size(size: int) -> dict:
    arguments = {
        "size": size,
        "tile": TILE,
        "overlap": OVERLAP,
        "batch_size": BATCH_SIZE,
        "base_channels": BASE_CHANNELS,
    }
    return run_child(CHILD, arguments, f"the {size}x{size} run")


def run_child(code: str, arguments: dict, what: str) -> dict:
    """Run ``code`` in a fresh Python process with ``arguments`` (JSON); its last line of output, parsed."""
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arguments)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{what} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


SIZES = [2000, pytest.param(8000, marks=pytest.mark.slow), pytest.param(20000, marks=pytest.mark.slow)]


@pytest.mark.parametrize("size", SIZES)
def test_predict_tiled_mask_time_and_peak_memory(benchmark, pytestconfig, size):
    figures: dict = {}
    benchmark.pedantic(lambda: figures.update(run_size(size)), rounds=1, iterations=1, warmup_rounds=0)
    whole_float_input_mb = 3 * size * size * 4 / 1e6
    benchmark.extra_info.update(
        size=size,
        tile=TILE,
        overlap=OVERLAP,
        batch_size=BATCH_SIZE,
        base_channels=BASE_CHANNELS,
        whole_float_input_mb=whole_float_input_mb,
        **{key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()},
    )
    pytestconfig.segkit_bench_lines.append(
        f"tiled predict_tiled_mask {size}x{size} ({figures['tiles']} tiles of {TILE}, overlap {OVERLAP}, "
        f"unet base_channels={BASE_CHANNELS}, {figures['torch_threads']} threads): "
        f"{figures['seconds']:.1f} s, peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(RSS before the call {figures['before_call_mb']:.0f} MB; photo {figures['photo_mb']:.0f} MB uint8, "
        f"mask {figures['mask_mb']:.0f} MB; band float buffers {figures['peak_float_mb']:.1f} MB; "
        f"a whole-image float input alone would be {whole_float_input_mb:.0f} MB)"
    )
    # one band of floats, whatever the height: (K, tile, W)
    assert figures["accumulator_shape"] == [1, TILE, size]


# -- a TIFF photo streamed band by band, the mask written as a tiled TIFF ----------------------------------

#: The same model and tiling, on a tiled (256 x 256, deflate) RGB TIFF of the photo, read band by band
#: through ``segkit.data.tiff.open_tiff_rows`` (the photo is never held whole), the mask written with
#: ``segkit.data.tiff.write_mask_tiffs`` (tile by tile): what ``segkit predict photo.tif --mask-format tiff``
#: does. The TIFF is generated tile by tile in the parent, so the child holds no photo at all.
TIFF_CHILD = (
    SETUP
    + r"""
import tifffile
from segkit.data.imageio import pixel_limit
from segkit.data.tiff import TiffRows, open_tiff_rows, write_mask_tiffs

photo, out = Path(arguments["photo"]), Path(arguments["out"])
warm_up = np.zeros((tile, tile, 3), np.uint8)
predict_tiled_mask(trained, warm_up, tile, overlap, batch_size=batch_size)
before_call_mb = rss_mb()
stats = TilingStats()
start = time.perf_counter()
with pixel_limit(size * size):  # predict's --max-pixels
    source = open_tiff_rows(photo)
assert isinstance(source, TiffRows)
mask = predict_tiled_mask(trained, source, tile, overlap, batch_size=batch_size, stats=stats)
write_mask_tiffs(out, "photo", trained.task, mask)
seconds = time.perf_counter() - start
assert mask.shape == (size, size) and mask.dtype == bool
assert stats.tiles == len(tile_positions(size, size, tile, overlap))
with tifffile.TiffFile(out / "photo_mask.tif") as tif:
    assert tif.pages[0].is_tiled and tif.pages[0].shape == (size, size)
print(json.dumps({
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    "before_call_mb": before_call_mb,
    "photo_file_mb": photo.stat().st_size / 1e6,
    "segments_decoded": source.segments_decoded,
    "mask_mb": mask.nbytes / 1e6,
    "mask_file_mb": (out / "photo_mask.tif").stat().st_size / 1e6,
    "tiles": stats.tiles,
    "accumulator_shape": list(stats.accumulator_shape),
    "peak_float_mb": stats.peak_float_elements * 4 / 1e6,
    "torch_threads": torch.get_num_threads(),
}))
"""
)


def write_random_tiled_tiff(path, size: int) -> None:
    """A ``size`` x ``size`` random RGB TIFF, 256 x 256 tiles, deflate, generated one tile at a time."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    count = (-(-size // 256)) ** 2
    tiles = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(count))
    tifffile.imwrite(
        path,
        tiles,
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
    )


def run_tiff_size(size: int, folder) -> dict:
    photo = folder / "photo.tif"
    write_random_tiled_tiff(photo, size)
    arguments = {
        "size": size,
        "tile": TILE,
        "overlap": OVERLAP,
        "batch_size": BATCH_SIZE,
        "base_channels": BASE_CHANNELS,
        "photo": str(photo),
        "out": str(folder),
    }
    return run_child(TIFF_CHILD, arguments, f"the {size}x{size} TIFF run")


@pytest.mark.parametrize("size", SIZES)
def test_predict_tiled_tiff_time_and_peak_memory(benchmark, pytestconfig, tmp_path, size):
    figures: dict = {}
    benchmark.pedantic(
        lambda: figures.update(run_tiff_size(size, tmp_path)), rounds=1, iterations=1, warmup_rounds=0
    )
    benchmark.extra_info.update(
        size=size,
        tile=TILE,
        overlap=OVERLAP,
        batch_size=BATCH_SIZE,
        base_channels=BASE_CHANNELS,
        **{key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()},
    )
    pytestconfig.segkit_bench_lines.append(
        f"tiled TIFF photo -> tiled TIFF mask {size}x{size} ({figures['tiles']} tiles of {TILE}, overlap "
        f"{OVERLAP}, unet base_channels={BASE_CHANNELS}, {figures['torch_threads']} threads): "
        f"{figures['seconds']:.1f} s, peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(RSS before the call {figures['before_call_mb']:.0f} MB, no photo held; photo file "
        f"{figures['photo_file_mb']:.0f} MB, {figures['segments_decoded']} segments decoded; mask "
        f"{figures['mask_mb']:.0f} MB; band float buffers {figures['peak_float_mb']:.1f} MB)"
    )
    assert figures["accumulator_shape"] == [1, TILE, size]
