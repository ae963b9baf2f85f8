"""Dataset "coco": COCO instances and panoptic JSONs (COCO's layout and Roboflow exports) read in place,
masks rendered through pycocotools and checked against references made without segkit: rectangles as
numpy slices, RLE from pycocotools' own encoder, the class, overlap and crowd rules as a per-pixel count
(``expected_labels``), polygons against Pillow's rasteriser."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from coco_fixtures import (
    CATEGORIES,
    Photo,
    coco_content,
    panoptic_png,
    random_photo,
    rectangle,
    rle,
    write_coco,
    write_json,
    write_photos,
    write_roboflow,
)
from fixtures import error_line, invoke, only_run_dir, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from pycocotools import mask as mask_api

import segkit
from segkit.data import rendered_masks
from segkit.data.transforms import IGNORE_INDEX
from segkit.errors import DataError, UsageError
from segkit.testing import check_dataset
from segkit_builtin import coco

SIZE = (16, 20)  # height, width of the hand-made photos


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch):
    monkeypatch.setattr(rendered_masks, "RACY_SECONDS", -1.0)  # a JSON written by a test counts as settled


def build(root, split="train", **options):
    return segkit.create_dataset("coco", root=root, split=split, image_size=32, **options)


def labels_by_name(dataset) -> dict[str, np.ndarray]:
    """Each photo's raw labels (255 kept) as the dataset reads them."""
    return {pair.name: dataset.read_labels(pair) for pair in dataset.pairs}


def one_photo(root: Path, *shapes, categories=CATEGORIES, size=SIZE) -> Path:
    """A COCO-layout root whose train and val splits hold one photo, ``p0``, of ``shapes``."""
    photo = Photo("p0.jpg", *size, list(shapes))
    return write_coco(root, {"train": [photo], "val": [photo]}, categories)


def expected_labels(photo: Photo, chosen: list[int], task: str, other="background", crowd="ignore"):
    """The labels the module docstring promises, pixel by pixel: of the annotations covering a pixel, the
    one on top is a non-crowd one before a crowd one, then the smallest, then the later in the file."""
    other_value = 0 if other == "background" else IGNORE_INDEX
    value = {cid: 1 for cid in chosen} if task == "binary" else {cid: i + 1 for i, cid in enumerate(chosen)}
    if task == "multilabel":
        planes = np.zeros((len(chosen), photo.height, photo.width), np.uint8)
        for y in range(photo.height):
            for x in range(photo.width):
                here = [s for s in photo.shapes if s.pixels[y, x]]
                for k, cid in enumerate(chosen):
                    mine = [s for s in here if s.category_id == cid]
                    if any(not s.iscrowd or crowd == "label" for s in mine):
                        planes[k, y, x] = 1
                    elif mine or (other == "ignore" and any(s.category_id not in chosen for s in here)):
                        planes[k, y, x] = IGNORE_INDEX
        return planes
    labels = np.zeros((photo.height, photo.width), np.uint8)
    for y in range(photo.height):
        for x in range(photo.width):
            here = [(i, s) for i, s in enumerate(photo.shapes) if s.pixels[y, x]]
            if not here:
                continue
            _, top = min(here, key=lambda item: (item[1].iscrowd, item[1].pixels.sum(), -item[0]))
            if top.category_id not in chosen:
                labels[y, x] = other_value
            elif top.iscrowd and crowd == "ignore":
                labels[y, x] = IGNORE_INDEX
            else:
                labels[y, x] = value[top.category_id]
    return labels


# -- the fixtures are what COCO's own library reads ----------------------------------------------------


def test_the_fixture_annotations_decode_with_pycocotools_to_their_reference_masks():
    rng = np.random.default_rng(0)
    pixels = rng.random(SIZE) < 0.4
    shapes = [
        rectangle(1, (2, 3, 9, 11), SIZE),
        rle(1, pixels, compressed=True),
        rle(1, pixels, compressed=False),
        rle(1, np.ones(SIZE, bool), compressed=False),
    ]
    for shape in shapes:
        segmentation = shape.segmentation
        if isinstance(segmentation, list):
            decoded = mask_api.decode(mask_api.merge(mask_api.frPyObjects(segmentation, *SIZE)))
        elif isinstance(segmentation["counts"], list):
            decoded = mask_api.decode(mask_api.frPyObjects(segmentation, *SIZE))
        else:
            decoded = mask_api.decode({**segmentation, "counts": segmentation["counts"].encode()})
        assert (decoded.astype(bool) == shape.pixels).all()


# -- masks ---------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    chosen=st.one_of(
        st.none(), st.permutations([1, 3, 7]).flatmap(lambda ids: st.sampled_from([ids[:1], ids[:2], ids]))
    ),
    other=st.sampled_from(["background", "ignore"]),
    crowd=st.sampled_from(["ignore", "label"]),
    task=st.sampled_from(["auto", "multilabel", "binary"]),
)
def test_masks_follow_the_class_overlap_and_crowd_rules(seed, chosen, other, crowd, task):
    """Random overlapping rectangles (polygons) and blobs (compressed and uncompressed RLE), some crowd,
    against the per-pixel reference, for every task and option."""
    rng = np.random.default_rng(seed)
    photos = [random_photo(rng, f"p{index}") for index in range(3)]
    with tempfile.TemporaryDirectory() as folder:
        root = write_coco(Path(folder), {"train": photos})
        options = {"other": other, "crowd": crowd, "task": task}
        if chosen is not None:
            options["categories"] = list(chosen)
        dataset = build(root, **options)
        ids = list(chosen) if chosen is not None else [1, 3, 7]
        resolved = task if task != "auto" else ("binary" if len(ids) == 1 else "multiclass")
        got = labels_by_name(dataset)
    assert getattr(dataset, "task", "binary") == resolved
    for photo in photos:
        expected = expected_labels(photo, ids, resolved, other, crowd)
        assert got[photo.file_name[:-4]].tolist() == expected.tolist(), photo.file_name


def distance_to_outline(polygon: list[float], size: tuple[int, int]) -> np.ndarray:
    """Each pixel centre's distance to the nearest edge of ``polygon``."""
    ys, xs = np.mgrid[: size[0], : size[1]] + 0.5
    points = np.stack([xs, ys], axis=-1)
    corners = np.asarray(polygon).reshape(-1, 2)
    nearest = np.full(size, np.inf)
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        along = np.clip(((points - start) @ (end - start)) / ((end - start) @ (end - start)), 0, 1)
        nearest = np.minimum(
            nearest, np.linalg.norm(points - (start + along[..., None] * (end - start)), axis=-1)
        )
    return nearest


def test_polygons_match_pillows_rasterisation_but_on_their_edges(tmp_path):
    """An independent rasteriser: Pillow fills the pixels whose corner (x, y) is inside, and the outline's
    own pixels; moved by half a pixel it agrees with pycocotools' area rule everywhere but within one
    pixel of the outline, where it draws more."""
    polygon = [2.0, 2.0, 17.5, 4.0, 12.0, 14.0, 3.0, 11.0]
    shape = rectangle(1, (0, 0, 1, 1), SIZE)
    shape.segmentation, shape.pixels = [polygon], np.zeros(SIZE, bool)
    dataset = build(one_photo(tmp_path, shape), categories=[1])
    got = dataset.read_labels(dataset.pairs[0]).astype(bool)
    drawn = Image.new("L", SIZE[::-1], 0)
    ImageDraw.Draw(drawn).polygon(
        [(x - 0.5, y - 0.5) for x, y in zip(polygon[::2], polygon[1::2], strict=True)], fill=1
    )
    reference = np.asarray(drawn, bool)
    near_edge = distance_to_outline(polygon, SIZE) < 1.0  # Pillow also fills the outline's own pixels
    assert got.sum() > 80 and reference[~near_edge].sum() > 40
    assert (got[~near_edge] == reference[~near_edge]).all()
    assert not (got & ~reference).any()  # never beyond what Pillow draws


def test_a_crowd_rle_is_ignored_and_instances_lie_on_top_of_it(tmp_path):
    crowd = np.zeros(SIZE, bool)
    crowd[:, :10] = True
    root = one_photo(tmp_path, rectangle(1, (6, 4, 14, 8), SIZE), rle(1, crowd, compressed=False, iscrowd=1))
    labels = build(root, categories=["cat", "dog"]).read_labels
    dataset = build(root, categories=["cat", "dog"])
    got = labels(dataset.pairs[0])
    expected = np.zeros(SIZE, np.uint8)
    expected[:, :10] = IGNORE_INDEX
    expected[4:8, 6:14] = 1
    assert got.tolist() == expected.tolist()
    mask, ignore = dataset.original_mask(0)
    assert mask.dtype == np.int64 and ignore.tolist() == (expected == IGNORE_INDEX).tolist()
    labelled = build(root, categories=["cat", "dog"], crowd="label")
    assert (labelled.read_labels(labelled.pairs[0]) == np.where(crowd | (expected == 1), 1, 0)).all()


def test_the_smaller_instance_is_on_top_whatever_the_order_in_the_file(tmp_path):
    big, small = rectangle(3, (0, 0, 16, 12), SIZE), rectangle(1, (4, 4, 8, 8), SIZE)
    expected = np.zeros(SIZE, np.uint8)
    expected[0:12, 0:16] = 2  # dog
    expected[4:8, 4:8] = 1  # cat on top
    for index, shapes in enumerate([(big, small), (small, big)]):
        dataset = build(one_photo(tmp_path / str(index), *shapes), categories=["cat", "dog"])
        assert dataset.read_labels(dataset.pairs[0]).tolist() == expected.tolist()


def test_of_two_equally_large_instances_the_later_one_is_on_top(tmp_path):
    first, second = rectangle(1, (0, 0, 8, 8), SIZE), rectangle(3, (4, 4, 12, 12), SIZE)
    dataset = build(one_photo(tmp_path, first, second), categories=["cat", "dog"])
    assert dataset.read_labels(dataset.pairs[0])[5, 5] == 2


def test_a_photo_without_annotations_is_kept_as_background(tmp_path):
    photos = [Photo("empty.jpg", *SIZE), Photo("cat.jpg", *SIZE, [rectangle(1, (1, 1, 5, 5), SIZE)])]
    dataset = build(write_coco(tmp_path, {"train": photos}))
    got = labels_by_name(dataset)
    assert sorted(got) == ["cat", "empty"]
    assert got["empty"].tolist() == np.zeros(SIZE, np.uint8).tolist()


def test_categories_pick_and_order_the_classes_by_name_or_id(tmp_path):
    root = one_photo(tmp_path, rectangle(1, (0, 0, 4, 4), SIZE), rectangle(7, (10, 10, 14, 14), SIZE))
    everything = build(root)
    assert everything.class_names == ["background", "cat", "dog", "car"]
    for categories in (["car", "cat"], [7, 1], "car,cat", "[7, cat]"):
        dataset = build(root, categories=categories)
        assert dataset.class_names == ["background", "car", "cat"]
        labels = dataset.read_labels(dataset.pairs[0])
        assert labels[0, 0] == 2 and labels[12, 12] == 1


def test_other_categories_are_background_or_ignored(tmp_path):
    root = one_photo(tmp_path, rectangle(1, (0, 0, 4, 4), SIZE), rectangle(7, (10, 10, 14, 14), SIZE))
    for other, value in (("background", 0), ("ignore", IGNORE_INDEX)):
        dataset = build(root, categories=["cat", "dog"], other=other)
        labels = dataset.read_labels(dataset.pairs[0])
        assert labels[12, 12] == value and labels[0, 0] == 1 and labels[15, 0] == 0


def test_one_category_is_a_binary_task_named_after_it(tmp_path):
    root = one_photo(tmp_path, rectangle(3, (0, 0, 4, 4), SIZE), rectangle(1, (10, 10, 14, 14), SIZE))
    dataset = build(root, split="valid", categories=["dog"])  # not augmented: the dog stays in
    assert dataset.task == "binary" and dataset.class_names == ["dog"]
    mask, _ = dataset.original_mask(0)
    assert mask.dtype == np.uint8 and mask.sum() == 16 and mask[:4, :4].all()
    item = dataset[0]
    assert item["mask"].shape == (1, 32, 32) and set(item["mask"].unique().tolist()) == {0.0, 1.0}


def test_multilabel_keeps_overlapping_categories_each_in_its_mask(tmp_path):
    root = one_photo(tmp_path, rectangle(1, (0, 0, 10, 10), SIZE), rectangle(3, (5, 5, 15, 15), SIZE))
    dataset = build(root, task="multilabel", categories=["dog", "cat"])
    assert dataset.task == "multilabel" and dataset.class_names == ["dog", "cat"]
    planes = dataset.read_labels(dataset.pairs[0])
    assert planes.shape == (2, *SIZE)
    assert planes[0].sum() == 100 and planes[1].sum() == 100 and planes[:, 7, 7].tolist() == [1, 1]
    assert dataset[0]["mask"].shape == (2, 32, 32)


def test_a_roboflow_grouping_category_is_left_out(tmp_path):
    categories = [
        {"id": 0, "name": "cells", "supercategory": "none"},
        {"id": 1, "name": "cell", "supercategory": "cells"},
    ]
    photo = Photo("a.jpg", *SIZE, [rectangle(1, (2, 2, 6, 6), SIZE)])
    dataset = build(write_roboflow(tmp_path, {"train": [photo]}, categories))
    assert dataset.task == "binary" and dataset.class_names == ["cell"]


# -- panoptic ------------------------------------------------------------------------------------------


def write_panoptic(root: Path, segments: np.ndarray, info: list[dict]) -> Path:
    photo = Photo("p0.jpg", *segments.shape)
    content = coco_content([photo])
    content["annotations"] = [{"image_id": 1, "file_name": "p0.png", "segments_info": info}]
    for split in ("train", "val"):
        write_json(root / "annotations" / f"panoptic_{split}2017.json", content)
        panoptic_png(root / "annotations" / f"panoptic_{split}2017" / "p0.png", segments)
        write_photos(root / f"{split}2017", [photo])
    return root


def test_panoptic_segments_become_classes_crowd_and_unlabelled_ignored(tmp_path):
    segments = np.zeros(SIZE, np.uint32)
    segments[:8] = 70000  # cat, an id that needs all three channels
    segments[8:12] = 5  # car, not chosen
    segments[12:14] = 300  # crowd of dogs
    info = [
        {"id": 70000, "category_id": 1, "iscrowd": 0},
        {"id": 5, "category_id": 7, "iscrowd": 0},
        {"id": 300, "category_id": 3, "iscrowd": 1},
    ]
    root = write_panoptic(tmp_path, segments, info)
    dataset = build(root, annotations="panoptic", categories=["cat", "dog"])
    expected = np.zeros(SIZE, np.uint8)
    expected[:8] = 1
    expected[12:] = IGNORE_INDEX  # the crowd, then the unlabelled rows
    assert dataset.read_labels(dataset.pairs[0]).tolist() == expected.tolist()
    multilabel = build(root, annotations="panoptic", categories=["cat", "dog"], task="multilabel")
    planes = multilabel.read_labels(multilabel.pairs[0])
    assert planes[0, :8].all() and planes[1, 12:14].tolist() == np.full((2, 20), 255).tolist()
    assert planes[:, 14:].min() == IGNORE_INDEX and planes[0, 12:14].max() == 0


def test_a_panoptic_png_holding_an_unlisted_segment_is_named(tmp_path):
    segments = np.full(SIZE, 9, np.uint32)
    root = write_panoptic(tmp_path, segments, [{"id": 8, "category_id": 1, "iscrowd": 0}])
    with pytest.raises(DataError, match=r"p0\.png holds segment id\(s\) \[9\]"):
        build(root, annotations="panoptic")


# -- malformed files: one line naming the file and the annotation --------------------------------------


def break_polygon(content):
    content["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]
    return r"annotation 1: a polygon needs at least 3 points"


def break_category(content):
    content["annotations"][0]["category_id"] = 99
    return r"annotation 1: its category_id 99 is no category"


def break_image(content):
    content["annotations"][0]["image_id"] = 42
    return r"annotation 1: its image_id 42 is no image"


def break_rle_size(content):
    content["annotations"][1]["segmentation"]["size"] = [SIZE[0] + 1, SIZE[1]]
    return r"annotation 2: its RLE size \[17, 20\] \(height, width\) is not its image's \[16, 20\]"


def break_photo_size(content):
    content["images"][0]["width"] = SIZE[1] + 2
    content["annotations"] = []
    return r"image 1 \(p0\.jpg\) is 22x16 in the file, but .*p0\.jpg is 20x16"


def break_json(content):
    return None


MALFORMED = [break_polygon, break_category, break_image, break_rle_size, break_photo_size, break_json]


def malformed_root(root: Path, breaker) -> tuple[Path, str]:
    one_photo(root, rectangle(1, (0, 0, 4, 4), SIZE), rle(3, np.eye(*SIZE, dtype=bool)))
    path = root / "annotations" / "instances_train2017.json"
    content = json.loads(path.read_text())
    message = breaker(content)
    path.write_text(json.dumps(content) if message is not None else "{not json")
    return path, message or "cannot read COCO annotation file"


@pytest.mark.parametrize("breaker", MALFORMED, ids=lambda breaker: breaker.__name__)
def test_a_malformed_annotation_file_is_a_data_error_naming_it(tmp_path, breaker):
    path, message = malformed_root(tmp_path, breaker)
    with pytest.raises(DataError, match=message) as raised:
        build(tmp_path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("breaker", [break_polygon, break_category], ids=lambda breaker: breaker.__name__)
def test_segkit_run_on_a_malformed_file_says_one_line_and_writes_nothing(tmp_path, breaker):
    path, message = malformed_root(tmp_path / "data", breaker)
    out = tmp_path / "runs"
    result = invoke(
        "run", *tiny_run(epochs=1), "--dataset", "coco", "--data-path", tmp_path / "data", "--out", out
    )
    assert result.exit_code == 1, result.output
    assert str(path) in error_line(result)
    assert not out.exists()


def test_an_unknown_category_option_lists_the_categories(tmp_path):
    root = one_photo(tmp_path, rectangle(1, (0, 0, 4, 4), SIZE))
    with pytest.raises(UsageError, match=r"'cta' is no category of .*; it has 1: cat, 3: dog, 7: car"):
        build(root, categories=["cta"])


def test_without_pycocotools_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    root = one_photo(tmp_path, rectangle(1, (0, 0, 4, 4), SIZE))
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(UsageError, match=r"pip install segkit\[coco\]"):
        build(root)


# -- layouts and splits --------------------------------------------------------------------------------


def test_coco_layout_valid_is_val_and_test_is_refused(tmp_path):
    train = [Photo(f"t{index}.jpg", *SIZE) for index in range(3)]
    val = [Photo("v0.jpg", *SIZE)]
    root = write_coco(tmp_path, {"train": train, "val": val})
    assert build(root).names == ["t0", "t1", "t2"]
    assert build(root, split="valid").names == ["v0"]
    with pytest.raises(DataError, match=r"no labelled test split: COCO's test2017 photos come without"):
        build(root, split="test")


def test_coco_layout_of_another_year(tmp_path):
    root = write_coco(tmp_path, {"train": [Photo("a.jpg", *SIZE)]}, year="2014")
    assert build(root, year="2014").names == ["a"]
    with pytest.raises(
        DataError, match=r"instances_train2017\.json does not exist.*instances_train2014\.json"
    ):
        build(root)


def test_roboflow_layout_has_its_three_splits(tmp_path):
    splits = {
        name: [Photo(f"{name}{index}.jpg", *SIZE) for index in range(2)]
        for name in ("train", "valid", "test")
    }
    root = write_roboflow(tmp_path, splits)
    for split in ("train", "valid", "test"):
        assert build(root, split=split).names == [f"{split}0", f"{split}1"]
    del splits["test"]
    other = write_roboflow(tmp_path / "no-test", splits)
    with pytest.raises(DataError, match=r"has no labelled test split"):
        build(other, split="test")


def test_a_folder_of_neither_layout_says_what_each_expects(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(
        DataError, match=r"neither COCO's layout .*instances_train2017\.json.* nor a Roboflow"
    ):
        build(tmp_path)


# -- the rendered masks' cache --------------------------------------------------------------------------


def test_masks_render_once_and_again_after_the_json_is_rewritten(tmp_path, monkeypatch):
    calls = []
    render = coco._render_instances
    monkeypatch.setattr(coco, "_render_instances", lambda *args: calls.append(1) or render(*args))
    root = one_photo(tmp_path, rectangle(1, (0, 0, 4, 4), SIZE))
    path = root / "annotations" / "instances_train2017.json"
    past = time.time() - 100
    os.utime(path, (past, past))
    first = build(root, categories=["cat"])
    again = build(root, categories=["cat"])
    assert len(calls) == 1 and again.pairs == first.pairs
    content = json.loads(path.read_text())
    content["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 4, 0, 4]]  # one column wider, same size
    path.write_text(json.dumps(content))
    os.utime(path, (past + 10, past + 10))
    rewritten = build(root, categories=["cat"])
    assert len(calls) == 2 and rewritten.read_labels(rewritten.pairs[0]).sum() == 20
    other_options = build(root, categories=["cat"], crowd="label")
    assert len(calls) == 3 and other_options.pairs[0].mask_path != rewritten.pairs[0].mask_path


# -- options and the command line ------------------------------------------------------------------------


def test_segkit_plugins_lists_the_options():
    result = invoke("plugins", "--kind", "dataset", "--options")
    assert result.exit_code == 0, result.output
    listed = result.output[result.output.index("coco") :]
    for option in ("layout", "year", "annotations", "categories", "other", "crowd", "task"):
        assert option in listed


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """A COCO-layout folder of 8 + 4 photos, 40x48, with cats and dogs."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("coco") / "data"

    def photos(prefix, count):
        made = []
        for index in range(count):
            x0, y0 = int(rng.integers(0, 20)), int(rng.integers(0, 16))
            shapes = [
                rectangle(1, (x0, y0, x0 + 20, y0 + 16), (40, 48)),
                rectangle(3, (2, 30, 40, 38), (40, 48)),
            ]
            made.append(Photo(f"{prefix}{index}.jpg", 40, 48, shapes))
        return made

    return write_coco(root, {"train": photos("t", 8), "val": photos("v", 4)})


def test_run_evaluate_and_predict_on_a_coco_folder(coco_folder, tmp_path):
    out = tmp_path / "runs"
    args = tiny_run(epochs=1, batch_size=4, loss="ce_dice")
    result = invoke("run", *args, "--dataset", "coco", "--data-path", coco_folder, "--out", out)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    evaluated = tmp_path / "evaluated"
    result = invoke("evaluate", run_dir, "--split", "valid", "-q", "-o", evaluated)
    assert result.exit_code == 0, result.output
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["split"] == "valid" and "iou_dog" in summary["original_resolution"]
    result = invoke("evaluate", run_dir, "-q", "-o", tmp_path / "test")
    assert result.exit_code == 1 and "--split valid" in error_line(result)
    predicted = tmp_path / "predicted"
    result = invoke("predict", run_dir, coco_folder / "val2017" / "v0.jpg", "-o", predicted, "--no-overlay")
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(predicted / "v0_mask.png"))
    assert mask.shape == (40, 48) and mask.max() <= 2


@pytest.mark.slow
def test_recipe_auto_trains_on_a_coco_folder(coco_folder, tmp_path):
    out = tmp_path / "runs"
    args = ("--dataset", "coco", "--data-path", coco_folder, "--device", "cpu", "--workers", "0", "-q")
    result = invoke("run", *args, "--recipe", "auto", "--time-budget", "60s", "--out", out)
    assert result.exit_code == 0, result.output
    assert (only_run_dir(out) / "best.pt").is_file()


@pytest.mark.parametrize(
    "options",
    [{}, {"categories": ["cat"]}, {"task": "multilabel"}],
    ids=["multiclass", "binary", "multilabel"],
)
def test_each_task_passes_the_conformance_kit(coco_folder, options):
    for split in ("train", "valid"):
        check_dataset(build(coco_folder, split=split, **options))


@pytest.mark.parametrize("options", [{}, {"task": "multilabel"}], ids=["multiclass", "multilabel"])
def test_convert_writes_a_folder_that_reads_as_coco_does(tmp_path, options):
    """`segkit data convert coco`: the folder dataset on the files gives the masks read in place (crowd
    regions left out: the folder's binary and multilabel masks have no ignore value)."""
    from round_trip import assert_round_trip

    rng = np.random.default_rng(3)
    splits = {
        split: [random_photo(rng, f"{split}{index}.jpg") for index in range(3)] for split in ("train", "val")
    }
    for photos in splits.values():
        for photo in photos:
            photo.shapes[:] = [shape for shape in photo.shapes if not shape.iscrowd]
    root = write_coco(tmp_path / "coco", splits)
    assert_round_trip(tmp_path, "coco", root, **options)
