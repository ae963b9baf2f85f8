"""Dataset "label_studio": Label Studio's brush export, its RLE decoded by segkit (against
label-studio-converter's own encoder and decoder), the JSON export laid out as Label Studio's task format
documentation shows it with results made by label-studio-converter (``brush.image2annotation``), and the
JSON_MIN and "Brush labels to PNG" exports written from it by label-studio-converter's ``Converter``; the
format's awkward cases (a task with no regions, a task no one annotated, cancelled and older
annotations, overlapping labels, uploaded files' prefixes), its malformed regions, and segkit run /
evaluate / predict on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import error_line, invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_converter import brush
from label_studio_converter.converter import Converter
from PIL import Image
from round_trip import assert_round_trip

import segkit
from segkit.errors import DataError, UsageError
from segkit_builtin.label_studio import decode_rle, fill_polygon

WIDTH, HEIGHT = 32, 24
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Cat" background="#FF0000"/>
    <Label value="Dog" background="#0000FF"/>
  </BrushLabels>
  <PolygonLabels name="poly" toName="image">
    <Label value="Cat"/>
    <Label value="Dog"/>
  </PolygonLabels>
</View>
"""


# -- the RLE ---------------------------------------------------------------------------------------------

runs = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 255)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(runs=runs)
def test_decode_rle_inverts_the_converters_encoder(runs):
    values = np.concatenate([np.full(length, value, np.uint8) for length, value in runs])
    encoded = brush.encode_rle(values)
    assert np.array_equal(decode_rle(encoded), values)
    assert np.array_equal(decode_rle(encoded), brush.decode_rle(encoded))  # the converter's own decoder


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 30), width=st.integers(1, 30))
def test_decode_rle_of_a_brush_mask_gives_the_mask_in_its_alpha(seed, height, width):
    mask = (np.random.default_rng(seed).random((height, width)) < 0.4).astype(np.uint8) * 255
    decoded = decode_rle(brush.mask2rle(mask))
    assert np.array_equal(decoded.reshape(height, width, 4)[..., 3], mask)


def test_decode_rle_reads_a_run_of_different_words():
    # The browser's encoder (thi.ng rle-pack) also writes runs of different words, which the converter's
    # encoder never does: flag 0, run-length size 0 (3 bits), length - 1 = 2, then three 8-bit words.
    header = f"{3:032b}{8 - 1:05b}" + "".join(f"{size - 1:04b}" for size in (3, 4, 8, 16))
    bits = header + "0" + "00" + f"{2:03b}" + f"{10:08b}{20:08b}{30:08b}"
    bits += "0" * (-len(bits) % 8)
    packed = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode_rle(packed).tolist() == [10, 20, 30]
    assert brush.decode_rle(packed).tolist() == [10, 20, 30]


def test_decode_rle_reads_runs_longer_than_sixteen_bits():
    values = np.zeros(200_000, np.uint8)
    values[150_000:] = 255  # the encoder writes a run of 150 000 as several runs of at most 65 536
    assert np.array_equal(decode_rle(brush.encode_rle(values)), values)


@pytest.mark.parametrize(
    "rle, message",
    [
        (brush.encode_rle(np.arange(50, dtype=np.uint8))[:-3], "ends early"),
        ([0, 0, 0], "ends early"),
        ([0, 0, 0, 2, 7, 27] + [255] * 4, "runs past the 2 values"),
        ([1, 2, 300], "not a list of bytes"),
        ("abc", "not a list of bytes"),
        (5, "not a list of bytes"),
    ],
)
def test_a_broken_rle_is_a_value_error_saying_what_is_wrong(rle, message):
    with pytest.raises(ValueError, match=message):
        decode_rle(rle)


# -- polygons --------------------------------------------------------------------------------------------


def centre_inside(xs, ys, x, y) -> bool:
    """Even-odd point in polygon by crossing number, one point at a time (the independent reference)."""
    inside = False
    for i in range(len(xs)):
        x0, y0, x1, y1 = xs[i], ys[i], xs[(i + 1) % len(xs)], ys[(i + 1) % len(xs)]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


@settings(max_examples=40, deadline=None)
@given(points=st.lists(st.tuples(st.floats(-3, 23), st.floats(-3, 17)), min_size=3, max_size=7))
def test_a_polygon_fills_the_pixels_whose_centre_is_inside(points):
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    filled = fill_polygon(xs, ys, 14, 20)
    for row in range(14):
        for column in range(20):
            x, y = column + 0.5, row + 0.5
            near_an_edge = any(  # a centre on an edge may go either way
                abs(y - ys[i]) < 1e-6 or abs(y - ys[(i + 1) % len(ys)]) < 1e-6 for i in range(len(xs))
            )
            if not near_an_edge:
                assert filled[row, column] == centre_inside(xs, ys, x, y), (row, column)


# -- exports ---------------------------------------------------------------------------------------------


def blob(seed: int) -> np.ndarray:
    """A painted region: a filled ellipse somewhere on the photo."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:HEIGHT, :WIDTH]
    cy, cx, ry, rx = (
        rng.uniform(4, HEIGHT - 4),
        rng.uniform(4, WIDTH - 4),
        rng.uniform(3, 8),
        rng.uniform(3, 10),
    )
    return ((rows - cy) / ry) ** 2 + ((columns - cx) / rx) ** 2 <= 1


def brush_result(tmp_path, mask: np.ndarray, label: str, region_id: str) -> dict:
    """A brushlabels result as label-studio-converter makes it from a mask picture."""
    picture = tmp_path / f"region-{region_id}.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(picture)
    result = brush.image2annotation(str(picture), label_name=label, from_name="tag", to_name="image")[
        "result"
    ][0]
    return {**result, "id": region_id}


def polygon_result(points, label: str, region_id: str) -> dict:
    """A polygonlabels result as Label Studio's task format shows it (points in percent)."""
    return {
        "id": region_id,
        "type": "polygonlabels",
        "from_name": "poly",
        "to_name": "image",
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "image_rotation": 0,
        "value": {"points": points, "polygonlabels": [label], "closed": True},
    }


def annotation(annotation_id: int, results: list[dict], created: str, **fields) -> dict:
    return {
        "id": annotation_id,
        "completed_by": 1,
        "result": results,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": created,
        "updated_at": created,
        "lead_time": 4.2,
        "task": 0,
        **fields,
    }


def task(task_id: int, image: str, annotations: list[dict]) -> dict:
    return {
        "id": task_id,
        "data": {"image": image},
        "annotations": annotations,
        "predictions": [],
        "project": 1,
    }


def photo(path, size=(WIDTH, HEIGHT)) -> None:
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def square_pixels() -> np.ndarray:
    """The pixels of the polygon [[25, 25], [75, 25], [75, 75], [25, 75]] (percent) on the photo."""
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[6:18, 8:24] = True
    return inside


def write_export(root, extra: int = 4) -> dict[str, np.ndarray]:
    """A Label Studio project's JSON export with its photos and labeling config in ``root``; returns
    each photo's expected class ids (0 background, 1 Cat, 2 Dog: Dog, later in the config, on top)."""
    scratch = root / "scratch"
    scratch.mkdir(parents=True)
    cat, dog = blob(1), blob(2)
    square = [[25, 25], [75, 25], [75, 75], [25, 75]]  # percent: square_pixels()
    newer = blob(3)
    tasks = [
        task(
            1,
            "/data/upload/1/1a2b3c4d-street.jpg",
            [
                annotation(
                    11,
                    [
                        brush_result(scratch, cat, "Cat", "cat1"),
                        brush_result(scratch, dog, "Dog", "dog1"),
                        polygon_result(square, "Cat", "poly1"),
                    ],
                    "2024-03-01T10:00:00.000000Z",
                )
            ],
        ),
        task(
            2,
            "/data/local-files/?d=photos/park.png",
            [
                annotation(21, [], "2024-03-02T10:00:00.000000Z"),  # submitted with no region: background
                annotation(
                    22, [brush_result(scratch, dog, "Dog", "x")], "2024-03-05T10:00:00Z", was_cancelled=True
                ),
            ],
        ),
        task(
            3,
            "/data/upload/1/9f8e7d6c-alley.jpg",
            [
                annotation(31, [brush_result(scratch, dog, "Dog", "old")], "2024-01-01T10:00:00.000000Z"),
                annotation(32, [brush_result(scratch, newer, "Cat", "new")], "2024-02-01T10:00:00.000000Z"),
            ],
        ),
        task(4, "/data/upload/1/00000000-unlabelled.jpg", []),  # no one annotated it: left out
    ]
    expected = {
        "1a2b3c4d-street": np.where(dog, 2, np.where(cat | square_pixels(), 1, 0)),
        "park": np.zeros((HEIGHT, WIDTH), np.int64),
        "alley": np.where(newer, 1, 0),
    }
    photo(root / "images" / "1a2b3c4d-street.jpg")
    photo(root / "images" / "park.png")
    photo(root / "images" / "alley.jpg")  # uploaded as 9f8e7d6c-alley.jpg: found without the prefix
    for number in range(extra):
        first, second = blob(10 + number), blob(20 + number)
        results = [
            brush_result(scratch, first, "Cat", f"c{number}"),
            brush_result(scratch, second, "Dog", f"d{number}"),
        ]
        tasks.append(
            task(
                100 + number,
                f"/data/upload/1/e{number:07d}-x{number}.jpg",
                [annotation(200 + number, results, "2024-04-01")],
            )
        )
        photo(root / "images" / f"e{number:07d}-x{number}.jpg")
        expected[f"e{number:07d}-x{number}"] = np.where(second, 2, np.where(first, 1, 0))
    (root / "project-1-at-2024-04-02-10-00-1a2b3c4d.json").write_text(json.dumps(tasks, indent=2))
    (root / "label_config.xml").write_text(CONFIG)
    return expected


def build(root, **options):
    return segkit.create_dataset("label_studio", root=root, **options)


def all_masks(root, **options) -> dict[str, np.ndarray]:
    """Every photo's mask, read through the three splits."""
    found = {}
    for split in ("train", "valid", "test"):
        dataset = build(root, split=split, **options)
        for index, name in enumerate(dataset.names):
            assert name not in found
            found[name] = dataset.original_mask(index)[0]
    return found


@pytest.fixture
def export(tmp_path):
    root = tmp_path / "project"
    return root, write_export(root)


def assert_masks(found, expected):
    assert sorted(found) == sorted(expected)
    for name, ids in expected.items():
        assert np.array_equal(found[name], ids), name


def test_a_json_export_gives_one_mask_per_photo_with_the_configs_classes(export):
    root, expected = export
    dataset = build(root, valid_fraction=0.2, test_fraction=0.2)
    assert dataset.task == "multiclass" and dataset.class_names == ["background", "Cat", "Dog"]
    assert "1 task(s) no one annotated left out" in dataset.description
    assert_masks(all_masks(root, valid_fraction=0.2, test_fraction=0.2), expected)


def test_json_min_and_png_exports_written_by_the_converter_give_the_same_masks(export):
    root, expected = export
    exported = next(root.glob("*.json"))
    converter = Converter(CONFIG, str(root))
    converter.convert(str(exported), str(root / "min"), "JSON_MIN", is_dir=False)
    (root / "masks").mkdir()
    converter.convert(str(exported), str(root / "masks"), "BRUSH_TO_PNG", is_dir=False)
    assert (root / "masks" / "task-1-annotation-11-by-1-tag-Dog-0.png").is_file()
    assert_masks(all_masks(root, annotations="min/result.json"), expected)
    assert_masks(all_masks(root, masks="masks"), expected)
    # the PNGs are what is read: the Dog region's PNG erased, the street has no Dog left
    Image.new("L", (WIDTH, HEIGHT), 0).save(root / "masks" / "task-1-annotation-11-by-1-tag-Dog-0.png")
    street = all_masks(root, masks="masks")["1a2b3c4d-street"]
    assert np.array_equal(street, np.where(blob(1) | square_pixels(), 1, 0))


def test_overlapping_labels_the_later_class_is_on_top_and_multilabel_keeps_both(export):
    root, expected = export
    street = expected["1a2b3c4d-street"]
    swapped = all_masks(root, classes="Dog,Cat")["1a2b3c4d-street"]  # Cat now on top, with id 2
    cat = blob(1) | square_pixels()
    assert np.array_equal(swapped, np.where(cat, 2, np.where(street == 2, 1, 0)))
    dataset = build(root, task="multilabel", valid_fraction=0, test_fraction=0)
    index = dataset.names.index("1a2b3c4d-street")
    planes, _ = dataset.original_mask(index)
    assert dataset.class_names == ["Cat", "Dog"]
    assert np.array_equal(planes[0], cat) and np.array_equal(planes[1], blob(2))


def test_the_brush_mask_is_the_alpha_channel(tmp_path):
    # Label Studio's older brush encoder wrote the label's colour in RGB and the stroke in alpha.
    root = tmp_path / "project"
    mask = blob(4)
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, np.where(mask, 255, 0)
    rgba[0, 0, 3] = 127  # an anti-aliased edge below half opacity: not painted
    rgba[0, 1, 3] = 128  # at half opacity: painted
    expected = mask.copy()
    expected[0, 0], expected[0, 1] = False, True
    result = brush_result(tmp_path, np.zeros((HEIGHT, WIDTH), bool), "Cat", "r1")
    result["value"]["rle"] = brush.encode_rle(rgba.ravel())
    root.mkdir()
    export_with(root, result)
    dataset = build(root, valid_fraction=0, test_fraction=0)
    assert np.array_equal(dataset.original_mask(0)[0], np.where(expected, 1, 0))


def test_one_label_is_binary_and_without_config_the_labels_found_are_the_classes(tmp_path):
    root = tmp_path / "project"
    mask = blob(5)
    (root / "scratch").mkdir(parents=True)
    tasks = [
        task(
            1,
            "/data/upload/1/aaaaaaaa-a.jpg",
            [annotation(1, [brush_result(root / "scratch", mask, "Crack", "r")], "x")],
        )
    ]
    (root / "export.json").write_text(json.dumps(tasks))
    photo(root / "images" / "aaaaaaaa-a.jpg")
    dataset = build(root, valid_fraction=0, test_fraction=0)
    assert dataset.task == "binary" and dataset.class_names == ["Crack"]
    assert np.array_equal(dataset.original_mask(0)[0], mask)
    assert build(root, valid_fraction=0, test_fraction=0, task="multiclass").class_names == [
        "background",
        "Crack",
    ]


def export_with(root, result: dict, size=(WIDTH, HEIGHT)) -> None:
    tasks = [task(7, "/data/upload/1/abcdef01-p.jpg", [annotation(70, [result], "2024-01-01")])]
    (root / "export.json").write_text(json.dumps(tasks))
    (root / "label_config.xml").write_text(CONFIG)
    photo(root / "images" / "abcdef01-p.jpg", size)


@pytest.mark.parametrize(
    "case, message",
    [
        ("rle of another size", r"region 'r1': its rle holds 4000 values, not 4 x 32 x 24 = 3072"),
        (
            "drawn on another size",
            r"region 'r1': the region was drawn on a 40x25 image but its photo .* is 32x24",
        ),
        ("label not in config", r"region 'r1': label 'Bird' is not one of the classes \(Cat, Dog\)"),
        ("two-point polygon", r"region 'r1': a polygon needs at least 3 points, it has 2"),
        ("truncated rle", r"region 'r1': its rle ends early"),
    ],
)
def test_a_malformed_region_is_a_data_error_naming_file_task_annotation_and_region(tmp_path, case, message):
    root = tmp_path / "project"
    (root / "scratch").mkdir(parents=True)
    result = brush_result(root / "scratch", blob(1), "Cat", "r1")
    if case == "rle of another size":
        result["value"]["rle"] = brush.mask2rle(np.zeros((40, 25), np.uint8))
    elif case == "drawn on another size":
        result["original_width"], result["original_height"] = 40, 25
    elif case == "label not in config":
        result["value"]["brushlabels"] = ["Bird"]
    elif case == "two-point polygon":
        result = polygon_result([[10, 10], [50, 50]], "Cat", "r1")
    else:
        result["value"]["rle"] = result["value"]["rle"][:10]
    export_with(root, result)
    with pytest.raises(DataError, match=message) as raised:
        build(root, valid_fraction=0, test_fraction=0)
    text = str(raised.value)
    assert "task 7, annotation 70" in text and "\n" not in text
    if case == "label not in config":
        assert str(root / "export.json") in text


def test_photos_not_found_are_named_and_images_points_elsewhere(export, tmp_path):
    root, expected = export
    (root / "images" / "park.png").unlink()
    with pytest.raises(
        DataError,
        match=r"1 photo\(s\) of .* are not in .*images: task 2: /data/local-files/\?d=photos/park.png$",
    ):
        build(root)
    elsewhere = tmp_path / "photos"
    (root / "images").rename(elsewhere)
    photo(elsewhere / "park.png")
    assert_masks(all_masks(root, images=elsewhere), expected)


def test_the_export_is_the_one_json_in_root_or_chosen(export):
    root, _ = export
    (root / "other.json").write_text("[]")
    with pytest.raises(DataError, match=r"holds 2 \*\.json files: other\.json, project-1.*annotations=FILE"):
        build(root)
    with pytest.raises(UsageError, match="annotations: .*missing.json does not exist"):
        build(root, annotations="missing.json")
    with pytest.raises(DataError, match="not a list of tasks"):
        build(root, annotations="label_config.xml" if False else "other.json") if False else None
        (root / "other.json").write_text('"text"')
        build(root, annotations="other.json")


def test_the_photos_are_split_at_random_every_one_in_one_split(export):
    root, expected = export
    for seed in range(3):
        options = {"valid_fraction": 0.3, "test_fraction": 0.2, "split_seed": seed}
        sizes = [len(build(root, split=split, **options)) for split in ("train", "valid", "test")]
        assert sizes == [4, 2, 1]  # 7 photos: round(7 * 0.2) = 1 to test, round(7 * 0.3) = 2 to valid
        assert_masks(all_masks(root, **options), expected)


def test_segkit_run_trains_evaluates_and_predicts_on_a_label_studio_export(export, tmp_path):
    root, _ = export
    args = tiny_run(epochs=1, batch_size=2, image_size=24, loss="ce_dice")
    result = invoke(
        "run", *args, "--dataset", "label_studio", "--data-path", root, "--out", tmp_path / "runs"
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    evaluation = invoke("evaluate", run_dir, "--split", "valid", "-q")
    assert evaluation.exit_code == 0, evaluation.output
    assert "Cat" in evaluation.output and "Dog" in evaluation.output
    out = tmp_path / "predicted"
    assert invoke("predict", run_dir, root / "images" / "park.png", "-o", out).exit_code == 0
    mask = np.asarray(Image.open(out / "park_mask.png"))
    assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_segkit_run_on_a_malformed_export_is_one_line_and_writes_no_run(export, tmp_path):
    root, _ = export
    exported = next(root.glob("*.json"))
    tasks = json.loads(exported.read_text())
    tasks[0]["annotations"][0]["result"][1]["value"]["rle"] = brush.mask2rle(np.zeros((5, 5), np.uint8))
    exported.write_text(json.dumps(tasks))
    out = tmp_path / "runs"
    result = run_cli(
        "run", *tiny_run(epochs=1), "--dataset", "label_studio", "--data-path", root, "--out", out
    )
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "task 1, annotation 11, region 'dog1': its rle holds 100 values" in line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("task_kind", ["multiclass", "multilabel"])
def test_segkit_data_convert_round_trips_a_label_studio_export(export, tmp_path, task_kind):
    root, _ = export
    assert_round_trip(tmp_path, "label_studio", root, task=task_kind, valid_fraction=0.2, test_fraction=0.2)
