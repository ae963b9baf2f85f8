"""Planning a run (segkit.planning): the dataset fingerprint against independent references, its cache,
the auto planner's rules on fingerprints and timings made up for the test, and `segkit plan` /
`segkit run --recipe auto` end to end on tiny folders."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import rewrite_in_place, stored_png, write_folder_layout
from fixtures import error_line, invoke, only_run_dir, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import measure

import segkit
from segkit.errors import UsageError
from segkit.planning import PlanRequest, auto, planning_allowance
from segkit.planning import fingerprint as fingerprint_module
from segkit.planning.fingerprint import Fingerprint, compute_fingerprint
from segkit.planning.machine import Candidate, time_in_turn


class MaskList(torch.utils.data.Dataset):
    """A binary dataset of given masks (what the fingerprint reads: ``original_mask`` and one item)."""

    def __init__(self, masks):
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def original_mask(self, index):
        return self.masks[index], None

    def __getitem__(self, index):
        mask = self.masks[index]
        return {
            "image": torch.zeros(3, *mask.shape),
            "mask": torch.from_numpy(mask[None].astype(np.float32)),
            "original_size": mask.shape,
        }


@st.composite
def binary_masks(draw):
    count = draw(st.integers(1, 5))
    height, width = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    masks = []
    for _ in range(count):
        mask = np.zeros((height, width), np.uint8)
        for _ in range(draw(st.integers(0, 4))):
            top, left = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            mask[top : top + draw(st.integers(1, 12)), left : left + draw(st.integers(1, 12))] = 1
        masks.append(mask)
    return masks


@given(binary_masks())
@settings(deadline=None)
def test_fingerprint_of_binary_masks_matches_independent_counts(masks):
    found = compute_fingerprint(MaskList(masks))
    fractions = [mask.mean() for mask in masks]
    assert found.images == len(masks) and found.sampled == len(masks)
    assert found.foreground_fraction[1] == pytest.approx(np.percentile(fractions, 50), abs=1e-5)
    assert found.empty_share == pytest.approx(np.mean([f == 0 for f in fractions]), abs=1e-4)
    objects = [measure.label(mask, connectivity=2).max() for mask in masks]
    assert found.objects_per_image == np.median(objects)
    assert found.class_share[0] == pytest.approx(
        sum(m.sum() for m in masks) / sum(m.size for m in masks), abs=1e-5
    )


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_structure_width_of_a_long_line_is_its_width(width):
    mask = np.zeros((60, 400), np.uint8)
    mask[20 : 20 + width, 10:390] = 1
    found = compute_fingerprint(MaskList([mask]))
    assert found.structure_width_px == pytest.approx(width, rel=0.15)
    assert found.thinnest_width_px() == pytest.approx(width, rel=0.15)


def test_a_disc_is_wide_and_one_object():
    yy, xx = np.mgrid[:200, :200]
    mask = ((yy - 100) ** 2 + (xx - 100) ** 2 < 60**2).astype(np.uint8)
    found = compute_fingerprint(MaskList([mask]))
    assert found.objects_per_image == 1 and found.structure_width_px > 40


def test_multiclass_fingerprint_counts_classes_and_leaves_out_the_background(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\npole\nroad\n")
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 10:12] = 1  # a 2-px pole
    labels[30:, :] = 2  # road
    labels[0, 0] = 255  # ignored
    for name in ("a", "b"):
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(labels).save(root / "masks" / f"{name}.png")
    dataset = segkit.create_dataset("folder", root=root, split="train", valid_fraction=0, test_fraction=0)
    found = compute_fingerprint(dataset)
    counted = labels[labels != 255]
    expected = [np.mean(counted == k) for k in range(3)]
    assert found.class_share == pytest.approx(expected, abs=1e-5)
    assert found.class_width_px[0] is None  # the background is no structure
    assert found.thinnest_width_px() == pytest.approx(2, rel=0.2)
    assert (found.height, found.width) == ([40, 40, 40], [60, 60, 60])


def test_the_fingerprint_is_cached_until_a_file_changes(tmp_path, monkeypatch):
    write_folder_layout(tmp_path, ["a", "b", "c"])
    hour_ago = time.time() - 3600
    for path in tmp_path.rglob("*.png"):  # older than the racy window: the fingerprint is kept
        os.utime(path, (hour_ago, hour_ago))
    dataset = segkit.create_dataset("folder", root=tmp_path, split="train", valid_fraction=0, test_fraction=0)
    computed = []
    real = fingerprint_module.compute_fingerprint
    monkeypatch.setattr(fingerprint_module, "compute_fingerprint", lambda *a: computed.append(1) or real(*a))
    first = fingerprint_module.fingerprint(dataset)
    assert fingerprint_module.fingerprint(dataset) == first and len(computed) == 1
    mask = tmp_path / "masks" / "b.png"
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(mask)
    os.utime(mask, (time.time() + 5, time.time() + 5))
    changed = fingerprint_module.fingerprint(dataset)
    assert len(computed) == 2 and changed.empty_share > first.empty_share


def test_a_same_sized_mask_rewrite_with_a_new_mtime_computes_the_fingerprint_again(tmp_path, monkeypatch):
    """Size unchanged, content and mtime changed: the cache key must hold the mtime to notice."""
    write_folder_layout(tmp_path, ["a", "b", "c"])
    mask = tmp_path / "masks" / "b.png"
    full = np.full((20, 28), 255, np.uint8)
    mask.write_bytes(stored_png(full))  # uncompressed: an empty mask of this shape is as long
    hour_ago = time.time() - 3600
    for path in tmp_path.rglob("*.png"):
        os.utime(path, (hour_ago, hour_ago))
    dataset = segkit.create_dataset("folder", root=tmp_path, split="train", valid_fraction=0, test_fraction=0)
    computed = []
    real = fingerprint_module.compute_fingerprint
    monkeypatch.setattr(fingerprint_module, "compute_fingerprint", lambda *a: computed.append(1) or real(*a))
    first = fingerprint_module.fingerprint(dataset)
    assert fingerprint_module.fingerprint(dataset) == first and len(computed) == 1
    assert first.empty_share == 0
    rewrite_in_place(mask, stored_png(np.zeros_like(full)), hour_ago + 60)
    changed = fingerprint_module.fingerprint(dataset)
    assert len(computed) == 2
    assert changed.empty_share == pytest.approx(1 / 3, abs=1e-4)


def test_a_fingerprint_of_files_written_just_now_is_not_kept(tmp_path, monkeypatch):
    """A file system clock ticks coarser than a nanosecond (a second on some): a same-sized rewrite
    within the tick keeps the mtime, so a fingerprint of files that recent is computed again next time
    rather than kept (as the file index does, ``segkit.data.file_checks.RACY_SECONDS``)."""
    write_folder_layout(tmp_path, ["a", "b", "c"])
    mask = tmp_path / "masks" / "b.png"
    full = np.full((20, 28), 255, np.uint8)
    mask.write_bytes(stored_png(full))
    dataset = segkit.create_dataset("folder", root=tmp_path, split="train", valid_fraction=0, test_fraction=0)
    first = fingerprint_module.fingerprint(dataset)
    assert first.empty_share == 0
    tick = mask.stat().st_mtime_ns
    mask.write_bytes(stored_png(np.zeros_like(full)))  # within the same tick: the mtime does not move
    os.utime(mask, ns=(tick, tick))
    assert fingerprint_module.fingerprint(dataset).empty_share == pytest.approx(1 / 3, abs=1e-4)


# Three photos of distinct sizes, each holding a line (class 1) and a rectangle (class 2) that do not
# touch: (height, width, line (top, left, thickness, length), rectangle (top, left, height, width)).
# Heights 30, 40, 80 and widths 90, 36, 50: minimum, median and maximum all differ, the median is not
# the mean, and the tallest photo is not the widest.
DRAWN = [
    (30, 90, (5, 5, 3, 40), (15, 60, 10, 20)),
    (40, 36, (3, 2, 2, 30), (12, 8, 14, 16)),
    (80, 50, (70, 4, 5, 44), (10, 10, 30, 25)),
]


def rectangle_width(height: int, width: int) -> float:
    """Twice the area over the pixel edges around an axis-aligned ``height`` x ``width`` rectangle:
    2hw / 2(h + w), which is about h for a long line h pixels thick."""
    return height * width / (height + width)


def test_fingerprint_of_photos_of_different_sizes_and_drawn_shapes(tmp_path):
    root = tmp_path / "drawn"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nline\nblock\n")
    for index, (height, width, line, block) in enumerate(DRAWN):
        labels = np.zeros((height, width), np.uint8)
        top, left, thickness, length = line
        labels[top : top + thickness, left : left + length] = 1
        top, left, rows, columns = block
        labels[top : top + rows, left : left + columns] = 2
        photo = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "images" / f"p{index}.png")
        Image.fromarray(labels).save(root / "masks" / f"p{index}.png")
    dataset = segkit.create_dataset("folder", root=root, split="train", valid_fraction=0, test_fraction=0)
    found = compute_fingerprint(dataset)

    assert found.images == found.sampled == 3
    assert found.height == [30, 40, 80]
    assert found.width == [36, 50, 90]
    assert found.short_side == 40
    line_widths = [rectangle_width(thickness, length) for _, _, (_, _, thickness, length), _ in DRAWN]
    block_widths = [rectangle_width(rows, columns) for _, _, _, (_, _, rows, columns) in DRAWN]
    assert sorted(line_widths)[1] == pytest.approx(120 / 43)  # the first photo's 3-pixel line
    assert found.class_width_px[0] is None
    assert found.class_width_px[1] == pytest.approx(sorted(line_widths)[1], abs=1e-3)
    assert found.class_width_px[2] == pytest.approx(sorted(block_widths)[1], abs=1e-3)
    assert found.thinnest_width_px() == pytest.approx(120 / 43, abs=1e-3)
    # every object is one drawn shape: its pixels over its photo's pixels, median over all six
    areas, fractions, shares = [], [], np.zeros(3)
    for height, width, (_, _, thickness, length), (_, _, rows, columns) in DRAWN:
        areas += [thickness * length / (height * width), rows * columns / (height * width)]
        fractions.append((thickness * length + rows * columns) / (height * width))
        shares += [height * width - thickness * length - rows * columns, thickness * length, rows * columns]
    assert found.objects_per_image == 2
    assert found.object_area == pytest.approx(np.median(areas), abs=1e-6)
    assert found.foreground_fraction[1] == pytest.approx(np.median(fractions), abs=1e-5)
    assert found.class_share == pytest.approx((shares / shares.sum()).tolist(), abs=1e-6)
    union_widths = [
        (thickness * length + rows * columns) / (thickness + length + rows + columns)
        for _, _, (_, _, thickness, length), (_, _, rows, columns) in DRAWN
    ]
    assert found.structure_width_px == pytest.approx(np.median(union_widths), abs=1e-3)


# -- the fingerprint of datasets without original masks, and its cache key (what the mutation run found) --


class Items(torch.utils.data.Dataset):
    """A dataset known only by its items (no ``original_mask``, no ``image_sizes``, no files)."""

    def __init__(self, items, task="binary", class_names=None):
        self.items, self.task = items, task
        if class_names is not None:
            self.class_names = class_names

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def shares_and_fractions(channels, valid, foreground):
    """Per class: its valid pixels over all valid pixels; per image: the foreground's share of the image."""
    labelled = sum(v.sum() for v in valid)
    shares = [
        sum((c[k] & v).sum() for c, v in zip(channels, valid, strict=True)) / labelled
        for k in range(len(channels[0]))
    ]
    return shares, [f.mean() for f in foreground]


def test_binary_items_with_ignore_and_their_original_size():
    rng = np.random.default_rng(0)
    masks = [(rng.random((6, 8)) > 0.6).astype(np.float32) for _ in range(3)]
    ignores = [rng.random((6, 8)) > 0.8 for _ in range(3)]
    items = [
        {
            "image": torch.zeros(3, 4, 4),  # resized: the photo's own size is original_size
            "mask": torch.from_numpy(mask[None]),
            "ignore": torch.from_numpy(ignore[None]),
            "original_size": (30, 50),
        }
        for mask, ignore in zip(masks, ignores, strict=True)
    ]
    found = compute_fingerprint(Items(items))
    shares, fractions = shares_and_fractions(
        [[m == 1] for m in masks], [~i for i in ignores], [m == 1 for m in masks]
    )
    assert found.task == "binary" and found.class_names == ["foreground"]
    assert found.class_share == pytest.approx(shares, abs=1e-6)
    assert found.foreground_fraction[1] == pytest.approx(np.median(fractions), abs=1e-5)
    assert (found.height, found.width, found.channels) == ([30, 30, 30], [50, 50, 50], 3)
    del items[0]["original_size"]  # then the item's own image size
    assert (compute_fingerprint(Items(items)).height, compute_fingerprint(Items(items)).width) == (
        [4] * 3,
        [4] * 3,
    )


def test_multiclass_items_count_valid_pixels_and_leave_out_the_background():
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 3, size=(7, 9)) for _ in range(2)]
    for label in labels:
        label[rng.random(label.shape) > 0.8] = 255
    items = [
        {
            "image": torch.zeros(3, 7, 9),
            "mask": torch.from_numpy(label[None]),
            "ignore": torch.from_numpy(label[None] == 255),
        }
        for label in labels
    ]
    found = compute_fingerprint(Items(items, "multiclass", ["background", "a", "b"]))
    shares, fractions = shares_and_fractions(
        [[label == k for k in range(3)] for label in labels],
        [label != 255 for label in labels],
        [(label == 1) | (label == 2) for label in labels],
    )
    assert found.class_share == pytest.approx(shares, abs=1e-6)
    assert found.foreground_fraction[1] == pytest.approx(np.median(fractions), abs=1e-5)
    assert found.class_width_px[0] is None and found.class_width_px[1] is not None


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_items_without_an_ignore_mask_count_every_pixel(task):
    labels = np.array([[0, 1, 1, 0], [0, 0, 1, 0]])
    item = {"image": torch.zeros(3, 2, 4), "mask": torch.from_numpy(labels[None])}
    names = ["background", "a"] if task == "multiclass" else None
    found = compute_fingerprint(Items([item], task, names))
    assert found.class_share[-1] == pytest.approx(3 / 8) and found.foreground_fraction[1] == pytest.approx(
        3 / 8
    )


@pytest.mark.parametrize("per_channel_ignore", [True, False, None])
def test_multilabel_items_count_each_label_over_pixels_no_channel_ignores(per_channel_ignore):
    rng = np.random.default_rng(2)
    masks = [(rng.random((2, 6, 7)) > 0.5).astype(np.float32) for _ in range(3)]
    ignores = [rng.random((2 if per_channel_ignore else 1, 6, 7)) > 0.85 for _ in range(3)]
    items = [{"image": torch.zeros(3, 6, 7), "mask": torch.from_numpy(m)} for m in masks]
    if per_channel_ignore is not None:
        for item, ignore in zip(items, ignores, strict=True):
            item["ignore"] = torch.from_numpy(ignore)
        valid = [~i.any(axis=0) for i in ignores]
    else:
        valid = [np.ones((6, 7), bool) for _ in masks]
    found = compute_fingerprint(Items(items, "multilabel", ["x", "y"]))
    shares, fractions = shares_and_fractions(
        [m == 1 for m in masks], valid, [(m == 1).any(axis=0) for m in masks]
    )
    assert found.class_share == pytest.approx(shares, abs=1e-6)
    assert found.foreground_fraction[1] == pytest.approx(np.median(fractions), abs=1e-5)


def test_objects_are_8_connected_and_empty_masks_have_no_objects():
    diagonal = np.eye(6, dtype=np.uint8)  # one line of pixels touching at their corners
    found = compute_fingerprint(MaskList([diagonal]))
    assert found.objects_per_image == 1 and found.object_area == pytest.approx(6 / 36, abs=1e-6)
    empty = compute_fingerprint(MaskList([np.zeros((5, 5), np.uint8)] * 2))
    assert (empty.objects_per_image, empty.object_area, empty.empty_share) == (0, 0.0, 1.0)
    assert empty.structure_width_px == float("inf") and empty.class_width_px == [None]
    assert empty.thinnest_width_px() == float("inf")
    assert compute_fingerprint(MaskList([np.ones((1, 1), np.uint8)])).class_share == [1.0]


def test_foreground_fraction_is_the_10th_50th_and_90th_percentile():
    masks = []
    for filled in range(11):  # 0, 10, ..., 100 of 100 pixels
        mask = np.zeros((10, 10), np.uint8)
        mask.flat[: filled * 10] = 1
        masks.append(mask)
    found = compute_fingerprint(MaskList(masks))
    assert found.foreground_fraction == pytest.approx([0.1, 0.5, 0.9], abs=1e-6)


@pytest.mark.parametrize(("share", "thinnest"), [(0.001, 2.0), (0.0009, 5.0)])
def test_thinnest_width_weighs_classes_from_the_minimum_share(share, thinnest):
    found = blobs(
        class_names=["background", "a", "b"], class_share=[0.9, share, 0.05], class_width_px=[None, 2.0, 5.0]
    )
    assert found.thinnest_width_px() == thinnest


def test_summary_names_the_median_photo_and_the_median_foreground():
    found = Fingerprint(
        images=3,
        height=[30, 40, 80],
        width=[36, 50, 90],
        channels=3,
        task="multiclass",
        class_names=["background", "a", "b"],
        class_share=[0.8, 0.1, 0.1],
        foreground_fraction=[0.05, 0.125, 0.5],
        empty_share=0.0,
        objects_per_image=2,
        object_area=0.01,
        structure_width_px=4.0,
        class_width_px=[None, 2.75, 6.0],
        sampled=3,
        classes_per_image=2,
    )
    assert found.summary() == (
        "3 images, median 50x40 px, multiclass (3 classes), foreground 12.5% of a median image, "
        "2 object(s) per image, thinnest structures ~2.8 px wide, 2 classes per image"
    )
    rare = replace(found, class_share=[0.895, 0.1, 0.005])
    assert rare.summary().endswith(", 2 classes per image, rare (under 1% of the pixels): b")
    one = replace(found, task="binary", class_names=["foreground"], class_share=[0.2], class_width_px=[3.0])
    assert "binary (1 class), foreground" in one.summary()


def test_fingerprint_of_a_dataset_without_files_samples_as_asked():
    masks = [np.full((4, 4), int(index >= 3), np.uint8) for index in range(5)]  # the last two full
    found = fingerprint_module.fingerprint(MaskList(masks), sample=2)
    assert found.sampled == 2 and found.images == 5 and found.empty_share == 0.5  # images 0 and 4


def test_the_cache_key_holds_the_sample_the_description_and_every_file_after_a_missing_one(
    tmp_path, monkeypatch
):
    write_folder_layout(tmp_path, ["a", "b", "c"])
    hour_ago = time.time() - 3600
    for path in tmp_path.rglob("*.png"):
        os.utime(path, (hour_ago, hour_ago))
    dataset = segkit.create_dataset("folder", root=tmp_path, split="train", valid_fraction=0, test_fraction=0)
    assert fingerprint_module.fingerprint(dataset, sample=2).sampled == 2
    assert fingerprint_module.fingerprint(dataset, sample=3).sampled == 3  # not the one kept for 2
    computed = []
    real = fingerprint_module.compute_fingerprint
    monkeypatch.setattr(fingerprint_module, "compute_fingerprint", lambda *a: computed.append(1) or real(*a))
    fingerprint_module.fingerprint(dataset)
    dataset.description = "another view of the same files"
    fingerprint_module.fingerprint(dataset)
    assert len(computed) == 2
    # a file gone is left out of the key, and every file after it still counts, its own mask first (the
    # computation is stubbed from here: the photo gone could not be read)
    kept = fingerprint_module.fingerprint(dataset)
    monkeypatch.setattr(fingerprint_module, "compute_fingerprint", lambda *a: computed.append(1) or kept)
    os.remove(dataset.pairs[0].image_path)
    fingerprint_module.fingerprint(dataset)
    fingerprint_module.fingerprint(dataset)
    assert len(computed) == 3
    beside = dataset.pairs[0].mask_paths[0]
    os.utime(beside, (hour_ago + 60, hour_ago + 60))
    fingerprint_module.fingerprint(dataset)
    assert len(computed) == 4


# -- the auto planner's rules -------------------------------------------------------------------------


def blobs(**changes) -> Fingerprint:
    """A pet-like fingerprint: 300 photos of about 500x375, one large object each."""
    found = Fingerprint(
        images=300, height=[300, 375, 500], width=[300, 500, 500], channels=3, task="binary",
        class_names=["foreground"], class_share=[0.3], foreground_fraction=[0.1, 0.3, 0.6],
        empty_share=0.0, objects_per_image=1, object_area=0.3, structure_width_px=80,
        class_width_px=[80.0], sampled=120,
    )  # fmt: skip
    return replace(found, **changes)


class FakeClock:
    """A planning clock that moves only as the fake training steps say."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Request(PlanRequest):
    """A request whose fingerprint and step timings are given (no dataset, no model is built): a step at
    128 px takes ``step_s_at_128`` (scaled by pixels; ``channels_last_speed`` times faster in
    channels_last), a candidate's first step ``first_factor`` times that, and each step moves the
    planning clock by its seconds, so the planning allowance and the real timing loop apply."""

    def __init__(
        self,
        found: Fingerprint,
        step_s_at_128: float,
        chosen=(),
        channels_last_speed=1.0,
        device="cpu",
        first_factor=1.5,
        **values,
    ):
        base = dict(segkit.config.settings.DEFAULTS)
        base.update(values)
        super().__init__(base, frozenset(chosen) | frozenset(values), clock=FakeClock())
        self._cache.update(fingerprint=found, device=torch.device(device))
        self.step_s_at_128 = step_s_at_128
        self.channels_last_speed = channels_last_speed
        self.first_factor = first_factor
        self.timed: list[Candidate] = []

    def item_seconds(self):
        return 0.005

    def loader_workers(self):
        return 0

    def step_seconds(self, candidate):
        speed = self.channels_last_speed if candidate.channels_last is True else 1.0
        return self.step_s_at_128 * (candidate.size / 128) ** 2 / speed

    def training_step(self, candidate):
        self.timed.append(candidate)
        seconds, taken = self.step_seconds(candidate), []

        def step():
            took = seconds * (self.first_factor if not taken else 1.0)
            taken.append(took)
            self.clock.now += took
            return took

        return step


def test_blobs_are_resized_and_cleaned_up_thin_lines_are_cropped_and_tiled():
    pets = auto.plan_auto(Request(blobs(), 0.5))
    assert "crop_size" not in pets.settings and pets.settings["image_size"] >= 128
    assert (
        pets.settings["keep_largest"] and pets.settings["fill_holes"] and pets.settings["calibrate_threshold"]
    )
    thin = auto.plan_auto(
        Request(blobs(structure_width_px=2.0, class_width_px=[2.0], objects_per_image=30), 0.5)
    )
    assert (
        thin.settings["crop_size"] == thin.settings["image_size"]
        and thin.settings["tile"] >= thin.settings["crop_size"]
    )
    assert thin.settings["progressive_sizes"] == []
    assert not thin.settings["keep_largest"] and not thin.settings["fill_holes"]
    assert "crops at native resolution" in thin.reasons["crop_size"]


def test_very_large_photos_are_cropped_even_with_wide_structures():
    plan = auto.plan_auto(Request(blobs(height=[4000] * 3, width=[6000] * 3), 0.2))
    assert "crop_size" in plan.settings


def test_multiclass_gets_cross_entropy_and_dice_and_no_threshold():
    found = blobs(
        task="multiclass",
        class_names=["background", "car", "pole"],
        class_share=[0.7, 0.25, 0.05],
        class_width_px=[None, 40.0, 30.0],
    )
    plan = auto.plan_auto(Request(found, 0.5))
    assert plan.settings["loss"] == "ce_dice" and not plan.settings["calibrate_threshold"]
    assert not plan.settings["keep_largest"]


@given(st.floats(0.01, 30), st.floats(0.01, 30))
@settings(deadline=None, max_examples=40)
def test_a_faster_machine_never_gets_a_smaller_input(step_a, step_b):
    fast, slow = sorted([step_a, step_b])
    on_fast = auto.plan_auto(Request(blobs(), fast)).settings["image_size"]
    on_slow = auto.plan_auto(Request(blobs(), slow)).settings["image_size"]
    assert on_fast >= on_slow
    assert on_fast <= 375  # never beyond the median photo's short side


def test_the_chosen_size_leaves_enough_steps_unless_none_does():
    plan = auto.plan_auto(Request(blobs(), 0.2))
    size = plan.settings["image_size"]
    assert plan.facts["expected_steps"] >= auto.RULES["min_steps"]
    bigger = [s for s in auto.RULES["resize_sizes"] if size < s <= 375]
    slow = auto.plan_auto(Request(blobs(), 2.0))
    assert slow.settings["image_size"] == auto.RULES["resize_sizes"][0]
    assert slow.facts["expected_steps"] < auto.RULES["min_steps"]
    assert bigger == [] or plan.settings["image_size"] < bigger[0]


def test_many_passes_over_few_photos_get_stronger_augmentation_but_not_street_scenes():
    few = blobs(images=40)
    assert auto.plan_auto(Request(few, 0.01)).settings["augment"] == "strong"
    assert auto.plan_auto(Request(blobs(images=5000), 0.5)).settings["augment"] == "default"
    street = replace(
        few,
        task="multiclass",
        class_names=["background", "car"],
        class_share=[0.8, 0.2],
        class_width_px=[None, 40.0],
    )
    assert auto.plan_auto(Request(street, 0.01)).settings["augment"] == "default"


def test_what_the_user_set_is_planned_around_not_chosen():
    request = Request(
        blobs(structure_width_px=2.0, class_width_px=[2.0]),
        0.5,
        model="unet",
        batch_size=4,
        loss="dice",
        model_options={"base_channels": 8},
    )
    plan = auto.plan_auto(request)
    assert not {"model", "batch_size", "loss", "model_options"} & set(plan.settings)
    assert {candidate.model for candidate in request.timed} == {"unet"}
    assert {candidate.batch_size for candidate in request.timed} == {4}
    assert all(dict(candidate.model_options) == {"base_channels": 8} for candidate in request.timed)


def test_small_photos_are_not_blown_up():
    plan = auto.plan_auto(Request(blobs(height=[64] * 3, width=[80] * 3), 0.01))
    assert plan.settings["image_size"] == 64 and plan.settings["progressive_sizes"][-1] == 64


def test_a_crop_size_the_user_gives_is_planned_around():
    plan = auto.plan_auto(Request(blobs(), 0.5, crop_size=96))
    assert "crop_size" not in plan.settings and plan.settings["tile"] == 192
    assert plan.settings["progressive_sizes"] == [] and not plan.settings["keep_largest"]


def test_auto_never_asks_for_weights_that_are_not_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    scratch = auto.plan_auto(Request(blobs(), 0.5))
    assert scratch.settings["model"] == "resnet18_unet" and "model_options" not in scratch.settings
    (tmp_path / "checkpoints").mkdir()
    light = tmp_path / "checkpoints" / auto.WEIGHTS_FILES["resnet18_unet"]
    light.write_bytes(b"stand-in")
    plan = auto.plan_auto(Request(blobs(), 0.5))
    assert (plan.settings["model"], plan.settings["model_options"]) == ("resnet18_unet", {"pretrained": True})
    # ResNet34's ImageNet weights on disk are worth more than the lighter model's speed.
    (tmp_path / "checkpoints" / auto.WEIGHTS_FILES["resnet34_unet"]).write_bytes(b"stand-in")
    request = Request(blobs(), 0.5)
    plan = auto.plan_auto(request)
    assert (plan.settings["model"], plan.settings["model_options"]) == ("resnet34_unet", {"pretrained": True})
    assert {candidate.model for candidate in request.timed} == {"resnet34_unet"}
    assert all("pretrained" not in dict(c.model_options) for c in request.timed), "timing loads no weights"


@pytest.mark.parametrize(
    "speed, chosen", [(1.0, False), (1.05, False), (0.8, False), (1.2, True), (1.6, True)]
)
def test_channels_last_is_chosen_only_where_a_timed_step_is_clearly_faster(speed, chosen):
    request = Request(blobs(), 0.5, channels_last_speed=speed)
    plan = auto.plan_auto(request)
    assert plan.settings["channels_last"] is chosen
    assert f"{0.5 / speed:.2f} s in channels_last and 0.50 s in NCHW" in plan.reasons["channels_last"]
    # The sizes are planned from steps timed in the chosen layout.
    sized = [c for c in request.timed if c.size != auto.RULES["reference_size"]]
    assert all(c.channels_last is chosen for c in sized)
    expected = auto.plan_auto(Request(blobs(), 0.5 / (speed if chosen else 1.0))).settings["image_size"]
    assert plan.settings["image_size"] == expected


def test_channels_last_is_left_alone_on_cuda_and_when_the_user_set_it():
    on_cuda = auto.plan_auto(Request(blobs(), 0.5, channels_last_speed=2.0, device="cuda"))
    assert "channels_last" not in on_cuda.settings
    request = Request(blobs(), 0.5, channels_last_speed=2.0, channels_last=False)
    assert "channels_last" not in auto.plan_auto(request).settings
    assert all(candidate.channels_last is False for candidate in request.timed)


# -- end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan") / "data"
    write_folder_layout(root, [f"p{i}" for i in range(8)], size=(40, 56))
    return root


#: A tiny UNet on the CPU: what the plan tests fix, so the planner times a model that costs little.
TINY_MODEL = ("--device", "cpu", "--model", "unet", "--model-option", "base_channels=4")


def test_segkit_plan_prints_choices_with_reasons_and_trains_nothing(tiny_folder, tmp_path):
    data = ("--dataset", "folder", "--data-path", tiny_folder)
    result = invoke("plan", *data, *TINY_MODEL, "--time-budget", "30s", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "Plan (auto" in result.output and "timed: unet (base_channels=4)" in result.output
    assert "image_size" in result.output and "bce_dice" in result.output
    assert not (tmp_path / "runs").exists()
    as_json = invoke("plan", *data, *TINY_MODEL, "--json")
    assert json.loads(as_json.output)["settings"]["loss"] == "bce_dice"


def test_run_with_auto_writes_its_plan_and_flags_override_it(tiny_folder, tmp_path):
    args = tiny_run(epochs=1, batch_size=4, quiet=False)
    args = [arg for arg in args if arg not in ("--image-size", "32")]
    result = invoke(
        "run",
        *args,
        "--recipe",
        "auto",
        "--time-budget",
        "20s",
        "--dataset",
        "folder",
        "--data-path",
        tiny_folder,
        "--out",
        tmp_path / "runs",
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["planner"] == "auto" and plan["seconds"] > 0 and "fingerprint" in plan["facts"]
    # the planning seconds count in the budget: the run's clock starts at them
    schedule = torch.load(run_dir / "last.pt", weights_only=True)["schedule_state"]
    assert schedule["elapsed_s"] >= plan["seconds"]
    sources = json.loads((run_dir / "config.json").read_text())["sources"]
    assert sources["loss"] == "plan auto" and sources["batch_size"] == "flag" and sources["epochs"] == "flag"
    assert "batch_size" not in plan["settings"]


def test_unknown_recipe_names_the_planners_and_torchrun_is_refused(tiny_folder, monkeypatch):
    result = invoke("run", "--recipe", "autoo", "--dataset", "folder", "--data-path", tiny_folder)
    assert result.exit_code == 2 and "auto" in error_line(result)
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = invoke("run", "--recipe", "auto", "--dataset", "folder", "--data-path", tiny_folder)
    assert result.exit_code == 2 and "segkit plan" in error_line(result)


def test_plan_refuses_a_fixed_recipe():
    result = invoke("plan", "--recipe", "budget")
    assert result.exit_code == 2 and "not a planner" in error_line(result)


def test_planner_plugins_are_listed():
    result = invoke("plugins", "--kind", "planner")
    assert result.exit_code == 0 and "auto" in result.output
    assert Path(segkit.planning.__file__).name == "__init__.py"


def test_time_items_times_making_items_of_photos_decoded_once(tmp_path, monkeypatch):
    import segkit.data.datasets
    from segkit.planning.machine import time_items

    write_folder_layout(tmp_path, [f"p{i}" for i in range(12)], size=(40, 48))
    dataset = segkit.create_dataset(
        "folder", root=tmp_path, split="train", image_size=32, valid_fraction=0, test_fraction=0
    )
    decoded = []
    real = segkit.data.datasets.read_image
    monkeypatch.setattr(
        segkit.data.datasets, "read_image", lambda path: decoded.append(path.name) or real(path)
    )
    assert time_items(dataset, count=4) > 0
    assert len(decoded) == len(set(decoded)) == 4, "four photos spread through the split, each decoded once"


def test_time_steps_times_a_real_training_step_of_the_candidate():
    from segkit.planning.machine import time_side_by_side, time_steps

    candidate = Candidate("unet", 32, 2, (("base_channels", 4),), in_channels=3, out_channels=3)
    timing = time_steps(candidate, "cpu")
    assert timing.step_s > 0 and timing.images_per_second == pytest.approx(2 / timing.step_s)
    assert candidate.describe() == "unet (base_channels=4) at 32px, batch 2"
    channels_last = replace(candidate, channels_last=True)
    assert channels_last.describe() == "unet (base_channels=4) at 32px, batch 2, channels_last"
    both = time_side_by_side([replace(candidate, channels_last=False), channels_last], "cpu", steps=3)
    assert [timing.candidate.channels_last for timing in both] == [False, True]
    assert all(timing.step_s > 0 for timing in both)


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_timed_steps_run_under_the_autocast_dtype_the_run_trains_in(monkeypatch, amp):
    """A CUDA run trains in bf16; a planner timing fp32 steps there would plan for a slower machine.
    Autocast to bf16 works on the CPU too, so the dtype the timed forward computes in is seen here."""
    from segkit.planning import machine

    seen = []
    real = machine.create_model

    def recording(*args, **kwargs):
        model = real(*args, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        return model

    monkeypatch.setattr(machine, "create_model", recording)
    candidate = Candidate("unet", 32, 2, (("base_channels", 4),))
    machine.time_steps(candidate, "cpu", steps=1, amp=amp)
    assert seen and set(seen) == {amp or torch.float32}


@pytest.mark.parametrize(
    "requested, bf16_supported, expected",
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float16),
        ("off", True, None),
        ("fp16", True, torch.float16),
    ],
)
def test_the_planner_times_steps_with_the_runs_amp_setting(monkeypatch, requested, bf16_supported, expected):
    from segkit.planning import machine

    calls = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_supported)
    monkeypatch.setattr(
        machine, "training_step", lambda candidate, device, amp: calls.append((device, amp)) or (lambda: 1.0)
    )
    request = PlanRequest({"amp": requested, "device": "cuda"}, frozenset())
    request._cache["device"] = torch.device("cuda")  # torch sees no GPU here; the device is given
    request.time(Candidate("unet", 32, 2))
    assert calls == [(torch.device("cuda"), expected)]


# -- planning time: a small share of the budget, time-boxed; budgets too short for one epoch refused ----


@pytest.mark.parametrize(
    "budget, allowed", [(20, 3.0), (60, 3.0), (600, 18.0), (900, 27.0), (3600, 30.0), (None, 30.0)]
)
def test_planning_is_allowed_three_percent_of_the_budget_between_3_and_30_seconds(budget, allowed):
    assert planning_allowance(budget) == pytest.approx(allowed)


def fake_steps(clock, seconds):
    """A fake training step: each call takes the next of ``seconds`` (the last one repeated), moving
    ``clock`` by it."""
    left = list(seconds)

    def step():
        took = left.pop(0) if len(left) > 1 else left[0]
        clock.now += took
        return took

    return step


@pytest.mark.parametrize(
    "deadline, rounds_taken",
    [
        (None, 3),
        (108.5, 2),  # first steps end at 104; the first round is judged by them (4 s), the next by it (2 s)
        (108.0, 2),  # the second round ends at the deadline exactly; the third would end past it
        (107.9, 0),  # the first round, judged by the first steps, would end at 108
        (103.0, 0),  # past the deadline after the first steps: their seconds stand
    ],
)
def test_time_in_turn_begins_no_round_that_would_end_past_the_deadline(deadline, rounds_taken):
    clock = FakeClock()  # at 100
    a, b = Candidate("unet", 32, 2), Candidate("unet", 64, 2)
    found = time_in_turn([a, b], [fake_steps(clock, [2, 1]), fake_steps(clock, [2, 1])], 3, deadline, clock)
    assert [timing.steps for timing in found] == [rounds_taken] * 2
    assert clock.now == 104 + 2 * rounds_taken
    assert [timing.step_s for timing in found] == [1 if rounds_taken else 2] * 2
    assert [timing.first_s for timing in found] == [2, 2]


def test_time_in_turn_leaves_out_candidates_past_the_deadline_beyond_those_required():
    clock = FakeClock()
    a, b = Candidate("unet", 32, 2), Candidate("unet", 64, 2)
    steps = [fake_steps(clock, [5]), fake_steps(clock, [1])]
    assert [t.candidate for t in time_in_turn([a, b], steps, 2, 102, clock, required=1)] == [a]
    assert clock.now == 105, "the required first step is taken, the other never begun"
    clock.now = 100
    assert len(time_in_turn([a, b], steps, 2, 102, clock)) == 2


@given(
    step=st.floats(0.001, 20),
    budget=st.sampled_from([30.0, 60.0, 300.0, 900.0, 3600.0]),
    speed=st.floats(0.7, 1.5),
    photos=st.sampled_from([(40, 56), (375, 500), (700, 900)]),
)
@settings(deadline=None, max_examples=60)
def test_planning_keeps_to_its_allowance_but_for_one_first_step(step, budget, speed, photos):
    """Whatever the machine, planning takes its allowance and at most the first step it must take
    beyond it (a 128 px step's first: 1.5 steps in ``Request``; photos smaller than 128 px are timed at
    their own size, cheaper)."""
    found = blobs(height=[photos[0]] * 3, width=[photos[1]] * 3)
    request = Request(found, step, channels_last_speed=speed, time_budget=budget)
    try:
        auto.plan_auto(request)
    except UsageError:
        pass
    assert request.spent_s() <= planning_allowance(budget) + 1.5 * step + 1e-9
    if step < 0.01:  # a fast machine times everything it means to
        assert not request.skipped


def test_a_slow_machine_plans_from_what_it_could_time_and_says_so():
    """A minute's budget allows 3 s: a 2 s step (its first 3 s) leaves no time to time channels_last
    against NCHW or the chosen size; a 1 s step leaves the first step of each layout, too rough to
    switch on even where channels_last looked twice as fast."""
    slow = Request(blobs(), 2.0, channels_last_speed=2.0, time_budget=60.0)
    plan = auto.plan_auto(slow)
    assert plan.settings["channels_last"] is False
    assert "no time left in the planning allowance (3 s)" in plan.reasons["channels_last"]
    assert plan.facts["not_timed"] == ["resnet18_unet at 128px, batch 16, channels_last"]
    assert plan.facts["first_step_only"] == ["resnet18_unet at 128px, batch 16, NCHW"]
    assert "3.00 s a step of 16 at 128 px measured here" in plan.reasons["image_size"]
    rough = auto.plan_auto(Request(blobs(), 1.0, channels_last_speed=2.0, time_budget=60.0))
    assert rough.settings["channels_last"] is False
    assert "from one untimed step each" in rough.reasons["channels_last"]
    assert "0.75 s in channels_last and 1.50 s in NCHW" in rough.reasons["channels_last"]


def test_a_size_the_allowance_leaves_untimed_is_scaled_from_the_reference_step_and_said_so():
    # 15 minutes allow 27 s, of which reading the data took 26.5: the layouts are timed in 0.45 s (a
    # 128 px step of 0.05 s, its first 0.075), leaving 0.05 s, too little to time the chosen size.
    request = Request(blobs(), 0.05, time_budget=900.0)
    request.clock.now += 26.5
    plan = auto.plan_auto(request)
    size = plan.settings["image_size"]
    assert size > 128 and plan.facts["not_timed"] == [f"resnet18_unet at {size}px, batch 16, NCHW"]
    assert (
        f"{0.05 * (size / 128) ** 2:.2f} s a step of 16 at {size} px, scaled from the 128 px step"
        in (plan.reasons["image_size"])
    )
    timed = Request(blobs(), 0.05, time_budget=900.0)
    assert f"s a step of 16 at {size} px measured here" in auto.plan_auto(timed).reasons["image_size"]


def small_photos(**changes) -> Fingerprint:
    """Photos of 40x56 px with wide structures: resized, one size (32 px), timed at it."""
    return blobs(height=[40] * 3, width=[56] * 3, structure_width_px=9.6, class_width_px=[9.6], **changes)


def test_a_budget_too_short_for_one_epoch_is_refused_with_the_shortest_that_works():
    """480 photos, batch 16: 30 steps an epoch at 32 px. A 32 px step takes 1.6 s x (32/128)^2 = 0.1 s;
    in the loop 0.1 x 1.1 + 16 photos x 5 ms = 0.19 s; with validation (x 10/9) 0.2111 s, 6.333 s the
    epoch, over the 12% margin 7.197 s; with the 3 s planning allowance 10.2 s: 11 s is the shortest."""
    with pytest.raises(UsageError) as refused:
        auto.plan_auto(Request(small_photos(images=480), 1.6, time_budget=10.0))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("--time-budget 10s is too short for one epoch of this plan: 30 step(s) of 16")
    assert "at 32 px" in message and "give --time-budget 11s or more" in message
    plan = auto.plan_auto(Request(small_photos(images=480), 1.6, time_budget=11.0))
    assert plan.settings["image_size"] == 32


def suggested_seconds(message: str) -> float:
    number, unit = re.search(r"give --time-budget (\d+)([sm]) or more", message).groups()
    return float(number) * (60 if unit == "m" else 1)


@given(
    images=st.integers(1, 3000),
    step=st.floats(0.01, 3.0),
    budget=st.integers(1, 900),
    small=st.booleans(),
)
@settings(deadline=None, max_examples=60)
def test_a_refused_budget_names_the_shortest_that_plans(images, step, budget, small):
    found = small_photos(images=images) if small else blobs(images=images)
    try:
        auto.plan_auto(Request(found, step, time_budget=float(budget)))
    except UsageError as error:
        shortest = suggested_seconds(str(error))
        assert shortest > budget
        auto.plan_auto(Request(found, step, time_budget=shortest))  # plans
        unit = 60 if shortest > 600 else 1
        with pytest.raises(UsageError):
            auto.plan_auto(Request(found, step, time_budget=shortest - unit))


def test_a_plan_never_chooses_a_size_whose_epoch_outlasts_the_budget():
    """20000 photos: 1250 steps an epoch, more than min_steps: a size is chosen only if a whole epoch
    fits, not merely 1000 steps."""
    plan = auto.plan_auto(Request(blobs(images=20000), 0.05))
    assert plan.facts["expected_steps"] >= 1250
    assert "1250 steps (one epoch)" in plan.reasons["image_size"]


def report_steps_of(monkeypatch, step_s_at_32: float) -> None:
    """Every training step the planner times reports ``step_s_at_32`` scaled by its pixels (nothing is
    built or slept), and making an item 1 ms: plans that do not depend on this machine's speed."""
    monkeypatch.setattr(
        PlanRequest,
        "training_step",
        lambda self, candidate: lambda: step_s_at_32 * (candidate.size / 32) ** 2,
    )
    monkeypatch.setattr(PlanRequest, "item_seconds", lambda self: 0.001)


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_refused_budget_leaves_no_run_folder(tiny_folder, tmp_path, monkeypatch, command):
    # 6 training photos: one step of 30 s, x 1.1, with validation (x 10/9) 36.7 s, over the 12% margin
    # 41.7 s, and 3 s of planning: 45 s.
    report_steps_of(monkeypatch, 30.0)
    out = tmp_path / "runs"
    args = ("--dataset", "folder", "--data-path", tiny_folder, "--device", "cpu", "--out", out)
    recipe = ("--recipe", "auto") if command == "run" else ()
    result = invoke(command, *args, *recipe, "--time-budget", "20s")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--time-budget 20s is too short for one epoch" in line and "give --time-budget 45s or more" in line
    assert not out.exists()
    report_steps_of(monkeypatch, 0.01)
    assert invoke("plan", *args, "--time-budget", "20s").exit_code == 0


# -- a printed plan is the plan: `segkit plan --print-config` then `segkit run --config` ------------------


@pytest.fixture(scope="module")
def thin_folder(tmp_path_factory):
    """8 photos of 48x64 px holding 1-px lines: auto trains on crops and predicts by tiles."""
    root = tmp_path_factory.mktemp("thin") / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(8):
        mask = np.zeros((48, 64), np.uint8)
        mask[8 + 4 * index, 4:60] = 255
        mask[4:44, 6 + 6 * index] = 255
        photo = np.random.default_rng(index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "images" / f"p{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{index}.png")
    return root


def unset_keys(toml_text: str) -> list[str]:
    """The settings a printed config leaves unset (its ``# name = (not set)`` lines)."""
    return re.findall(r"^# (\w+) = \(not set\)", toml_text, flags=re.MULTILINE)


@pytest.mark.parametrize("data", ["tiny_folder", "thin_folder"])
def test_a_printed_plan_is_what_run_config_trains(data, request, tmp_path, monkeypatch):
    import tomllib

    report_steps_of(monkeypatch, 0.001)
    folder = request.getfixturevalue(data)
    given = ("--dataset", "folder", "--data-path", folder, *TINY_MODEL, "--time-budget", "1m")
    printed = invoke("plan", *given, "--print-config")
    assert printed.exit_code == 0, printed.output
    frozen = tomllib.loads(printed.output)
    planned = json.loads(invoke("plan", *given, "--json").output)["settings"]
    assert planned and all(frozen[key] == value for key, value in planned.items() if key != "time_budget")
    assert ("crop_size" in planned) == (data == "thin_folder")
    # `segkit run --recipe auto --print-config` prints the same plan from the same timings
    from_run = invoke("run", *given, "--recipe", "auto", "--print-config")
    assert tomllib.loads(from_run.output) == frozen
    (tmp_path / "plan.toml").write_text(printed.output)
    out = tmp_path / "runs"
    trained = invoke("run", "--config", tmp_path / "plan.toml", "--epochs", "1", "--out", out, "--quiet")
    assert trained.exit_code == 0, trained.output
    recorded = json.loads((only_run_dir(out) / "config.json").read_text())["config"]
    for key, value in frozen.items():
        if key not in ("epochs", "out", "quiet"):
            assert recorded[key] == value, key
    assert all(recorded[key] is None for key in unset_keys(printed.output))
    assert not (only_run_dir(out) / "plan.json").exists(), "a frozen plan is not planned again"


# -- every reason states what was measured and follows its choice ----------------------------------------


def test_the_size_reason_follows_each_branch():
    # none leaves 1000 steps: the smallest, said so (not "the largest size leaving")
    slow = auto.plan_auto(Request(blobs(), 2.0))
    reason = slow.reasons["image_size"]
    assert slow.settings["image_size"] == 128
    assert "under 1000 steps even at the smallest size, so the smallest" in reason
    assert f"~{slow.facts['expected_steps']} steps fit" in reason and "largest" not in reason
    assert "2.00 s a step of 16 at 128 px measured here" in reason
    # a larger size would leave too few: it is named with its steps
    middle = auto.plan_auto(Request(blobs(), 0.3))
    size = middle.settings["image_size"]
    found = re.search(
        r"the largest size leaving >= 1000 steps: (\d+) px would leave ~(\d+)", middle.reasons["image_size"]
    )
    assert found and int(found[1]) > size and int(found[2]) < 1000 <= middle.facts["expected_steps"]
    # every size fits, the photos cap them
    capped = auto.plan_auto(Request(blobs(), 0.001))
    assert capped.settings["image_size"] == 320
    assert (
        "no larger size: photos are 375 px on the short side, never enlarged" in capped.reasons["image_size"]
    )
    # every size fits up to the largest auto tries
    large = blobs(height=[512] * 3, width=[700] * 3)
    top = auto.plan_auto(Request(large, 0.0001))
    assert (
        top.settings["image_size"] == 512
        and "even at the largest size auto tries" in top.reasons["image_size"]
    )


@given(step=st.floats(0.001, 5.0), short=st.sampled_from([100, 200, 375, 512]), images=st.integers(10, 3000))
@settings(deadline=None, max_examples=50)
def test_no_size_reason_contradicts_the_size(step, short, images):
    found = blobs(height=[short] * 3, width=[short + 100] * 3, images=images)
    try:
        plan = auto.plan_auto(Request(found, step))
    except UsageError:
        return
    size, reason = plan.settings["image_size"], plan.reasons["image_size"]
    expected = plan.facts["expected_steps"]
    assert f"at {size} px" in reason and f"~{expected} steps fit" in reason
    candidates = [s for s in auto.RULES["resize_sizes"] if s <= short] or [short // 32 * 32]
    if "the largest size leaving" in reason:
        assert expected >= 1000 and size != candidates[-1]
    if "even at the smallest size" in reason:
        assert expected < 1000 and size == candidates[0]
    if "no larger size" in reason or "the largest size auto tries" in reason:
        assert expected >= 1000 and size == candidates[-1]


def test_the_sampling_reason_measures_at_the_size_it_names():
    """Photos 64 px on the short side with 3-px structures: the only size is 64, and the reason says
    how wide the structures are there (3 x 64/64), not at 128 px."""
    small = blobs(height=[64] * 3, width=[80] * 3, structure_width_px=3.0, class_width_px=[3.0])
    plan = auto.plan_auto(Request(small, 0.01))
    assert plan.settings["image_size"] == 64
    assert "stay 3.0 px wide resized to the smallest 64 px input" in plan.reasons["_sampling"]
    assert "128" not in plan.reasons["_sampling"]
    # 500-px photos, 2-px lines: 2 x 128/375 = 0.7 px at the smallest input, 128 px: crops
    thin = auto.plan_auto(Request(blobs(structure_width_px=2.0, class_width_px=[2.0]), 0.5))
    assert (
        "would be 0.7 px wide resized to the smallest 128 px input (crops below 2.5 px)"
        in (thin.reasons["crop_size"])
    )
    large = auto.plan_auto(Request(blobs(height=[4000] * 3, width=[6000] * 3), 0.2))
    assert "photos (4000 px short side) are over 4x the smallest 128 px input" in large.reasons["crop_size"]


def test_the_progressive_reason_names_its_stages_or_says_there_is_one():
    plan = auto.plan_auto(Request(blobs(), 0.3))
    stages = plan.settings["progressive_sizes"]
    assert len(stages) > 1
    assert f"early epochs at {', '.join(map(str, stages[:-1]))} px" in plan.reasons["progressive_sizes"]
    one = auto.plan_auto(Request(small_photos(), 0.3))
    assert one.settings["progressive_sizes"] == [32]
    assert one.reasons["progressive_sizes"].startswith("one size: 32 px")


TOOK = "a training step at 128 px took {:.2f} s in channels_last and 0.50 s in NCHW here"


@pytest.mark.parametrize(
    "speed, chosen, says",
    [
        (1.25, True, f"channels_last: {TOOK.format(0.4)}, 20% faster (channels_last must be 15% faster"),
        (1.1, False, f"NCHW: {TOOK.format(0.4545)}; channels_last only 9% faster (channels_last must be 15%"),
        (0.8, False, f"NCHW: {TOOK.format(0.625)}; channels_last no faster (channels_last must be 15%"),
    ],
)
def test_the_layout_reason_states_both_timings_and_the_margin(speed, chosen, says):
    plan = auto.plan_auto(Request(blobs(), 0.5, channels_last_speed=speed))
    assert plan.settings["channels_last"] is chosen and says in plan.reasons["channels_last"]


@given(
    truth=st.floats(1.0, 1.05),
    noise=st.tuples(
        st.floats(0.95, 1.05), st.floats(0.95, 1.05), st.floats(0.95, 1.05), st.floats(0.95, 1.05)
    ),
)
@settings(deadline=None, max_examples=40)
def test_timing_noise_of_5_percent_never_switches_a_layout_at_most_5_percent_faster(truth, noise):
    """`segkit plan` and the run time the layouts apart: each sees each layout's step off by up to 5%.
    Where channels_last is at most 5% faster, neither switches to it (nor, then, do they disagree)."""

    class Noisy(Request):
        def step_seconds(self, candidate):
            layout = 1 if candidate.channels_last is True else 0
            return super().step_seconds(candidate) * self.noise[layout]

    plans = []
    for noise_nchw, noise_nhwc in (noise[:2], noise[2:]):
        request = Noisy(blobs(), 0.5, channels_last_speed=truth)
        request.noise = (noise_nchw, noise_nhwc)
        plans.append(auto.plan_auto(request).settings["channels_last"])
    assert plans == [False, False]


def test_the_same_timings_give_the_same_plan():
    first, second = (auto.plan_auto(Request(blobs(), 0.3, channels_last_speed=1.3)) for _ in range(2))
    assert first.to_dict() == second.to_dict()


def test_the_crop_reasons_state_the_measured_figures():
    sparse = blobs(
        structure_width_px=1.5,
        class_width_px=[1.5],
        foreground_fraction=[0.001, 0.004, 0.02],
        objects_per_image=3,
    )
    plan = auto.plan_auto(Request(sparse, 0.5))
    assert plan.settings["foreground_fraction"] == 0.5
    assert "it is sparse (0.40% of a median image, under 1%)" in plan.reasons["foreground_fraction"]
    assert plan.settings["tile"] == 2 * plan.settings["crop_size"]
    assert "tiles of twice the crop" in plan.reasons["tile"]
    dense = blobs(height=[200] * 3, width=[240] * 3, structure_width_px=1.5, class_width_px=[1.5])
    plan = auto.plan_auto(Request(dense, 0.001))
    assert (
        plan.settings["foreground_fraction"] == 0.33
        and "30.0% of a median image, not sparse" in (plan.reasons["foreground_fraction"])
    )
    assert plan.settings["tile"] == 200 < 2 * plan.settings["crop_size"]
    assert "tiles of 200 px: photos are 200 px on the short side" in plan.reasons["tile"]


def test_the_clean_up_reason_names_what_ruled_it_out():
    def reason(**changes):
        plan = auto.plan_auto(Request(blobs(**changes), 0.5))
        assert plan.settings["fill_holes"] == plan.settings["keep_largest"]
        return plan.settings["keep_largest"], plan.reasons["keep_largest"]

    assert reason() == (True, "one compact object per image (median 1): fill its holes, drop specks")
    assert reason(objects_per_image=4) == (
        False, "median 4 objects per image: keeping the largest would delete true ones"
    )  # fmt: skip
    assert (
        reason(empty_share=0.6)[0] is False
        and "60% of the images have no foreground" in reason(empty_share=0.6)[1]
    )
    multilabel = reason(task="multilabel")
    assert multilabel[0] is False and multilabel[1].startswith("multilabel: ")
    cropped = reason(structure_width_px=1.0, class_width_px=[1.0])
    assert cropped[0] is False and cropped[1].startswith("crops and tiles")


def test_the_augmentation_and_loss_reasons_follow_their_branches():
    few = blobs(images=40)
    strong = auto.plan_auto(Request(few, 0.01))
    passes = strong.facts["expected_epochs"]
    assert strong.settings["augment"] == "strong" and f"~{passes:.0f} passes" in strong.reasons["augment"]
    assert "over 150" in strong.reasons["augment"]
    street = replace(
        few,
        task="multiclass",
        class_names=["background", "car"],
        class_share=[0.8, 0.2],
        class_width_px=[None, 40.0],
    )
    scenes = auto.plan_auto(Request(street, 0.01))
    assert (
        scenes.settings["augment"] == "default"
        and "over 150, but multi-class scenes" in scenes.reasons["augment"]
    )
    plain = auto.plan_auto(Request(blobs(images=5000), 0.5))
    assert plain.settings["augment"] == "default" and "not over 150" in plain.reasons["augment"]
    assert "foreground 30.0% of a median image" in plain.reasons["loss"]
    assert "overlap the score measures" in plain.reasons["loss"]
    small = auto.plan_auto(Request(blobs(foreground_fraction=[0.01, 0.03, 0.05]), 0.5))
    assert "foreground 3.0% of a median image" in small.reasons["loss"]
    assert "outweighed by the background" in small.reasons["loss"]


# -- context: how large each class's regions are, how thick its thickest part, how many share a photo ----


class LabelList(MaskList):
    """A multi-class dataset of given id masks (0 is the background)."""

    task = "multiclass"

    def __init__(self, masks, classes):
        super().__init__(masks)
        self.class_names = ["background", *classes]


@st.composite
def id_masks(draw):
    """A few small id masks of 3 classes besides the background, drawn as overlapping rectangles."""
    count = draw(st.integers(1, 4))
    height, width = draw(st.integers(6, 24)), draw(st.integers(6, 24))
    masks = []
    for _ in range(count):
        mask = np.zeros((height, width), np.uint8)
        for _ in range(draw(st.integers(0, 5))):
            top, left = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            bottom, right = draw(st.integers(top + 1, height)), draw(st.integers(left + 1, width))
            mask[top:bottom, left:right] = draw(st.integers(1, 3))
        masks.append(mask)
    return masks


@settings(max_examples=60, deadline=None)
@given(masks=id_masks())
def test_context_measures_equal_independent_counts(masks):
    """Classes per image against sets of ids; each class's largest region against skimage's labelling."""
    found = compute_fingerprint(LabelList(masks, ["a", "b", "c"]), sample=len(masks))
    assert found.classes_per_image == np.median([len(set(np.unique(m).tolist()) - {0}) for m in masks])
    for class_id in (1, 2, 3):
        shares = []
        for mask in masks:
            if (mask == class_id).any():
                regions = measure.label(mask == class_id, connectivity=2)
                shares.append(np.bincount(regions.ravel())[1:].max() / mask.size)
        expected = round(float(np.median(shares)), 6) if shares else None
        assert found.class_region_share[class_id] == expected


@pytest.mark.parametrize("width", [1, 2, 3, 4, 7, 12])
def test_the_thickest_part_of_a_band_is_its_width(width):
    mask = np.zeros((40, 60), np.uint8)
    mask[10 : 10 + width, 5:55] = 1
    found = compute_fingerprint(MaskList([mask]))
    assert found.class_thickest_px == [width if width % 2 else width - 1]


def test_a_pole_is_thin_everywhere_and_a_road_only_at_its_borders():
    """Both give thin structure widths at some scale; only the road has a thick part, and it spans
    the photo: what a small crop of a street cannot see."""
    labels = np.zeros((60, 80), np.uint8)
    labels[:40, 30:32] = 1  # a 2-px pole
    labels[40:, :] = 2  # road, the lower third
    found = compute_fingerprint(LabelList([labels], ["pole", "road"]))
    pole, road = 1, 2
    assert found.class_thickest_px[pole] <= 2 and found.class_thickest_px[road] >= 19
    assert found.class_region_share[road] == pytest.approx(20 * 80 / (60 * 80), abs=1e-6)  # kept to 6 places
    assert found.class_region_share[pole] == pytest.approx(40 * 2 / (60 * 80), abs=1e-6)
    assert found.classes_per_image == 2


@pytest.mark.parametrize(
    "task, names, shares, rare",
    [
        ("multiclass", ["background", "road", "pole"], [0.9, 0.095, 0.005], ["pole"]),
        ("multiclass", ["background", "road", "pole"], [0.005, 0.5, 0.495], []),  # never the background
        ("multilabel", ["cat", "collar"], [0.3, 0.009], ["collar"]),
        ("binary", ["foreground"], [0.001], []),  # the one class of a binary task is the foreground
    ],
)
def test_rare_classes_are_those_under_one_percent_of_the_pixels(task, names, shares, rare):
    found = Fingerprint(
        images=10, height=[40, 40, 40], width=[60, 60, 60], channels=3, task=task, class_names=names,
        class_share=shares, foreground_fraction=[0.1, 0.1, 0.1], empty_share=0.0, objects_per_image=1,
        object_area=0.1, structure_width_px=3.0, class_width_px=[None] * len(names),
    )  # fmt: skip
    assert found.rare_classes() == rare


def test_regions_touching_at_a_corner_are_one_region():
    """8-connected, as objects are counted: a diagonal chain of a class is one region."""
    labels = np.zeros((20, 20), np.uint8)
    labels[2:6, 2:6] = 1
    labels[6:10, 6:10] = 1  # touches the first square at one corner
    found = compute_fingerprint(LabelList([labels], ["a"]))
    assert found.class_region_share[1] == pytest.approx(32 / 400, abs=1e-6)
