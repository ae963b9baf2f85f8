"""Tiled inference at native resolution: time and peak memory of ``segkit.tiling.predict_tiled_mask``.

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
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TILE, OVERLAP, BATCH_SIZE, BASE_CHANNELS = 256, 0.25, 4, 4

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import torch
import segkit
from pathlib import Path
from segkit.inference import IMAGENET_NORMALIZATION, TrainedModel
from segkit.speed import prepare_for_inference
from segkit.task import BinaryTask
from segkit.tiling import TilingStats, predict_tiled_mask, tile_positions

size, tile, overlap, batch_size, base_channels = (json.loads(sys.argv[1])[key] for key in
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


def run_size(size: int) -> dict:
    arguments = {
        "size": size,
        "tile": TILE,
        "overlap": OVERLAP,
        "batch_size": BATCH_SIZE,
        "base_channels": BASE_CHANNELS,
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(arguments)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"the {size}x{size} run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "size",
    [
        2000,
        pytest.param(8000, marks=pytest.mark.slow),
        pytest.param(20000, marks=pytest.mark.slow),
    ],
)
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
