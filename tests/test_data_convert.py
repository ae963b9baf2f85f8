"""``segkit data convert FORMAT SRC DST`` (segkit.data.convert): any dataset written as a folder dataset.

The round trip (tests/round_trip.py, which every format's tests call too) on oxford_pet and the
folder's three tasks, the files written checked against the fixtures' own arrays read with Pillow
(0/255 binary masks, class ids with 255 ignored, one 0/255 folder per label), the splits a format
lacks left out with a note, the printed way to train on DST followed, a dataset that is not a
PairedImageDataset converted through the interface alone, and the refusals: a DST in use, options
convert sets itself, a dataset without photo files, ignored pixels a folder cannot hold, and a
failure part way that leaves nothing behind.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    TRIMAP_BACKGROUND,
    TRIMAP_BORDER,
    TRIMAP_PET,
    photo_array,
    save,
    write_classes_file,
    write_folder_layout,
    write_multiclass_folder,
    write_multilabel_folder,
    write_oxford_layout,
)
from fixtures import error_line, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from round_trip import assert_round_trip

import segkit.data.convert as convert_module
from segkit.components import create_dataset
from segkit.config.options import parse_options
from segkit.data.convert import convert_to_folder, mask_images
from segkit.datasets import PairedImageDataset, default_palette
from segkit.errors import DataError, UsageError

TRAINVAL = [f"Bengal_{index}" for index in range(11)]
TEST = ["pug_1", "pug_2"]
CLASSES = ["background", "cat", "dog"]
LABELS = ["cat", "collar"]


def pixels(path: Path) -> np.ndarray:
    """A PNG's stored values, read with Pillow alone (palette indices for a palette PNG)."""
    with Image.open(path) as image:
        return np.asarray(image)


def written(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def pets(tmp_path):
    return write_oxford_layout(tmp_path / "pets", TRAINVAL, TEST)


# -- the round trip, and the files against the fixtures' own arrays ------------------------------------


def test_oxford_pet_round_trip_writes_0_255_masks_of_the_official_splits(tmp_path, pets):
    dst = assert_round_trip(tmp_path, "oxford_pet", pets)
    # valid is every 10th listed trainval name from the first (the official list's order), test is test.txt
    assert sorted(path.stem for path in (dst / "valid" / "images").iterdir()) == ["Bengal_0", "Bengal_10"]
    assert sorted(path.stem for path in (dst / "test" / "images").iterdir()) == TEST
    assert len(list((dst / "train" / "images").iterdir())) == 9
    assert not (dst / "classes.txt").exists()  # binary: the folder would read one as multiclass
    for split in ("train", "valid", "test"):
        for photo in (dst / split / "images").iterdir():
            assert photo.read_bytes() == (pets / "images" / photo.name).read_bytes()
            trimap = pixels(pets / "annotations" / "trimaps" / f"{photo.stem}.png")
            mask = pixels(dst / split / "masks" / f"{photo.stem}.png")
            np.testing.assert_array_equal(mask, np.where(trimap == TRIMAP_BACKGROUND, 0, 255))


def test_oxford_pet_trimap_round_trip_writes_class_ids_and_classes_txt(tmp_path, pets):
    dst = assert_round_trip(tmp_path, "oxford_pet", pets, task="trimap")
    names = [line for line in (dst / "classes.txt").read_text().splitlines() if not line.startswith("#")]
    assert names == ["background", "pet", "border"]
    lookup = {TRIMAP_BACKGROUND: 0, TRIMAP_PET: 1, TRIMAP_BORDER: 2}
    for mask_path in (dst / "test" / "masks").iterdir():
        trimap = pixels(pets / "annotations" / "trimaps" / mask_path.name)
        with Image.open(mask_path) as image:
            assert image.mode == "P"  # ids, shown in the classes' colours
        np.testing.assert_array_equal(pixels(mask_path), np.vectorize(lookup.get)(trimap))


@pytest.mark.parametrize("style", ["01", "0255", "palette"])
def test_folder_binary_pool_round_trip(tmp_path, style):
    names = [f"p{index}" for index in range(12)]
    truth = write_folder_layout(tmp_path / "data", names, style=style)
    dst = assert_round_trip(tmp_path, "folder", tmp_path / "data", valid_fraction=0.25, split_seed=3)
    # the pool's random split became split folders holding every photo once, masks as 0/255
    found = {path.stem: path for path in dst.glob("*/masks/*.png")}
    assert sorted(found) == sorted(names)
    assert len(list((dst / "valid" / "masks").iterdir())) == 3
    for name, path in found.items():
        np.testing.assert_array_equal(pixels(path), truth[name] * 255)


def test_folder_multiclass_splits_round_trip_without_a_test_split(tmp_path):
    data = tmp_path / "data"
    truth = write_multiclass_folder(data / "train", ["a1", "a2", "a3"], classes=None, size=(20, 28))
    truth |= write_multiclass_folder(data / "valid", ["b1", "b2"], classes=None, size=(28, 20))
    write_classes_file(data / "classes.txt", CLASSES)
    assert any((ids == 255).any() for ids in truth.values())
    dst = assert_round_trip(tmp_path, "folder", data)
    assert sorted(path.name for path in dst.iterdir()) == ["classes.txt", "train", "valid"]
    for path in dst.glob("*/masks/*.png"):
        np.testing.assert_array_equal(pixels(path), truth[path.stem])


def test_folder_multilabel_round_trip_writes_a_folder_per_label(tmp_path):
    names = [f"p{index}" for index in range(6)]
    truth = write_multilabel_folder(tmp_path / "data", names, LABELS)
    dst = assert_round_trip(tmp_path, "folder", tmp_path / "data", labels=LABELS, valid_fraction=0.2)
    assert [line for line in (dst / "labels.txt").read_text().splitlines() if line[:1] != "#"] == LABELS
    assert not (dst / "classes.txt").exists()
    for index, label in enumerate(LABELS):
        found = sorted(dst.glob(f"*/masks_{label}/*.png"))
        assert sorted(path.stem for path in found) == sorted(names)
        for path in found:
            np.testing.assert_array_equal(pixels(path), truth[path.stem][index] * 255)


def test_real_photos_round_trip_as_trimap_classes(tmp_path, real_sample):
    """Real photos (EXIF, odd sizes) and trimaps: the real sample's first 20 listed names and its
    unlisted files (a GIF named .jpg, .mat files) beside them; it has no test split."""
    root = tmp_path / "real"
    (root / "annotations").mkdir(parents=True)
    (root / "images").symlink_to(real_sample / "images")
    (root / "annotations" / "trimaps").symlink_to(real_sample / "annotations" / "trimaps")
    lines = (real_sample / "annotations" / "trainval.txt").read_text().splitlines()
    (root / "annotations" / "trainval.txt").write_text("\n".join(lines[:20]) + "\n")
    dst = assert_round_trip(tmp_path, "oxford_pet", root, task="trimap")
    assert sorted(path.name for path in dst.iterdir()) == ["classes.txt", "train", "valid"]
    assert len(list(dst.glob("*/images/*"))) == len(list(dst.glob("*/masks/*.png"))) == 20


# -- the command ------------------------------------------------------------------------------------------


def followed(output: str):
    """The folder dataset built as the command's "train on it:" line says (its --data-path and options)."""
    line = next(line for line in output.splitlines() if line.startswith("train on it: "))
    words = shlex.split(line.removeprefix("train on it: "))
    assert words[:4] == ["segkit", "run", "--dataset", "folder"]
    root = words[words.index("--data-path") + 1]
    options = parse_options([words[i + 1] for i, word in enumerate(words) if word == "--dataset-option"], "")
    return create_dataset("folder", root=root, split="train", **options)


def test_cli_converts_and_says_how_to_train_on_dst(tmp_path):
    write_oxford_layout(tmp_path / "pets", TRAINVAL)  # no test.txt
    result = invoke("data", "convert", "oxford_pet", tmp_path / "pets", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["train", "valid"]
    assert "note: oxford_pet has no test split here, left out: split file" in result.stderr
    assert "wrote 11 photos" in result.stdout and "(train 9, valid 2)" in result.stdout
    assert "0 background, 255 foreground" in result.stdout
    assert len(followed(result.stdout)) == 9


def test_cli_multilabel_output_names_the_labels_option(tmp_path):
    write_multilabel_folder(tmp_path / "data", [f"p{index}" for index in range(5)], LABELS)
    result = invoke(
        "data",
        "convert",
        "folder",
        tmp_path / "data",
        tmp_path / "out",
        "--dataset-option",
        "labels=cat,collar",
    )
    assert result.exit_code == 0, result.output
    dataset = followed(result.stdout)
    assert (dataset.task, dataset.class_names) == ("multilabel", LABELS)


def test_cli_converts_only_the_splits_asked_for(tmp_path, pets):
    result = invoke("data", "convert", "oxford_pet", pets, tmp_path / "out", "--split", "test")
    assert result.exit_code == 0, result.output
    assert written(tmp_path / "out") == sorted(
        [f"test/images/{name}.jpg" for name in TEST] + [f"test/masks/{name}.png" for name in TEST]
    )
    # a split asked for must exist
    write_oxford_layout(tmp_path / "no_test", TRAINVAL)
    result = invoke(
        "data", "convert", "oxford_pet", tmp_path / "no_test", tmp_path / "out2", "--split", "test"
    )
    assert result.exit_code == 1 and "test.txt does not exist" in error_line(result)
    assert not (tmp_path / "out2").exists()


def test_an_empty_dst_is_used_and_a_full_one_refused_unless_overwrite(tmp_path, pets):
    (tmp_path / "empty").mkdir()
    assert invoke("data", "convert", "oxford_pet", pets, tmp_path / "empty", "-q").exit_code == 0
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = invoke("data", "convert", "oxford_pet", pets, full)
    assert result.exit_code == 2
    assert f"DST {full} exists and is not empty" in error_line(result) and "--overwrite" in error_line(result)
    assert written(full) == ["keep.txt"]
    assert invoke("data", "convert", "oxford_pet", pets, full, "--overwrite", "-q").exit_code == 0
    assert written(full) == written(tmp_path / "empty")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "full", "pets"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["synthetic", "{src}", "{dst}"],
            "dataset 'synthetic' cannot be converted: its photos are not files",
        ),
        (["oxford_pets", "{src}", "{dst}"], "oxford_pet"),  # did you mean
        (["oxford_pet", "{src}", "{dst}", "--dataset-option", "split=test"], "--dataset-option split: every"),
        (
            ["oxford_pet", "{src}", "{dst}", "--dataset-option", "root=x"],
            "--dataset-option root: the dataset",
        ),
        (["oxford_pet", "{src}", "{dst}", "--dataset-option", "colour=red"], "colour"),
        (["oxford_pet", "{src}", "{dst}", "--dataset-option", "novalue"], "KEY=VALUE"),
        (["oxford_pet", "{src}", "{src}", "--overwrite"], "is SRC"),
        (["oxford_pet", "{src}", "{tmp}", "--overwrite"], "holds it"),
        (["oxford_pet", "{src}", "{src}/annotations/test.txt"], "is a file"),
    ],
)
def test_usage_errors_exit_2_in_one_line_and_write_nothing(tmp_path, pets, arguments, message):
    before = written(tmp_path)
    values = {"src": pets, "dst": tmp_path / "out", "tmp": tmp_path}
    result = invoke("data", "convert", *[argument.format(**values) for argument in arguments])
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert written(tmp_path) == before


def test_a_dst_that_cannot_be_made_is_a_usage_error(tmp_path, pets, regular_file):
    result = invoke("data", "convert", "oxford_pet", pets, regular_file / "out")
    assert result.exit_code == 2 and f"DST {regular_file / 'out'} cannot be created" in error_line(result)


def test_a_missing_src_is_a_usage_error(tmp_path):
    result = invoke("data", "convert", "oxford_pet", tmp_path / "nowhere", tmp_path / "out")
    assert result.exit_code == 2 and f"SRC {tmp_path / 'nowhere'} does not exist" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_a_bad_train_split_fails_the_conversion_whatever_the_other_splits(tmp_path):
    """valid/ and test/ are fine; a train mask holding a value that is no class id is the error, not a
    train split left out."""
    data = tmp_path / "data"
    for split in ("train", "valid", "test"):
        write_multiclass_folder(data / split, [f"{split}1", f"{split}2"], classes=None)
    write_classes_file(data / "classes.txt", CLASSES)
    bad = data / "train" / "masks" / "train2.png"
    save(bad, np.full((20, 28), 7, np.uint8), "PNG")
    result = invoke("data", "convert", "folder", data, tmp_path / "out")
    assert result.exit_code == 1 and str(bad) in error_line(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_ignored_pixels_a_binary_folder_cannot_hold_are_refused(tmp_path, pets):
    result = invoke(
        "data", "convert", "oxford_pet", pets, tmp_path / "out", "--dataset-option", "border=ignore"
    )
    assert result.exit_code == 1
    assert "ignored pixel(s), which a binary folder dataset cannot hold" in error_line(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pets"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failure_part_way_leaves_no_half_written_dst(tmp_path, pets, monkeypatch, overwrite):
    """The 12th of 13 masks fails to read: neither DST nor a partial folder is left, and a DST being
    replaced keeps what it held."""
    if overwrite:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
    read = PairedImageDataset.original_mask
    calls = []

    def failing(self, index):
        calls.append(index)
        if len(calls) == 12:
            raise DataError(f"trimap {self.pairs[index].mask_path} is damaged")
        return read(self, index)

    monkeypatch.setattr(PairedImageDataset, "original_mask", failing)
    arguments = ["--overwrite"] if overwrite else []
    result = invoke("data", "convert", "oxford_pet", pets, tmp_path / "out", *arguments)
    assert result.exit_code == 1 and "is damaged" in error_line(result)
    assert len(calls) == 12
    expected = ["out", "pets"] if overwrite else ["pets"]
    assert sorted(path.name for path in tmp_path.iterdir()) == expected
    if overwrite:
        assert written(tmp_path / "out") == ["keep.txt"]


# -- a dataset known only through the interface ----------------------------------------------------------


class PhotosAndLabels:
    """Not a PairedImageDataset: photo files, labels in memory, and the task attributes."""

    def __init__(self, photos, masks, task="multiclass", class_names=CLASSES):
        self.photos, self.masks = photos, masks
        self.task, self.class_names = task, list(class_names)

    def __len__(self):
        return len(self.photos)

    def image_path(self, index):
        return self.photos[index]

    def original_mask(self, index):
        mask = self.masks[index].astype(np.int64)
        return mask, mask == 255


def fake_registry(monkeypatch, splits):
    """``create_dataset`` giving ``splits[split]``; a split absent is a DataError, as a missing file is."""

    def create(name, root, split, augment, **options):
        if split not in splits:
            raise DataError(f"{root} has no {split} list")
        return splits[split]

    monkeypatch.setattr(convert_module, "create_dataset", create)


def photos(folder: Path, names, size=(12, 16)) -> list[Path]:
    return [save(folder / name, photo_array(*size, seed), "PNG") for seed, name in enumerate(names)]


def test_a_dataset_that_only_has_the_interface_converts(tmp_path, monkeypatch):
    files = photos(tmp_path / "src" / "a", ["x.png", "y.png"])
    masks = [np.full((12, 16), 2, np.uint8), np.full((12, 16), 255, np.uint8)]
    masks[0][:3] = 255
    fake_registry(monkeypatch, {"train": PhotosAndLabels(files, masks)})
    notes = []
    done = convert_to_folder("fake", tmp_path / "src", tmp_path / "out", quiet=True, log=notes.append)
    assert done.written == {"train": 2} and sorted(done.left_out) == ["test", "valid"]
    assert [note.split(":")[0] for note in notes] == ["note"] * 2
    for name, mask in zip(["x", "y"], masks, strict=True):
        np.testing.assert_array_equal(pixels(tmp_path / "out" / "train" / "masks" / f"{name}.png"), mask)
    dataset = create_dataset("folder", root=tmp_path / "out", split="train")
    assert dataset.class_names == CLASSES


def test_photos_that_share_a_name_in_one_split_are_refused(tmp_path, monkeypatch):
    files = photos(tmp_path / "src" / "a", ["x.png"]) + photos(tmp_path / "src" / "b", ["x.jpg"])
    masks = [np.zeros((12, 16), np.uint8)] * 2
    fake_registry(monkeypatch, {"train": PhotosAndLabels(files, masks)})
    with pytest.raises(
        DataError, match=r"photos .*a/x.png and .*b/x.jpg of the train split share the name 'x'"
    ):
        convert_to_folder("fake", tmp_path / "src", tmp_path / "out", quiet=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["src"]


def test_splits_with_other_classes_and_unwritable_names_are_refused(tmp_path, monkeypatch):
    files = photos(tmp_path / "src", ["x.png"])
    mask = [np.zeros((12, 16), np.uint8)]
    fake_registry(
        monkeypatch,
        {
            "train": PhotosAndLabels(files, mask),
            "valid": PhotosAndLabels(files, mask, class_names=["background", "cat"]),
        },
    )
    with pytest.raises(DataError, match="the valid split is multiclass with classes .* one class list"):
        convert_to_folder("fake", tmp_path / "src", tmp_path / "out", quiet=True)
    fake_registry(monkeypatch, {"train": PhotosAndLabels(files, mask, class_names=["background", "#cat"])})
    with pytest.raises(DataError, match="'#cat' cannot be written to a names file"):
        convert_to_folder("fake", tmp_path / "src", tmp_path / "out", quiet=True)
    labels = PhotosAndLabels(files, [np.zeros((1, 12, 16), np.uint8)], "multilabel", ["a/b"])
    fake_registry(monkeypatch, {"train": labels})
    with pytest.raises(DataError, match="'a/b' cannot name a mask folder"):
        convert_to_folder("fake", tmp_path / "src", tmp_path / "out", quiet=True)
    with pytest.raises(UsageError, match="augment: convert never augments"):
        convert_to_folder("fake", tmp_path / "src", tmp_path / "out", {"augment": "none"})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["src"]


# -- one mask's files, fuzzed -------------------------------------------------------------------------------


@st.composite
def labelled(draw):
    task = draw(st.sampled_from(["binary", "multiclass", "multilabel"]))
    count = {"binary": 1, "multiclass": draw(st.integers(2, 6)), "multilabel": draw(st.integers(1, 3))}[task]
    shape = draw(st.tuples(st.integers(1, 9), st.integers(1, 9)))
    if task == "multiclass":
        values = st.one_of(st.integers(0, count - 1), st.just(255))
        mask = draw(hnp.arrays(np.int64, shape, elements=values))
        return task, count, mask, mask == 255
    full = (count, *shape) if task == "multilabel" else shape
    return task, count, draw(hnp.arrays(np.uint8, full, elements=st.integers(0, 1))), None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labelled())
def test_mask_files_hold_what_the_folder_dataset_reads_back(tmp_path, case):
    task, count, mask, ignore = case
    names = [f"c{index}" for index in range(count)]
    images = mask_images(mask, ignore, task, names, default_palette(names, task), Path("photo.png"))
    expected = {"binary": {"masks": mask * 255}, "multiclass": {"masks": mask}}.get(task)
    if expected is None:
        expected = {f"masks_{name}": mask[index] * 255 for index, name in enumerate(names)}
    assert sorted(images) == sorted(expected)
    for folder, image in images.items():
        image.save(tmp_path / "mask.png")
        np.testing.assert_array_equal(pixels(tmp_path / "mask.png"), expected[folder])


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_ignored_pixels_of_binary_and_multilabel_masks_are_refused(task):
    mask = np.zeros((1, 3, 4) if task == "multilabel" else (3, 4), np.uint8)
    ignore = np.zeros(mask.shape, bool)
    ignore[..., 1, 2] = True
    with pytest.raises(DataError, match=f"photo.png has 1 ignored pixel.*{task} folder dataset"):
        mask_images(mask, ignore, task, ["a"], [[1, 2, 3]], Path("photo.png"))
    mask_images(mask, np.zeros(mask.shape, bool), task, ["a"], [[1, 2, 3]], Path("photo.png"))


def test_multiclass_values_that_are_not_class_ids_are_refused():
    mask = np.array([[0, 1], [3, 255]])
    with pytest.raises(DataError, match=r"photo.png holds \[3\], which are not class ids \(0..2\)"):
        mask_images(mask, mask == 255, "multiclass", CLASSES, default_palette(CLASSES), Path("photo.png"))
