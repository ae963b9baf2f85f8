"""The run's data (segkit.engine.data, segkit.data.splits): how many loader workers "auto" means, and photos
decoded once per run when the splits are read in the training process (segkit.data.datasets.DecodedCache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import write_folder_layout
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import segkit
import segkit.data.datasets
from segkit.config.settings import DEFAULTS
from segkit.data import splits
from segkit.data.datasets import DecodedCache
from segkit.data.splits import resolve_workers
from segkit.engine.data import RunData
from segkit.engine.distributed import ProcessGroup


class Plain:
    """A dataset with no opinion about workers."""


class InMemory:
    in_memory = True


@pytest.mark.parametrize(
    "cores, device, dataset, expected",
    [
        (1, "cpu", Plain(), 0),
        (2, "cpu", Plain(), 0),  # a worker would take a core from the two training threads
        (3, "cpu", Plain(), 2),
        (16, "cpu", Plain(), 4),
        (2, "cuda", Plain(), 2),
        (16, "cuda", Plain(), 8),
        (16, "cpu", InMemory(), 0),
    ],
)
def test_auto_workers_by_cores_device_and_dataset(monkeypatch, cores, device, dataset, expected):
    monkeypatch.setattr(splits.os, "cpu_count", lambda: cores)
    assert resolve_workers("auto", dataset, torch.device(device)) == expected
    assert resolve_workers(3, dataset, torch.device(device)) == 3


@given(
    sizes=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), max_size=12),
    limit=st.integers(0, 4000),
)
@settings(deadline=None, max_examples=60)
def test_the_cache_keeps_photos_in_order_until_the_next_would_pass_its_limit(sizes, limit):
    cache = DecodedCache(limit)
    kept, used = {}, 0
    for number, (height, width) in enumerate(sizes):
        image = Image.new("RGB", (width, height))
        labels = np.zeros((height, width), np.uint8)
        cache.put(f"p{number}", image, labels)
        cost = height * width * 3 + height * width  # RGB bytes + one byte of label per pixel
        if used + cost <= limit:
            kept[f"p{number}"] = (image, labels)
            used += cost
    assert cache.bytes == used <= limit and len(cache) == len(kept)
    for number in range(len(sizes)):
        found = cache.get(f"p{number}")
        assert (found is None) == (f"p{number}" not in kept)
        if found is not None:
            assert found[0] is kept[f"p{number}"][0] and found[1] is kept[f"p{number}"][1]


def run_values(root, **changes):
    values = dict(DEFAULTS)
    values.update(
        dataset="folder",
        data_path=root,
        dataset_options={"valid_fraction": 0.25, "test_fraction": 0},
        image_size=32,
        progressive_sizes=[16, 24, 32],
        workers=0,
        augment="default",
    )
    values.update(changes)
    return values


@pytest.fixture
def decodes(monkeypatch):
    """Counts each photo's decodes, by file name."""
    counted: dict[str, int] = {}
    real = segkit.data.datasets.read_image

    def counting(path, *args, **kwargs):
        counted[path.name] = counted.get(path.name, 0) + 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(segkit.data.datasets, "read_image", counting)
    return counted


def read_everything(data: RunData, epochs: int) -> None:
    for epoch in range(epochs):
        train = data.train_set_at(epoch / epochs)
        for index in range(len(train)):
            train[index]
        for index in range(len(data.valid_set)):
            data.valid_set[index]


def test_without_workers_each_photo_is_decoded_once_across_epochs_and_sizes(tmp_path, decodes):
    write_folder_layout(tmp_path, [f"p{i}" for i in range(8)], size=(40, 48))
    data = RunData(run_values(tmp_path), torch.device("cpu"), ProcessGroup())
    assert data.workers == 0 and data.decoded is not None
    sizes = set()
    for epoch in range(6):
        train = data.train_set_at(epoch / 6)
        sizes.add(train[0]["image"].shape[-1])
        for index in range(len(train)):
            train[index]
        for index in range(len(data.valid_set)):
            data.valid_set[index]
    assert sizes == {16, 24, 32}, "the train split was rebuilt at each progressive size"
    assert sorted(decodes) == [f"p{i}.png" for i in range(8)] and set(decodes.values()) == {1}
    assert len(data.decoded) == 8


def test_kept_photos_give_the_same_items_as_decoded_ones(tmp_path):
    write_folder_layout(tmp_path, [f"p{i}" for i in range(4)], size=(40, 48))
    values = run_values(tmp_path, augment="none", progressive_sizes=[])
    kept = RunData(values, torch.device("cpu"), ProcessGroup())
    fresh = segkit.create_dataset(
        "folder",
        root=tmp_path,
        split="train",
        image_size=32,
        augment="none",
        valid_fraction=0.25,
        test_fraction=0,
    )
    for _ in range(2):  # the second pass comes from the cache
        for index in range(len(fresh)):
            ours, theirs = kept.train_set[index], fresh[index]
            assert torch.equal(ours["image"], theirs["image"]) and torch.equal(ours["mask"], theirs["mask"])


def test_with_workers_nothing_is_kept_by_the_engine(tmp_path, decodes):
    write_folder_layout(tmp_path, [f"p{i}" for i in range(4)], size=(40, 48))
    data = RunData(run_values(tmp_path, workers=1), torch.device("cpu"), ProcessGroup())
    assert data.decoded is None and data.train_set.decoded_cache is None
    read_everything(data, 2)
    assert set(decodes.values()) == {2}, "read in this process here, but not kept: workers would lose it"
