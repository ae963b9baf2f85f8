"""Time from ``segkit run`` to its first training step on folders of 1k, 10k and 100k small photos.

A folder dataset checks every photo and mask before training (``segkit.data.file_checks``). The first
run on a folder checks them all, in parallel over the cores; later runs read the file index kept in
``ROOT/.segkit-cache/`` and only ``stat`` each file. Each measurement is a fresh Python process
running ``segkit run`` (unet, base_channels=4, 64x64, batch 32, no loader workers, 1% valid) with the
training step replaced by a stop, so it times exactly: start-up and imports, listing and checking the
files, splitting, building the model and loaders, and the first batch:

- ``cold_s``: no index yet (``.segkit-cache`` removed): every file is checked;
- ``warm_s``: the same command again, the index in place;

Photos are 64x64 JPEGs and masks 64x64 PNGs, generated once into pytest's cache folder
(``.pytest_cache/d/many-files-N``; 100k pairs take about a minute to write) and made an hour old, so
the index may remember them (it does not trust files modified in the last two seconds)::

    python -m pytest benchmarks/test_many_files.py -p no:randomly              # 1k
    python -m pytest benchmarks/test_many_files.py -p no:randomly -m slow      # 10k and 100k
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHILD = r"""
import sys, time
start = time.perf_counter()
from click.testing import CliRunner
import segkit.engine.step as step
from segkit.cli import cli

class FirstStep(Exception):
    pass

def stop(self, *args, **kwargs):
    raise FirstStep(time.perf_counter() - start)

step.TrainingStep.__call__ = stop
result = CliRunner().invoke(cli, sys.argv[2:])
if not isinstance(result.exception, FirstStep):
    sys.exit(f"no first step: {result.exception!r}\n{result.output[-3000:]}")
print("SECONDS", result.exception.args[0])
"""


def write_folder(root: Path, count: int) -> None:
    """``count`` 64x64 JPEG photos and 0/255 PNG masks, deterministic, an hour old."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hour_ago = time.time() - 3600
    for index in range(count):
        image = root / "images" / f"{index:06d}.jpg"
        mask = root / "masks" / f"{index:06d}.png"
        Image.fromarray(np.roll(base, index % 64, axis=1)).save(image, quality=85)
        labels = np.zeros((64, 64), np.uint8)
        labels[16:48, index % 32 : index % 32 + 16] = 255
        Image.fromarray(labels).save(mask)
        os.utime(image, (hour_ago, hour_ago))
        os.utime(mask, (hour_ago, hour_ago))
    (root / "complete").write_text(str(count))


def seconds_to_first_step(root: Path, out: Path) -> float:
    command = [
        sys.executable, "-c", CHILD, "--", "run", "--model", "unet", "--model-option", "base_channels=4",
        "--dataset", "folder", "--data-path", str(root), "--image-size", "64", "--batch-size", "32",
        "--epochs", "1", "--device", "cpu", "--workers", "0", "--out", str(out), "--quiet",
        "--dataset-option", "valid_fraction=0.01", "--dataset-option", "test_fraction=0",
    ]  # fmt: skip
    environment = {key: value for key, value in os.environ.items() if key != "SEGKIT_CACHE_DIR"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return float(done.stdout.split("SECONDS")[-1])


@pytest.mark.parametrize(
    "count",
    [1000, pytest.param(10_000, marks=pytest.mark.slow), pytest.param(100_000, marks=pytest.mark.slow)],
)
def test_time_to_first_step(benchmark, pytestconfig, tmp_path, count):
    root = pytestconfig.cache.mkdir(f"many-files-{count}")
    if not (root / "complete").is_file():
        write_folder(root, count)
    shutil.rmtree(root / ".segkit-cache", ignore_errors=True)
    cold = seconds_to_first_step(root, tmp_path)
    assert (root / ".segkit-cache" / "file-index.json").is_file()
    warm = benchmark.pedantic(seconds_to_first_step, args=(root, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update({"files": 2 * count, "cold_s": round(cold, 2), "warm_s": round(warm, 2)})
    print(json.dumps({"pairs": count, "cold_s": round(cold, 2), "warm_s": round(warm, 2)}))
