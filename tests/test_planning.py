"""Planning a run (segkit.planning): the dataset fingerprint against independent references, its cache,
the auto planner's rules on fingerprints and timings made up for the test, and `segkit plan` /
`segkit run --recipe auto` end to end on tiny folders."""

from __future__ import annotations

import json
import os
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
from segkit.planning import PlanRequest, auto
from segkit.planning import fingerprint as fingerprint_module
from segkit.planning.fingerprint import Fingerprint, compute_fingerprint
from segkit.planning.machine import Candidate, Timing


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
    )
    assert found.summary() == (
        "3 images, median 50x40 px, multiclass (3 classes), foreground 12.5% of a median image, "
        "2 object(s) per image, thinnest structures ~2.8 px wide"
    )
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


class Request(PlanRequest):
    """A request whose fingerprint and step timings are given (no dataset, no model is built)."""

    def __init__(
        self,
        found: Fingerprint,
        step_s_at_128: float,
        chosen=(),
        channels_last_speed=1.0,
        device="cpu",
        **values,
    ):
        base = dict(segkit.config.settings.DEFAULTS)
        base.update(values)
        super().__init__(base, frozenset(chosen) | frozenset(values))
        self._cache.update(fingerprint=found, device=torch.device(device))
        self.step_s_at_128 = step_s_at_128
        self.channels_last_speed = channels_last_speed
        self.timed: list[Candidate] = []

    def item_seconds(self):
        return 0.005

    def loader_workers(self):
        return 0

    def time_side_by_side(self, candidates):
        return [self.time(candidate) for candidate in candidates]

    def time(self, candidate):
        self.timed.append(candidate)
        speed = self.channels_last_speed if candidate.channels_last is True else 1.0
        return Timing(candidate, self.step_s_at_128 * (candidate.size / 128) ** 2 / speed)


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
    plan = auto.plan_auto(Request(blobs(height=[4000] * 3, width=[6000] * 3), 0.5))
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
    slow = auto.plan_auto(Request(blobs(), 100.0))
    assert slow.settings["image_size"] == auto.RULES["resize_sizes"][0]
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
        machine,
        "time_side_by_side",
        lambda candidates, device, steps, amp: (
            calls.append((device, amp)) or [Timing(c, 1.0) for c in candidates]
        ),
    )
    request = PlanRequest({"amp": requested, "device": "cuda"}, frozenset())
    request._cache["device"] = torch.device("cuda")  # torch sees no GPU here; the device is given
    request.time(Candidate("unet", 32, 2))
    assert calls == [(torch.device("cuda"), expected)]
