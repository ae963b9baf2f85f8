"""``segkit predict``'s peak memory with its default outputs (mask and overlay), measured as the process's
resident-set high-water mark: a large photo adds about its own 8-bit pixels, never a float copy of it.
(An 8000 x 8000 JPEG peaked at 2.8 GB, where the README gave 1.1 GB: the overlay was float32 arithmetic
on the whole photo, fancy-indexed copies of it, and the decoder's EXIF step copied the photo once more.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

#: Runs ``segkit ARGS`` in a child and prints the child's peak resident set (bytes): a fresh wrapper
#: per measurement, so the figure is that command's alone.
PEAK_OF_CHILD = r"""
import resource, subprocess, sys
result = subprocess.run([sys.executable, "-m", "segkit", *sys.argv[1:]], capture_output=True, text=True)
if result.returncode:
    sys.exit(result.stdout + result.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def smooth_photo(side: int) -> np.ndarray:
    """A photo-like picture (gradients, stripes, a little noise): JPEG compresses it as it would a photo."""
    rows = np.arange(side, dtype=np.float32)[:, None]
    columns = np.arange(side, dtype=np.float32)[None, :]
    red = 128 + 100 * np.sin(columns / 90) * np.cos(rows / 70)
    green = 128 + 100 * np.sin((columns + rows) / 150) + np.zeros_like(red)
    blue = (columns * 3 + rows) % 256 + np.zeros_like(red)
    noise = np.random.default_rng(0).integers(-12, 12, (side, side, 3))
    return np.clip(np.stack([red, green, blue], -1) + noise, 0, 255).astype(np.uint8)


def peak_bytes(*args: object) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, *map(str, args)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_large_photo_adds_no_float_copy_of_itself(tiny_checkpoint, tmp_path, suffix):
    side = 4000
    Image.fromarray(smooth_photo(side)).save(tmp_path / f"large{suffix}")
    Image.fromarray(smooth_photo(64)).save(tmp_path / f"small{suffix}")
    flags = ("--tile", 256, "--device", "cpu", "--max-pixels", 100_000_000)
    small = peak_bytes("predict", tiny_checkpoint, tmp_path / f"small{suffix}", "-o", tmp_path / "s", *flags)
    large = peak_bytes("predict", tiny_checkpoint, tmp_path / f"large{suffix}", "-o", tmp_path / "l", *flags)
    assert (tmp_path / "l" / "large_overlay.png").is_file() and (tmp_path / "l" / "large_mask.png").is_file()
    float_copy = side * side * 3 * 4  # 192 MB; the photo's own pixels are 48 MB (64 MB as Pillow holds them)
    assert large - small < float_copy, (
        f"{side}x{side}{suffix} peaked at {large / 1e6:.0f} MB, a 64x64 photo at {small / 1e6:.0f} MB: "
        f"the large photo added {(large - small) / 1e6:.0f} MB, more than a float32 copy of it "
        f"({float_copy / 1e6:.0f} MB)"
    )
