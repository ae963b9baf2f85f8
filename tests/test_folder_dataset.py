"""Dataset "folder": photos and masks paired by stem, split folders or a seeded random split; bad,
missing and unpaired files, also as ``segkit run`` meets them, and mutated real photos (fuzzing)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    CASES,
    CORPUS_SIZE,
    ERROR,
    GOOD_STEMS,
    LOADS,
    corpus_photo,
    decode_or_data_error,
    encoded,
    folder_dataset,
    good_mask,
    mutate,
    photo_array,
    save,
    seed_and_edits,
    seed_bytes,
    truncated_jpeg,
    write,
    write_folder_layout,
    write_split,
)
from fixtures import error_line, expect_named_failure, invoke, only_run_dir, tiny_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import segkit
from segkit.data.imageio import check_image_file
from segkit.errors import DataError, UsageError
from segkit.testing import check_dataset
from segkit_builtin.folder import SkippedFilesWarning, random_split

NAMES = [f"photo{index:02d}" for index in range(30)]


def create(root, **options):
    options.setdefault("image_size", 16)
    return segkit.create_dataset("folder", root=root, **options)


# -- the seeded random split ---------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    names=st.lists(st.text("abcxyz019_-", min_size=1, max_size=6), max_size=60),
    valid_fraction=st.floats(0, 0.5),
    test_fraction=st.floats(0, 0.45),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_split_is_a_reproducible_partition(names, valid_fraction, test_fraction, seed):
    train, valid, test = random_split(names, valid_fraction, test_fraction, seed)
    distinct = set(names)
    assert not (set(train) & set(valid) or set(train) & set(test) or set(valid) & set(test))
    assert set(train) | set(valid) | set(test) == distinct
    assert len(train) + len(valid) + len(test) == len(distinct)
    if len(distinct) >= 3:
        assert train, "something is always left to train on"
        for part, fraction in ((valid, valid_fraction), (test, test_fraction)):
            assert bool(part) == (fraction > 0)
    if len(distinct) >= 20:
        assert abs(len(test) - round(len(distinct) * test_fraction)) <= 1
        assert abs(len(valid) - round(len(distinct) * valid_fraction)) <= 1
    assert random_split(list(reversed(names)), valid_fraction, test_fraction, seed) == (train, valid, test)


def test_random_split_depends_on_the_seed():
    splits = {tuple(random_split(NAMES, 0.2, 0.2, seed)[1]) for seed in range(5)}
    assert len(splits) > 1


def test_flat_folder_splits_at_random(tmp_path):
    write_folder_layout(tmp_path, NAMES)
    parts = {
        split: create(tmp_path, split=split, valid_fraction=0.2, test_fraction=0.1)
        for split in ("train", "valid", "test")
    }
    names = {split: set(dataset.names) for split, dataset in parts.items()}
    assert [len(names[split]) for split in ("train", "valid", "test")] == [21, 6, 3]
    assert names["train"] | names["valid"] | names["test"] == set(NAMES)
    assert not names["train"] & names["valid"] and not names["valid"] & names["test"]
    again = create(tmp_path, split="valid", valid_fraction=0.2, test_fraction=0.1)
    assert set(again.names) == names["valid"]
    reseeded = create(tmp_path, split="valid", valid_fraction=0.2, test_fraction=0.1, split_seed=7)
    assert set(reseeded.names) != names["valid"]
    for dataset in parts.values():
        check_dataset(dataset)


def test_split_subfolders_are_used_when_present(tmp_path):
    write_folder_layout(tmp_path / "train", NAMES[:5])
    write_folder_layout(tmp_path / "valid", NAMES[5:7])
    assert create(tmp_path, split="train").names == NAMES[:5]
    assert create(tmp_path, split="valid").names == NAMES[5:7]
    check_dataset(create(tmp_path, split="valid"))
    with pytest.raises(DataError, match=r"split subfolders \(train, valid\) but no test/"):
        create(tmp_path, split="test")


# -- masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["01", "0255", "palette"])
def test_mask_styles_become_binary_masks(tmp_path, style):
    truth = write_folder_layout(tmp_path / "train", NAMES[:4], size=(16, 16), style=style)
    dataset = create(tmp_path, split="train", augment="none")
    for index, name in enumerate(dataset.names):
        item = dataset[index]
        assert torch.equal(item["mask"][0], torch.from_numpy(truth[name]).float())
        assert item["name"] == name and item["original_size"] == (16, 16) and "ignore" not in item


@settings(max_examples=25, deadline=None)
@given(extra=st.integers(2, 254))
def test_other_mask_values_are_named_when_the_dataset_is_built(tmp_path_factory, extra):
    """Before any run starts (so before a run folder exists), not when the mask is first read."""
    root = tmp_path_factory.mktemp("folder")
    write_folder_layout(root / "train", NAMES[:2], style="01")
    labels = np.zeros((20, 28), np.uint8)
    labels[3, 4] = extra
    labels[5, 6] = 1
    save(root / "train" / "masks" / f"{NAMES[1]}.png", labels, "PNG")
    with pytest.raises(DataError, match=rf"{NAMES[1]}\.png holds values \{{0, 1, {extra}\}}"):
        create(root, split="train")


def test_unpaired_files_are_all_listed(tmp_path):
    write_folder_layout(tmp_path, NAMES[:5])
    (tmp_path / "masks" / f"{NAMES[0]}.png").unlink()
    (tmp_path / "masks" / f"{NAMES[1]}.png").unlink()
    save(tmp_path / "masks" / "orphan.png", np.zeros((4, 4), np.uint8), "PNG")
    with pytest.raises(DataError) as caught:
        create(tmp_path)
    message = str(caught.value)
    assert "2 image(s) without a mask" in message and "1 mask(s) without an image" in message
    assert (
        f"images/{NAMES[0]}.png" in message
        and f"images/{NAMES[1]}.png" in message
        and "masks/orphan.png" in message
    )


def test_hidden_and_non_image_files_are_ignored_but_duplicate_stems_are_not(tmp_path):
    write_folder_layout(tmp_path / "train", NAMES[:3])
    (tmp_path / "train" / "images" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "train" / "masks" / "README.txt").write_text("masks are 0/255")
    assert create(tmp_path, split="train").names == NAMES[:3]
    save(tmp_path / "train" / "images" / f"{NAMES[0]}.jpg", photo_array(20, 28, 0), "JPEG")
    with pytest.raises(DataError, match=rf"two image files share the stem '{NAMES[0]}'"):
        create(tmp_path, split="train")


def test_unreadable_files_are_skipped_or_refused(tmp_path):
    write_folder_layout(tmp_path / "train", NAMES[:4])
    truncated_jpeg(tmp_path / "train" / "images" / f"{NAMES[2]}.png", (20, 28))
    with pytest.warns(SkippedFilesWarning, match=NAMES[2]):
        dataset = create(tmp_path, split="train")
    assert dataset.names == [NAMES[0], NAMES[1], NAMES[3]] and dataset.skipped[0][0] == NAMES[2]
    with pytest.raises(DataError, match="truncated"):
        create(tmp_path, split="train", strict=True)


def test_mask_of_another_size_names_both_files(tmp_path):
    write_folder_layout(tmp_path / "train", NAMES[:2])
    save(tmp_path / "train" / "masks" / f"{NAMES[1]}.png", np.zeros((5, 5), np.uint8), "PNG")
    with pytest.raises(
        DataError, match=rf"mask .*masks/{NAMES[1]}\.png is 5x5 but its image .*{NAMES[1]}\.png is 28x20"
    ):
        create(tmp_path, split="train")


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["folder", "oxford_pet"])
def test_the_options_the_engine_sets_are_declared_once_for_every_paired_image_dataset(module):
    from importlib import import_module

    from segkit.config.settings import ENGINE_DATASET_OPTIONS
    from segkit.data.datasets import PAIRED_DATASET_OPTIONS

    options = import_module(f"segkit_builtin.{module}").OPTIONS
    assert list(PAIRED_DATASET_OPTIONS) == list(ENGINE_DATASET_OPTIONS)
    assert all(options[name] is PAIRED_DATASET_OPTIONS[name] for name in ENGINE_DATASET_OPTIONS)


def test_bad_options_are_usage_errors(tmp_path):
    write_folder_layout(tmp_path, NAMES[:10])
    with pytest.raises(UsageError, match="'valid_fraction' must be a number in"):
        create(tmp_path, valid_fraction=1.5)
    with pytest.raises(UsageError, match="must be below 1"):
        create(tmp_path, valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(UsageError, match="no option 'shuffle'"):
        create(tmp_path, shuffle=True)
    with pytest.raises(UsageError, match="root folder .*missing does not exist"):
        create(tmp_path / "missing")
    (tmp_path / "missing").mkdir()
    with pytest.raises(DataError, match="image folder .*missing/images does not exist"):
        create(tmp_path / "missing")


def test_too_few_images_for_a_split_is_explained(tmp_path):
    write_folder_layout(tmp_path, NAMES[:1])
    with pytest.raises(DataError, match="is empty: .* too few images"):
        create(tmp_path, split="valid")


# -- bad files through `segkit run` (the corpus in data_fixtures) ---------------------------------------

#: ``segkit run`` arguments; the tests add the folder dataset and its path.
TINY_RUN = tiny_run(batch_size=2, epochs=1, callbacks=("csv",))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_run_on_a_folder_dataset(tmp_path, case):
    bad = folder_dataset(tmp_path / "data", case)["train"]
    out = tmp_path / "runs"
    args = ["run", *TINY_RUN, "--dataset", "folder", "--data-path", tmp_path / "data", "--out", out]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(*args)
    skip_warnings = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    if case.outcome == ERROR:
        expect_named_failure(result, bad[case.culprit], case.message)
        assert not out.exists() or not any(out.iterdir()), "refused before the run folder is made"
        return
    assert result.exit_code == 0, result.output
    resolved = json.loads((only_run_dir(out) / "config.json").read_text())["resolved"]
    if case.outcome == LOADS:
        assert resolved["train_images"] == len(GOOD_STEMS) + 1 and not skip_warnings
        return
    assert resolved["train_images"] == len(GOOD_STEMS), "the unreadable pair is left out"
    (warning,) = skip_warnings
    assert str(bad[case.culprit]) in warning and re.search(case.message, warning), warning
    # strict=true turns the skip into an error, before any run folder is made
    strict = invoke(*args[:-2], "--dataset-option", "strict=true", "--out", tmp_path / "strict")
    expect_named_failure(strict, bad[case.culprit], case.message)
    assert not (tmp_path / "strict").exists() or not any((tmp_path / "strict").iterdir())


# -- what is missing or unpaired, through `segkit run` and `segkit evaluate` -------------------------


def run_folder(data_path: Path, out: Path, *extra: str):
    return invoke("run", *TINY_RUN, "--dataset", "folder", "--data-path", data_path, "--out", out, *extra)


def test_an_image_without_a_mask_and_a_mask_without_an_image_are_both_listed(tmp_path):
    data = tmp_path / "data"
    write_split(data / "valid")
    write_split(data / "train")
    lonely_image = write(data / "train" / "images" / "lonely.jpg", encoded(corpus_photo(), "JPEG"))
    lonely_mask = good_mask(data / "train" / "masks", "orphan", CORPUS_SIZE)
    result = run_folder(data, tmp_path / "runs")
    expect_named_failure(result, lonely_image, r"1 image\(s\) without a mask")
    assert f"1 mask(s) without an image: {lonely_mask}" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    "layout, culprit, message",
    [
        ("empty-valid-split", "valid/images", "holds no image files"),
        ("no-valid-folder", "valid", r"has split subfolders \(train, test\) but no valid/"),
        ("valid-without-masks-folder", "valid/masks", "mask folder .* does not exist"),
        ("every-valid-file-unreadable", "valid", "has no usable image/mask pairs"),
    ],
    ids=lambda value: value if isinstance(value, str) and "-" in value else "",
)
def test_an_empty_or_incomplete_split_is_named(tmp_path, layout, culprit, message):
    data = tmp_path / "data"
    write_split(data / "train")
    write_split(data / "test")
    if layout == "empty-valid-split":
        (data / "valid" / "images").mkdir(parents=True)
        (data / "valid" / "masks").mkdir()
    elif layout == "valid-without-masks-folder":
        write(data / "valid" / "images" / "a.jpg", encoded(corpus_photo(), "JPEG"))
    elif layout == "every-valid-file-unreadable":
        for stem in GOOD_STEMS:
            write(data / "valid" / "images" / f"{stem}.jpg", b"")
            good_mask(data / "valid" / "masks", stem, CORPUS_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFilesWarning)
        result = run_folder(data, tmp_path / "runs")
    expect_named_failure(result, data / culprit, message)


@pytest.mark.parametrize("command", ["run", "evaluate"])
@pytest.mark.parametrize("what", ["missing", "a-file", "empty-folder"])
def test_a_data_path_that_is_missing_or_a_file_is_a_usage_error(tmp_path, tiny_checkpoint, command, what):
    """A --data-path naming nothing (or a file) is a usage error, exit 2, as click makes a missing
    path; a folder that exists but lacks what the dataset needs is a data error, exit 1."""
    data = tmp_path / "data"
    if what == "a-file":
        data.write_text("not a folder")
    elif what == "empty-folder":
        data.mkdir()
    if command == "run":
        result = run_folder(data, tmp_path / "runs")
    else:
        result = invoke("evaluate", tiny_checkpoint, "--dataset", "folder", "--data-path", data, "--quiet")
    if what == "empty-folder":
        expect_named_failure(result, data, "does not exist", exit_code=1)  # names the missing images/
        return
    expected = "is not a folder" if what == "a-file" else "does not exist"
    expect_named_failure(result, data, f"folder root folder .*{expected}", exit_code=2)
    if command == "run":
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- fuzzing: a mutated real photo ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=seed_and_edits().filter(lambda case: case[0] != "png-trimap"))
def test_a_folder_dataset_with_a_mutated_photo_loads_or_names_it(tmp_path_factory, case):
    """Built like ``segkit run --dataset folder`` builds it: the photo is skipped (warning), refused
    (DataError naming it) or loaded into a tensor; nothing else."""
    from segkit_builtin.folder import SkippedFilesWarning, build_folder

    name, edits = case
    root = tmp_path_factory.mktemp("folder")
    photo = root / "train" / "images" / "cat.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(mutate(seed_bytes(name), edits))
    good = root / "train" / "images" / "dog.png"
    save(good, np.zeros((24, 32, 3), np.uint8), "PNG")
    size = decode_or_data_error(check_image_file, photo) or (24, 32)
    save(root / "train" / "masks" / "cat.png", np.zeros(size, np.uint8), "PNG")
    save(root / "train" / "masks" / "dog.png", np.zeros((24, 32), np.uint8), "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = build_folder(root, split="train", image_size=32, augment="none")
        except DataError as error:
            assert str(photo) in str(error) or "cat.png" in str(error), error
            return
    skipped = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert dataset.names == (["dog"] if skipped else ["cat", "dog"])
    for index in range(len(dataset)):
        try:
            item = dataset[index]
        except DataError as error:
            assert str(photo) in str(error), error
            continue
        assert item["image"].shape == (3, 32, 32) and torch.isfinite(item["image"]).all()


# -- messages a new user meets (issue 26, item 10) -----------------------------------------------------


def test_a_root_without_images_names_the_folders_it_holds_and_the_ones_expected(tmp_path):
    data = tmp_path / "data"
    write_folder_layout(data, NAMES[:4])
    (data / "images").rename(data / "img")
    (data / "masks").rename(data / "label")
    result = run_folder(data, tmp_path / "runs")
    expect_named_failure(result, data / "images", r"does not exist; .* holds img/, label/")
    assert "images/ and masks/" in error_line(result)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("inner", ["images", "masks", "train/images"])
def test_a_data_path_naming_the_images_folder_suggests_the_dataset_root(tmp_path, inner):
    data = tmp_path / "data"
    write_folder_layout(data / "train" if inner.startswith("train") else data, NAMES[:4])
    result = run_folder(data / inner, tmp_path / "runs")
    line = error_line(result)
    assert result.exit_code == 1, result.output
    assert line.endswith(f"did you mean --data-path {data}?"), line
    with pytest.raises(DataError, match=rf"did you mean root={re.escape(str(data))}\?$"):
        create(data / inner)  # called from Python, the message names the option


def test_the_skipped_files_warning_names_the_flag_that_makes_them_an_error(tmp_path):
    write_folder_layout(tmp_path, NAMES[:4])
    truncated_jpeg(tmp_path / "images" / f"{NAMES[2]}.png", (20, 28))
    with pytest.warns(SkippedFilesWarning) as caught:
        create(tmp_path, valid_fraction=0, test_fraction=0)
    (message,) = [str(warning.message) for warning in caught]
    assert "--dataset-option strict=true makes this an error" in message and "strict=True" not in message


@pytest.mark.parametrize("which", ["images", "masks"])
def test_a_broken_symlink_is_reported_as_a_broken_link_naming_it(tmp_path, which):
    write_folder_layout(tmp_path, NAMES[:4])
    link = tmp_path / which / f"{NAMES[1]}.png"
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere" / "gone.png")
    with pytest.warns(SkippedFilesWarning) as caught:
        dataset = create(tmp_path, valid_fraction=0, test_fraction=0)
    assert dataset.names == [NAMES[0], *NAMES[2:4]]
    (message,) = [str(warning.message) for warning in caught]
    assert f"{link} is a broken symbolic link to {tmp_path / 'elsewhere' / 'gone.png'}" in message
    with pytest.raises(DataError, match="broken symbolic link"):
        create(tmp_path, valid_fraction=0, test_fraction=0, strict=True)


def test_an_unknown_split_names_the_split_flag_and_its_choices(tiny_checkpoint):
    result = invoke("evaluate", tiny_checkpoint, "--split", "tset", "--quiet")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "--split must be one of train, valid, test, got 'tset'" in line, line
    assert "option 'split'" not in line
