"""Data pipeline throughput: decoded, augmented, batched 256x256 Oxford-IIIT Pet samples per second.

Run with ``python -m pytest benchmarks/test_data_pipeline.py``; each result's ``extra_info`` holds
``images_per_second`` (training split of the real 300-image sample, 270 photos, "default"
augmentation, batch 32, one full pass per round, workers kept alive between rounds). Without workers
the transforms run on the main process's torch threads; on a busy machine several intra-op threads
fight over the cores, so a third case measures that with one thread. Training uses
worker processes by default and pins memory on CUDA; that is the engine's choice, measured here
without pinning because this machine has no GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import segkit

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "oxford-iiit-pet-mini"
IMAGE_SIZE = 256
BATCH_SIZE = 32

pytestmark = pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"real sample not found at {REAL_SAMPLE}")


@pytest.mark.parametrize(
    "num_workers, torch_threads",
    [(0, None), (0, 1), (2, None)],
    ids=["0-workers", "0-workers-1-torch-thread", "2-workers"],
)
def test_augmented_training_batches_per_second(benchmark, num_workers, torch_threads):
    threads_before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        _measure(benchmark, num_workers)
    finally:
        torch.set_num_threads(threads_before)


def _measure(benchmark, num_workers):
    dataset = segkit.create_dataset("oxford_pet", root=REAL_SAMPLE, split="train", image_size=IMAGE_SIZE)
    loader = DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )

    def one_pass() -> int:
        count = 0
        for batch in loader:
            assert batch["image"].shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
            count += batch["image"].shape[0]
        return count

    one_pass()  # warm-up: start the workers, fill the page cache
    count = benchmark.pedantic(one_pass, rounds=2, iterations=1)
    assert count == len(dataset) == 270
    benchmark.extra_info.update(
        images_per_second=round(count / benchmark.stats.stats.mean, 1),
        images_per_pass=count,
        num_workers=num_workers,
        batch_size=BATCH_SIZE,
        image_size=IMAGE_SIZE,
        augment="default",
        # Workers always run with one torch thread; this is the main process's count.
        torch_threads=torch.get_num_threads(),
    )
