"""Dataset "cvat": CVAT's "Segmentation mask 1.1" export, laid out as CVAT's documentation shows it
(labelmap.txt, ImageSets/Segmentation/<subset>.txt, SegmentationClass/ colour masks, SegmentationObject/,
JPEGImages/), read in place: classes from labelmap.txt, colours to class ids, the format's awkward cases
(a background that is not black, no background line, no labelmap.txt, an image without a mask), and
segkit run / evaluate / predict on it."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from fixtures import error_line, invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from round_trip import assert_round_trip

import segkit
from segkit.data import rendered_masks
from segkit.errors import DataError, UsageError

# Colours as a CVAT export writes them: the background black and first, the other labels by name.
LABELMAP = """# label:color_rgb:parts:actions
background:0,0,0::
cat:250,50,83::
dog:51,221,255::
"""
COLOURS = {0: (0, 0, 0), 1: (250, 50, 83), 2: (51, 221, 255)}
# Pascal VOC's colours of some classes, as the VOC devkit's table lists them.
VOC_TABLE = {
    0: (0, 0, 0),
    1: (128, 0, 0),
    2: (0, 128, 0),
    8: (64, 0, 0),
    15: (192, 128, 128),
    20: (0, 64, 128),
}


def paint(ids: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """Class ids painted in their colours, as CVAT writes SegmentationClass masks."""
    rgb = np.zeros((*ids.shape, 3), np.uint8)
    for class_id, colour in colours.items():
        rgb[ids == class_id] = colour
    return rgb


def random_ids(seed: int, size=(20, 28), classes=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = np.zeros(size, np.int64)
    for _ in range(3):  # a few blocks, as painted shapes give
        top, left = rng.integers(0, size[0] - 4), rng.integers(0, size[1] - 4)
        ids[top : top + rng.integers(3, 10), left : left + rng.integers(3, 10)] = rng.integers(1, classes)
    return ids


def write_export(
    root,
    masks: dict[str, np.ndarray | None],
    labelmap: str | None = LABELMAP,
    colours=COLOURS,
    subsets: dict[str, list[str]] | None = None,
    photos: bool = True,
):
    """An unzipped CVAT "Segmentation mask 1.1" export: ``masks`` maps image names to class ids (None:
    an image without shapes, listed but given no mask, as CVAT does)."""
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for folder in ("SegmentationClass", "SegmentationObject", "JPEGImages"):
        (root / folder).mkdir()
    if labelmap is not None:
        (root / "labelmap.txt").write_text(labelmap)
    for name, ids in masks.items():
        shape = (20, 28) if ids is None else ids.shape
        if photos:
            pixels = np.random.default_rng(len(name)).integers(0, 255, (*shape, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg")
        if ids is not None:
            Image.fromarray(paint(ids, colours)).save(root / "SegmentationClass" / f"{name}.png")
            Image.fromarray(paint((ids > 0).astype(int), {0: (0, 0, 0), 1: (128, 0, 0)})).save(
                root / "SegmentationObject" / f"{name}.png"
            )
    for subset, names in (subsets or {"default": list(masks)}).items():
        (root / "ImageSets" / "Segmentation" / f"{subset}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def build(root, **options):
    return segkit.create_dataset("cvat", root=root, **options)


def every_split(root, **options):
    return {split: build(root, split=split, **options) for split in ("train", "valid", "test")}


def masks_by_name(dataset) -> dict[str, np.ndarray]:
    return {name: dataset.original_mask(index)[0] for index, name in enumerate(dataset.names)}


def test_classes_and_ids_come_from_labelmap_in_file_order(tmp_path):
    drawn = {f"frame_{i:06d}": random_ids(i) for i in range(10)}
    root = write_export(tmp_path / "export", drawn)
    splits = every_split(root)
    found = {}
    for dataset in splits.values():
        assert dataset.task == "multiclass"
        assert dataset.class_names == ["background", "cat", "dog"]
        assert dataset.palette == [list(colour) for colour in COLOURS.values()]
        found.update(masks_by_name(dataset))
    assert sorted(found) == sorted(drawn)  # every image in exactly one split
    assert sum(len(dataset) for dataset in splits.values()) == len(drawn)
    for name, ids in drawn.items():
        assert np.array_equal(found[name], ids), name


def test_class_ids_follow_the_labelmaps_lines_not_their_names(tmp_path):
    labelmap = "background:0,0,0::\nzebra:10,20,30::\nant:40,50,60::\n"
    ids = random_ids(4)
    root = write_export(
        tmp_path / "export", {"a": ids}, labelmap=labelmap, colours={1: (10, 20, 30), 2: (40, 50, 60)}
    )
    dataset = build(root, valid_fraction=0, test_fraction=0)
    assert dataset.class_names == ["background", "zebra", "ant"]
    assert np.array_equal(dataset.original_mask(0)[0], ids)


def test_the_documentations_labelmap_with_a_background_that_is_not_black(tmp_path):
    # labelmap.txt as CVAT's documentation shows it: the background green, every colour its own.
    labelmap = (
        "# label : color (RGB) : 'body' parts : actions\n"
        "background:0,128,0::\naeroplane:10,10,128::\nbicycle:10,128,0::\nbird:0,108,128::\n"
        "boat:108,0,100::\nbottle:18,0,8::\nbus:12,28,0::\n"
    )
    colours = {0: (0, 128, 0), 1: (10, 10, 128), 2: (10, 128, 0), 3: (0, 108, 128), 6: (12, 28, 0)}
    drawn = {f"image{i}": random_ids(i, classes=7) for i in range(1, 4)}
    for ids in drawn.values():
        ids[ids == 4] = 6  # only the classes painted in ``colours``
        ids[ids == 5] = 3
    root = write_export(tmp_path / "export", drawn, labelmap=labelmap, colours=colours)
    dataset = build(root, split="train", valid_fraction=0, test_fraction=0)
    assert dataset.class_names == ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus"]
    for name, ids in masks_by_name(dataset).items():
        assert np.array_equal(ids, drawn[name]), name


def test_black_is_no_class_when_the_background_has_another_colour(tmp_path):
    labelmap = "background:0,128,0::\ncar:10,10,128::\n"
    ids = random_ids(3, classes=2)
    root = write_export(tmp_path / "export", {"a": ids}, labelmap=labelmap, colours={1: (10, 10, 128)})
    mask = root / "SegmentationClass" / "a.png"
    with pytest.raises(DataError, match=rf"CVAT mask {mask} holds the colour \(0, 0, 0\)") as raised:
        build(root, valid_fraction=0, test_fraction=0)
    assert "labelmap.txt" in str(raised.value) and "\n" not in str(raised.value)


def test_a_labelmap_without_background_gets_a_black_one_first_and_one_label_is_binary(tmp_path):
    ids = random_ids(5, classes=2)
    root = write_export(
        tmp_path / "export", {"a": ids}, labelmap="crack:255,0,0::\n", colours={1: (255, 0, 0)}
    )
    dataset = build(root, valid_fraction=0, test_fraction=0)
    assert dataset.task == "binary" and dataset.class_names == ["crack"]
    mask, ignore = dataset.original_mask(0)
    assert np.array_equal(mask, ids) and ignore is None
    assert build(root, valid_fraction=0, test_fraction=0, task="multiclass").class_names == [
        "background",
        "crack",
    ]


def test_without_labelmap_the_classes_are_pascal_vocs_in_vocs_colours(tmp_path):
    ids = np.zeros((16, 16), np.int64)
    for row, class_id in enumerate(VOC_TABLE):
        ids[row * 2 : row * 2 + 2] = class_id
    ids[-2:] = 255  # VOC's border colour: ignored
    colours = {**VOC_TABLE, 255: (224, 224, 192)}
    root = write_export(tmp_path / "export", {"2007_000032": ids}, labelmap=None, colours=colours)
    dataset = build(root, valid_fraction=0, test_fraction=0)
    assert len(dataset.class_names) == 21 and dataset.class_names[8] == "cat"
    mask, ignore = dataset.original_mask(0)
    assert np.array_equal(mask, ids)
    assert np.array_equal(ignore, ids == 255)


def test_palette_and_greyscale_masks(tmp_path):
    ids = random_ids(7)
    root = write_export(tmp_path / "export", {"p": ids, "g": ids.T.copy()})
    palette_mask = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette_mask.putpalette([value for colour in COLOURS.values() for value in colour])
    palette_mask.save(root / "SegmentationClass" / "p.png")  # a palette PNG: its palette holds the colours
    Image.fromarray(ids.T.astype(np.uint8), mode="L").save(root / "SegmentationClass" / "g.png")  # ids
    found = masks_by_name(build(root, valid_fraction=0, test_fraction=0))
    assert np.array_equal(found["p"], ids) and np.array_equal(found["g"], ids.T)


def test_an_image_listed_without_a_mask_is_all_background(tmp_path):
    root = write_export(tmp_path / "export", {"shapes": random_ids(1), "empty": None})
    found = masks_by_name(build(root, valid_fraction=0, test_fraction=0))
    assert found["empty"].shape == (20, 28) and not found["empty"].any()


def test_a_colour_labelmap_does_not_name_is_one_line_naming_mask_and_colour(tmp_path):
    ids = random_ids(2)
    root = write_export(tmp_path / "export", {"a": random_ids(1), "b": ids})
    painted = paint(ids, COLOURS)
    painted[0, 0] = (1, 2, 3)
    Image.fromarray(painted).save(root / "SegmentationClass" / "b.png")
    mask = root / "SegmentationClass" / "b.png"
    with pytest.raises(
        DataError, match=rf"CVAT mask {mask} holds the colour \(1, 2, 3\) \(1 pixel\(s\)\)"
    ) as raised:
        build(root)
    assert "its colours: background (0, 0, 0), cat (250, 50, 83), dog (51, 221, 255)" in str(raised.value)


def test_subset_lists_are_the_splits_and_a_missing_one_is_held_out_of_train(tmp_path):
    names = [f"img{i:02d}" for i in range(12)]
    subsets = {"Train": names[:8], "Validation": names[8:10], "Test": names[10:]}
    root = write_export(
        tmp_path / "a", {name: random_ids(i) for i, name in enumerate(names)}, subsets=subsets
    )
    splits = every_split(root, valid_fraction=0.25, test_fraction=0.25)
    assert [splits[s].names for s in ("train", "valid", "test")] == [names[:8], names[8:10], names[10:]]

    del subsets["Test"]  # no test list: test_fraction of the training pool, the rest trains
    root = write_export(
        tmp_path / "b", {name: random_ids(i) for i, name in enumerate(names)}, subsets=subsets
    )
    splits = every_split(root, test_fraction=0.25)
    assert splits["valid"].names == names[8:10]
    assert len(splits["test"]) == 2 and len(splits["train"]) == 6  # round(8 * 0.25) held out
    assert sorted(splits["train"].names + splits["test"].names) == names[:8]


@settings(max_examples=10, deadline=None)
@given(count=st.integers(3, 12), valid=st.sampled_from([0.1, 0.3]), seed=st.integers(0, 5))
def test_one_default_list_is_split_at_random_reproducibly(tmp_path_factory, count, valid, seed):
    names = [f"n{i}" for i in range(count)]
    root = write_export(
        tmp_path_factory.mktemp("cvat"), {name: random_ids(i) for i, name in enumerate(names)}
    )
    first = every_split(root, valid_fraction=valid, test_fraction=0.2, split_seed=seed)
    again = every_split(root, valid_fraction=valid, test_fraction=0.2, split_seed=seed)
    parts = {split: first[split].names for split in first}
    assert parts == {split: again[split].names for split in again}
    assert sorted(sum(parts.values(), [])) == sorted(names)
    assert len(parts["test"]) == max(1, round(count * 0.2))
    assert len(parts["valid"]) == max(1, round(count * valid))


def test_an_export_without_photos_names_the_folder_and_images_points_elsewhere(tmp_path):
    drawn = {"a": random_ids(1), "b": random_ids(2)}
    root = write_export(tmp_path / "export", drawn, photos=False)
    (root / "JPEGImages").rmdir()
    with pytest.raises(DataError, match=r"no photo folder .*JPEGImages.*'Save images'.*images=DIR"):
        build(root)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (28, 20)).save(photos / "a.png")
    with pytest.raises(DataError, match=r"1 listed image\(s\) have no photo in .*photos: b$"):
        build(root, images=photos)
    Image.new("RGB", (28, 20)).save(photos / "b.jpeg")
    found = masks_by_name(build(root, images=photos, valid_fraction=0, test_fraction=0))
    assert all(np.array_equal(found[name], ids) for name, ids in drawn.items())


def test_a_mask_of_another_size_than_its_photo_names_both(tmp_path):
    root = write_export(tmp_path / "export", {"a": random_ids(1)})
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "a.jpg")
    with pytest.raises(DataError, match=r"CVAT mask .*a\.png is 28x20 but its photo .*a\.jpg is 30x20"):
        build(root, valid_fraction=0, test_fraction=0)


@pytest.mark.parametrize(
    "labelmap, message",
    [
        ("cat\n", r"line 1: 'cat' is not 'name:r,g,b:parts:actions'"),
        ("background:0,0,0::\ncat:300,0,0::\n", r"line 2: colour '300,0,0' is not r,g,b"),
        ("background:0,0,0::\ncat:1,2::\n", r"line 2: colour '1,2' is not r,g,b"),
        ("background:0,0,0::\ncat:1,2,3::\ncat:4,5,6::\n", r"line 3: class 'cat' is named twice"),
        ("background:0,0,0::\ncat:1,2,3::\ndog:1,2,3::\n", r"classes 'cat' and 'dog' have the same colour"),
        ("# nothing\n", r"names no class"),
    ],
)
def test_a_malformed_labelmap_is_a_data_error_naming_the_line(tmp_path, labelmap, message):
    root = write_export(tmp_path / "export", {"a": random_ids(1)}, labelmap=labelmap)
    with pytest.raises(DataError, match=message) as raised:
        build(root)
    assert str(root / "labelmap.txt") in str(raised.value)


def test_subset_names_leaving_the_export_and_bad_options_are_refused(tmp_path):
    root = write_export(tmp_path / "export", {"a": random_ids(1)}, subsets={"default": ["../outside"]})
    with pytest.raises(DataError, match=r"'\.\./outside' is not an image name inside the export"):
        build(root)
    with pytest.raises(UsageError, match="task"):
        build(root, task="multilabel")


def test_a_changed_mask_is_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setattr(rendered_masks, "RACY_SECONDS", -1.0)  # files written by the test count as settled
    root = write_export(tmp_path / "export", {"a": random_ids(1)})
    options = {"valid_fraction": 0, "test_fraction": 0}
    build(root, **options)
    changed = random_ids(9)
    path = root / "SegmentationClass" / "a.png"
    Image.fromarray(paint(changed, COLOURS)).save(path)
    later = time.time() - 100
    os.utime(path, (later, later))
    assert np.array_equal(build(root, **options).original_mask(0)[0], changed)


def test_segkit_run_trains_evaluates_and_predicts_on_a_cvat_export(tmp_path):
    drawn = {f"frame_{i:06d}": random_ids(i, size=(24, 32)) for i in range(8)}
    root = write_export(tmp_path / "export", drawn)
    options = ["--dataset", "cvat", "--data-path", root, "--dataset-option", "valid_fraction=0.25"]
    args = tiny_run(epochs=1, batch_size=2, image_size=24, loss="ce_dice")
    result = invoke("run", *args, *options, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    evaluation = invoke("evaluate", run_dir, "--split", "test", "-q")
    assert evaluation.exit_code == 0, evaluation.output
    assert "cat" in evaluation.output and "dog" in evaluation.output
    out = tmp_path / "predicted"
    predicted = invoke("predict", run_dir, root / "JPEGImages" / "frame_000000.jpg", "-o", out)
    assert predicted.exit_code == 0, predicted.output
    mask = np.asarray(Image.open(out / "frame_000000_mask.png"))
    assert mask.shape == (24, 32) and set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_segkit_run_on_a_malformed_export_is_one_line_and_writes_no_run(tmp_path):
    ids = random_ids(2)
    root = write_export(tmp_path / "export", {f"n{i}": random_ids(i) for i in range(4)} | {"bad": ids})
    painted = paint(ids, COLOURS)
    painted[3, 4] = (9, 9, 9)
    Image.fromarray(painted).save(root / "SegmentationClass" / "bad.png")
    out = tmp_path / "runs"
    result = run_cli("run", *tiny_run(epochs=1), "--dataset", "cvat", "--data-path", root, "--out", out)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(root / "SegmentationClass" / "bad.png") in line and "(9, 9, 9)" in line
    assert not out.exists() or not any(out.iterdir())


def test_segkit_data_convert_round_trips_a_cvat_export(tmp_path):
    names = [f"img{i:02d}" for i in range(8)]
    masks = {name: random_ids(i) for i, name in enumerate(names)} | {"empty": None}
    subsets = {"default": [*names[:6], "empty"], "Validation": names[6:]}
    root = write_export(tmp_path / "export", masks, subsets=subsets)
    assert_round_trip(tmp_path, "cvat", root, test_fraction=0.2)


def test_segkit_data_convert_round_trips_vocs_ignored_border(tmp_path):
    ids = np.zeros((16, 16), np.int64)
    ids[4:10, 4:10], ids[3, 3:11] = 8, 255
    root = write_export(
        tmp_path / "export",
        {"a": ids, "b": ids.T.copy()},
        labelmap=None,
        colours={**VOC_TABLE, 255: (224, 224, 192)},
    )
    assert_round_trip(tmp_path, "cvat", root, valid_fraction=0.0, test_fraction=0.0)
