"""Dataset "oxford_pet": official layout, split rule, trimap masks, messy and broken files, real sample."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from data_fixtures import (
    REAL_SAMPLE,
    TRIMAP_BACKGROUND,
    TRIMAP_BORDER,
    TRIMAP_PET,
    png_with_corrupt_pixels,
    save,
    trimap_array,
    truncated_jpeg,
    write_oxford_layout,
    write_split_file,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

import segkit
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segkit.errors import DataError, UnknownComponentError, UsageError
from segkit.testing import check_dataset
from segkit_builtin.folder import SkippedFilesWarning
from segkit_builtin.oxford_pet import VALID_EVERY, read_split_file, split_trainval

TRAINVAL = [f"Abyssinian_{index}" for index in range(1, 24)]  # 23 names: valid = positions 0, 10, 20
TEST = ["beagle_1", "beagle_2", "beagle_3"]
SIZE = (24, 32)


@pytest.fixture
def pets(tmp_path):
    return write_oxford_layout(tmp_path / "pets", TRAINVAL, TEST, size=SIZE)


def create(root, **options):
    options.setdefault("image_size", SIZE[0])
    return segkit.create_dataset("oxford_pet", root=root, **options)


# -- splits --------------------------------------------------------------------------------------


def test_train_valid_test_follow_the_split_files(pets):
    train, valid, test = (create(pets, split=split) for split in ("train", "valid", "test"))
    assert valid.names == [TRAINVAL[0], TRAINVAL[10], TRAINVAL[20]]
    assert train.names == [name for position, name in enumerate(TRAINVAL) if position % 10 != 0]
    assert test.names == TEST
    for dataset in (train, valid, test):
        check_dataset(dataset)
        assert dataset.skipped == []


names_lists = st.lists(st.from_regex(r"[A-Za-z]{1,6}_[0-9]{1,3}", fullmatch=True), max_size=80)


@settings(max_examples=60, deadline=None)
@given(names=names_lists)
def test_split_rule_never_puts_an_image_in_two_splits(names):
    train, valid = split_trainval(names)
    distinct = list(dict.fromkeys(names))
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(distinct)
    assert valid == distinct[::VALID_EVERY]
    assert len(valid) == -(-len(distinct) // VALID_EVERY)
    assert split_trainval(names) == (train, valid)


@settings(max_examples=40, deadline=None)
@given(
    names=names_lists.filter(bool),
    comments=st.lists(st.sampled_from(["#", "# a comment", "", "   "]), max_size=5),
)
def test_split_files_skip_comments_blank_lines_and_repeats(tmp_path_factory, names, comments):
    path = tmp_path_factory.mktemp("split") / "trainval.txt"
    lines = [*comments, *(f"{name} 1 1 1" for name in names), *comments, f"{names[0]} 1 1 1"]
    path.write_text("\n".join(lines) + "\n")
    assert read_split_file(path) == list(dict.fromkeys(names))


def test_missing_test_split_file_is_named(tmp_path):
    root = write_oxford_layout(tmp_path / "pets", TRAINVAL, test=None, size=SIZE)
    with pytest.raises(DataError, match=r"split file .*annotations/test\.txt does not exist"):
        create(root, split="test")


def test_split_names_must_be_plain_names(pets):
    write_split_file(pets / "annotations" / "test.txt", ["beagle_1", "../../etc/passwd"])
    with pytest.raises(
        DataError, match=r"test\.txt line 5: '\.\./\.\./etc/passwd' is not a plain image name"
    ):
        create(pets, split="test")


# -- masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("border", ["foreground", "ignore"])
def test_trimaps_become_pet_masks(tmp_path, border):
    # Square photos at image_size: resizing is the identity, so masks compare pixel for pixel.
    root = write_oxford_layout(tmp_path / "square", TRAINVAL, TEST, size=(20, 20))
    dataset = create(root, split="test", augment="none", border=border, image_size=20)
    seed = len(TRAINVAL)  # the fixture seeds photos and trimaps by position over trainval then test
    for index, name in enumerate(TEST):
        item = dataset[index]
        trimap = trimap_array(20, 20, seed + index)
        # Each of the three trimap values is there to be mapped (what the helper's own test checked).
        assert set(np.unique(trimap)) == {TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER}
        pet = trimap == TRIMAP_PET
        on_border = trimap == TRIMAP_BORDER
        expected = pet | on_border if border == "foreground" else pet
        assert item["name"] == name and item["original_size"] == (20, 20)
        assert torch.equal(item["mask"][0], torch.from_numpy(expected).float())
        if border == "ignore":
            assert torch.equal(item["ignore"][0], torch.from_numpy(on_border))
        else:
            assert "ignore" not in item


def test_unexpected_trimap_values_are_named(pets):
    save(pets / "annotations" / "trimaps" / "beagle_2.png", np.full(SIZE, 5, np.uint8), "PNG")
    with pytest.raises(DataError, match=r"trimap .*beagle_2\.png holds values \[5\]"):
        create(pets, split="test")  # when the dataset is built, before any run starts


def test_items_keep_paths_and_original_size(pets):
    dataset = create(pets, split="valid", image_size=16)
    item = dataset[2]
    assert item["image"].shape == (3, 16, 16) and item["original_size"] == SIZE
    assert dataset.image_path(2) == pets / "images" / f"{TRAINVAL[20]}.jpg"
    assert dataset.mask_path(2) == pets / "annotations" / "trimaps" / f"{TRAINVAL[20]}.png"


def test_datasets_survive_pickling_for_spawned_workers(pets):
    dataset = create(pets, split="valid", border="ignore")
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.names == dataset.names
    for key in ("image", "mask", "ignore"):
        assert torch.equal(clone[1][key], dataset[1][key])


def test_batches_collate_with_names_and_sizes(pets):
    dataset = create(pets, split="train", border="ignore", image_size=16)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["mask"].shape == (4, 1, 16, 16)
    assert batch["ignore"].dtype == torch.bool and len(batch["name"]) == 4
    heights, widths = batch["original_size"]
    assert heights.tolist() == [SIZE[0]] * 4 and widths.tolist() == [SIZE[1]] * 4


# -- messy real-world files ----------------------------------------------------------------------


def add_messy_photos(root):
    """Photos in every awkward format the real dataset has (and a few more), all listed in test.txt."""
    height, width = SIZE
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    images = root / "images"
    save(images / "gif_as_jpg.jpg", Image.fromarray(pixels).quantize(64), "GIF")
    save(images / "png_as_jpg.jpg", pixels, "PNG")
    save(images / "cmyk.jpg", Image.fromarray(pixels).convert("CMYK"), "JPEG")
    save(images / "grey.jpg", pixels[..., 0], "JPEG")
    save(images / "palette.jpg", Image.fromarray(pixels).convert("P"), "PNG")
    save(images / "rgba.jpg", Image.fromarray(np.dstack([pixels, pixels[..., 0]]), mode="RGBA"), "PNG")
    save(images / "deep.jpg", Image.fromarray(pixels[..., 0].astype(np.uint16) * 257), "PNG")
    names = ["gif_as_jpg", "png_as_jpg", "cmyk", "grey", "palette", "rgba", "deep"]
    for seed, name in enumerate(names):
        save(root / "annotations" / "trimaps" / f"{name}.png", trimap_array(height, width, seed), "PNG")
    # Junk no split lists, as in the official release.
    (images / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(100))
    save(images / "unlisted.jpg", pixels, "GIF")
    (images / "notes.txt").write_text("not a photo")
    write_split_file(root / "annotations" / "test.txt", names)
    return names


def test_photos_in_any_format_or_mode_load(pets):
    names = add_messy_photos(pets)
    dataset = create(pets, split="test")
    assert dataset.names == names and dataset.skipped == []
    check_dataset(dataset, max_items=len(names))
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["image"].shape == (3, SIZE[0], SIZE[0]) and item["original_size"] == SIZE


def test_unreadable_files_are_skipped_with_a_warning_and_counted(pets):
    trimaps = pets / "annotations" / "trimaps"
    truncated_jpeg(pets / "images" / f"{TRAINVAL[1]}.jpg", SIZE)
    (trimaps / f"{TRAINVAL[2]}.png").write_bytes(b"")
    (pets / "images" / f"{TRAINVAL[3]}.jpg").unlink()
    (trimaps / f"{TRAINVAL[4]}.png").write_text("<html>404</html>")
    with pytest.warns(SkippedFilesWarning, match="left out 4 unreadable") as caught:
        dataset = create(pets, split="train")
    message = str(caught[0].message)
    assert all(name in message for name in TRAINVAL[1:5])
    assert [name for name, _ in dataset.skipped] == TRAINVAL[1:5]
    reasons = dict(dataset.skipped)
    assert "truncated" in reasons[TRAINVAL[1]] and "empty (0 bytes)" in reasons[TRAINVAL[2]]
    assert "does not exist" in reasons[TRAINVAL[3]] and "not an image" in reasons[TRAINVAL[4]]
    assert len(dataset) == 20 - 4 and not set(dataset.names) & set(TRAINVAL[1:5])
    check_dataset(dataset)


def test_strict_makes_unreadable_files_an_error(pets):
    truncated_jpeg(pets / "images" / f"{TRAINVAL[5]}.jpg", SIZE)
    with pytest.raises(DataError, match=rf"{TRAINVAL[5]}\.jpg.*truncated"):
        create(pets, split="train", strict=True)


def test_trimap_of_another_size_names_both_files(pets):
    save(pets / "annotations" / "trimaps" / "beagle_3.png", np.full((10, 12), 2, np.uint8), "PNG")
    with pytest.raises(
        DataError,
        match=r"trimap .*trimaps/beagle_3\.png is 12x10 but its image .*images/beagle_3\.jpg is 32x24",
    ):
        create(pets, split="test")


def test_damage_found_while_loading_is_an_error_naming_the_file(pets):
    png_with_corrupt_pixels(pets / "images" / "beagle_2.jpg", np.zeros((*SIZE, 3), np.uint8))
    dataset = create(pets, split="test")
    assert dataset.skipped == []  # only decoding can find this damage ...
    with pytest.raises(DataError, match=r"cannot decode image file .*beagle_2\.jpg"):
        dataset[1]  # ... and then the file is named, never replaced by another sample


@pytest.mark.slow
def test_damage_found_in_a_dataloader_worker_reaches_the_main_process(pets):
    png_with_corrupt_pixels(pets / "images" / "beagle_2.jpg", np.zeros((*SIZE, 3), np.uint8))
    loader = DataLoader(create(pets, split="test"), batch_size=1, num_workers=1)
    with pytest.raises(DataError, match=r"beagle_2\.jpg"):
        list(loader)


# -- options -------------------------------------------------------------------------------------


def test_bad_options_are_usage_errors(pets):
    with pytest.raises(UsageError, match="needs root"):
        segkit.create_dataset("oxford_pet")
    with pytest.raises(UsageError, match="'split' must be one of train, valid, test, got 'val'"):
        create(pets, split="val")
    with pytest.raises(UsageError, match="'border' must be one of foreground, ignore"):
        create(pets, border="edge")
    with pytest.raises(UsageError, match="no option 'colour'.*options are: augment, border, image_size"):
        create(pets, colour=True)
    with pytest.raises(UnknownComponentError, match="augmentation 'wild'"):
        create(pets, augment="wild")


def test_missing_folders_are_named(tmp_path, pets):
    with pytest.raises(UsageError, match="root folder .*nowhere does not exist"):  # exit 2, as click's
        create(tmp_path / "nowhere")
    (pets / "annotations" / "trimaps").rename(pets / "annotations" / "trimaps_old")
    with pytest.raises(DataError, match=r"annotations/trimaps does not exist"):
        create(pets)


def test_default_augmentation_depends_on_the_split(pets):
    train = create(pets, split="train")
    valid = create(pets, split="valid")
    assert train.transform.name == "default" and valid.transform.name == "none"
    first, second = valid[0], valid[0]
    assert torch.equal(first["image"], second["image"])


def test_registry_entry_suggests_image_size_and_items_record_normalisation(pets):
    component = segkit.get_component("dataset", "oxford_pet")
    assert component.metadata["defaults"]["image_size"] == 256
    dataset = create(pets, split="valid")
    assert dataset.normalization == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert not getattr(dataset, "in_memory", False), "photo datasets load in worker processes"


# -- the real sample -----------------------------------------------------------------------------

real = pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"real sample not found at {REAL_SAMPLE}")


@real
def test_real_sample_every_listed_image_loads():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)
        train = create(REAL_SAMPLE, split="train", image_size=64, augment="none")
        valid = create(REAL_SAMPLE, split="valid", image_size=64)
    assert (len(train), len(valid)) == (270, 30)
    assert not set(train.names) & set(valid.names)
    listed = read_split_file(REAL_SAMPLE / "annotations" / "trainval.txt")
    assert set(train.names) | set(valid.names) == set(listed) and valid.names == listed[::10]
    check_dataset(train)
    check_dataset(valid)
    for dataset in (train, valid):
        for index in range(len(dataset)):
            item = dataset[index]
            assert item["image"].shape == (3, 64, 64) and item["mask"].sum() > 0, item["name"]


@real
def test_real_sample_unlisted_junk_is_ignored():
    names = set(create(REAL_SAMPLE, split="train", image_size=64).names) | set(
        create(REAL_SAMPLE, split="valid", image_size=64).names
    )
    on_disk = {path.stem for path in (REAL_SAMPLE / "images").iterdir()}
    assert on_disk - names == {"Abyssinian_34", "Abyssinian_82"}  # a GIF under .jpg and an unlisted photo
    valid = create(REAL_SAMPLE, split="valid", image_size=64)
    assert {valid.image_path(index).suffix for index in range(len(valid))} == {".jpg"}  # never the .mat files


@real
def test_real_sample_has_no_test_split():
    with pytest.raises(DataError, match=r"annotations/test\.txt does not exist"):
        create(REAL_SAMPLE, split="test")
