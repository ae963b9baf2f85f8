"""Datasets for multiclass and multilabel tasks: the folder, oxford_pet and synthetic datasets, the
sample transform carrying index and K-channel masks through every augmentation pipeline, and the
helpers ``read_class_names`` and ``dataset_task_info``. Binary items must stay bit-identical."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import (
    TRIMAP_BACKGROUND,
    TRIMAP_BORDER,
    TRIMAP_PET,
    photo_array,
    save,
    truncated_jpeg,
    write_classes_file,
    write_folder_layout,
    write_multiclass_folder,
    write_multilabel_folder,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

import segkit
from segkit.data.datasets import (
    BINARY_PALETTE,
    DISTINCT_COLOURS,
    SkippedFilesWarning,
    dataset_task_info,
    read_class_names,
)
from segkit.data.imageio import read_mask
from segkit.data.transforms import FILL, IGNORE_INDEX, SampleTransform, build_sample_transform
from segkit.errors import DataError, UsageError

PIPELINES = ("none", "default", "strong")
NAMES = [f"img{index}" for index in range(6)]
CLASSES = ["background", "cat", "dog"]


def digest(array) -> str:
    array = array.numpy() if isinstance(array, torch.Tensor) else array
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def ids_of(mask) -> set[int]:
    return set(torch.unique(torch.as_tensor(mask)).tolist())


def check_multiclass_item(item, num_classes: int, size: int) -> None:
    """The multiclass item contract."""
    mask, ignore = item["mask"], item["ignore"]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, size, size)
    assert mask.dtype == torch.int64 and mask.shape == (1, size, size)
    assert ignore.dtype == torch.bool and ignore.shape == (1, size, size)
    assert torch.equal(ignore, mask == IGNORE_INDEX)
    assert ids_of(mask) <= set(range(num_classes)) | {IGNORE_INDEX}
    assert isinstance(item["name"], str) and item["name"]


def folder(root, **options):
    options.setdefault("image_size", 16)
    options.setdefault("valid_fraction", 0.0)
    options.setdefault("test_fraction", 0.0)
    return segkit.create_dataset("folder", root=root, **options)


# -- read_class_names ----------------------------------------------------------------------------


def test_class_names_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\ufeff# my classes\n\nbackground\n  road \n# not a class\n\n  \nsky\n")
    assert read_class_names(path) == ["background", "road", "sky"]
    assert read_class_names(write_classes_file(tmp_path / "b.txt", CLASSES)) == CLASSES


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("# only a comment\n\n   \n", "empty"),
        ("background\ncat\n\ncat\n", r"'cat' twice \(lines 2 and 4\)"),
    ],
)
def test_bad_class_names_files_are_data_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_class_names(path)
    assert str(path) in str(caught.value)


def test_missing_class_names_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_class_names(tmp_path / "nope.txt")


# -- dataset_task_info ---------------------------------------------------------------------------


def test_task_info_defaults_for_a_binary_dataset():
    class Plain(torch.utils.data.Dataset):
        pass

    assert dataset_task_info(Plain()) == {
        "task": "binary",
        "class_names": ["foreground"],
        "palette": BINARY_PALETTE,
        "ignore_index": None,
    }
    synthetic = segkit.create_dataset("synthetic", split="valid", length=2)
    assert dataset_task_info(synthetic)["task"] == "binary"


def test_task_info_of_a_multiclass_dataset_with_default_palette():
    class Classes:
        task = "multiclass"
        class_names = ["background", "road", "sky"]

    info = dataset_task_info(Classes())
    assert info == {
        "task": "multiclass",
        "class_names": ["background", "road", "sky"],
        "palette": [[0, 0, 0], DISTINCT_COLOURS[0], DISTINCT_COLOURS[1]],
        "ignore_index": 255,
    }
    many = type("Many", (), {"task": "multilabel", "class_names": [f"c{i}" for i in range(40)]})()
    palette = dataset_task_info(many)["palette"]
    assert len(palette) == 40 and len({tuple(colour) for colour in palette}) == 40


@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"task": "panoptic"}, "panoptic"),
        ({"task": "multiclass", "class_names": ["a", "a"]}, "twice"),
        ({"task": "multiclass", "class_names": ["only"]}, "at least 2"),
        ({"task": "multiclass"}, "class_names"),
        ({"task": "multiclass", "class_names": ["a", "b"], "palette": [[1, 2, 3]]}, "palette"),
        ({"task": "multilabel", "class_names": ["a"], "palette": [[1, 2, 300]]}, "palette"),
        ({"task": "multiclass", "class_names": ["a", "b"], "ignore_index": 1}, "ignore_index"),
        ({"class_names": ["a", "b"]}, "exactly 1"),
    ],
)
def test_task_info_refuses_malformed_attributes(attributes, message):
    with pytest.raises(DataError, match=message):
        dataset_task_info(type("Odd", (), attributes)())


# -- the sample transform with index masks and K-channel masks -----------------------------------


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """uint8 (3, H, W): red = column, green = row, blue = 255 (a real, not invented, pixel)."""
    rows = torch.arange(height, dtype=torch.uint8).view(-1, 1).expand(height, width)
    columns = torch.arange(width, dtype=torch.uint8).view(1, -1).expand(height, width)
    return torch.stack([columns, rows, torch.full((height, width), 255, dtype=torch.uint8)])


def geometric_pipeline(seed: int) -> v2.Compose:
    """Rotation, affine, crop with padding and perspective, as the built-in pipelines use them
    (nearest sampling, fill FILL), ending with a float image of unchanged values."""
    near = InterpolationMode.NEAREST
    return v2.Compose(
        [
            v2.RandomRotation(40, interpolation=near, expand=seed % 2 == 0, fill=FILL),
            v2.RandomAffine(
                20, translate=(0.2, 0.2), scale=(0.7, 1.3), shear=10, interpolation=near, fill=FILL
            ),
            v2.RandomCrop(24, padding=3, pad_if_needed=True, fill=FILL),
            v2.RandomPerspective(0.5, p=0.5, interpolation=near, fill=FILL),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=False),
        ]
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), height=st.integers(8, 40), width=st.integers(8, 40))
def test_index_masks_follow_the_image_and_invented_pixels_are_ignored(seed, height, width):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([0, 1, 2, 3, 7, IGNORE_INDEX], dtype=np.uint8), (height, width))
    torch.manual_seed(seed)
    out = SampleTransform(geometric_pipeline(seed), "geometric", 24)(
        coordinate_image(height, width), labels.astype(np.int64), task="multiclass"
    )
    image, mask = out["image"], out["mask"][0]
    assert mask.dtype == torch.int64 and torch.equal(out["ignore"][0], mask == IGNORE_INDEX)
    real = image[2] == 255
    expected = torch.from_numpy(labels.astype(np.int64))[image[1].long()[real], image[0].long()[real]]
    assert torch.equal(mask[real], expected), "the mask does not follow the image"
    assert bool((mask[~real] == IGNORE_INDEX).all()), "invented pixels of an index mask must be ignored"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 4))
def test_multilabel_masks_move_every_channel_with_the_image(seed, channels):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array([0, 1, IGNORE_INDEX], dtype=np.uint8), (channels, 20, 30))
    torch.manual_seed(seed)
    out = SampleTransform(geometric_pipeline(seed), "geometric", 24)(
        coordinate_image(20, 30), labels, task="multilabel"
    )
    image, mask, ignore = out["image"], out["mask"], out["ignore"]
    assert mask.dtype == torch.float32 and mask.shape[0] == channels and ignore.shape == mask.shape
    real = image[2] == 255
    rows, columns = image[1].long()[real], image[0].long()[real]
    source = torch.from_numpy(labels)[:, rows, columns]
    assert torch.equal(mask[:, real], (source == 1).float())
    assert torch.equal(ignore[:, real], source == IGNORE_INDEX)
    assert bool((mask[:, ~real] == 0).all()) and not bool(ignore[:, ~real].any()), "invented: no label"


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_keeps_class_ids_and_ignores_invented_pixels(name):
    labels = np.kron(
        np.random.default_rng(3).choice(np.array([0, 1, 2, 5], dtype=np.uint8), (6, 8)),
        np.ones((8, 8), dtype=np.uint8),
    )
    photo = torch.from_numpy(photo_array(48, 64, 1)).permute(2, 0, 1).contiguous()
    transform = build_sample_transform(name, 32, train=True)
    invented = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out = transform(photo, labels, task="multiclass")
        assert out["mask"].dtype == torch.int64 and out["mask"].shape == (1, 32, 32)
        assert ids_of(out["mask"]) <= {0, 1, 2, 5, IGNORE_INDEX}
        assert torch.equal(out["ignore"], out["mask"] == IGNORE_INDEX)
        invented += int(out["ignore"].sum())
    # Rotations and shifts invent pixels in the training pipelines; "none" only resizes.
    assert (invented > 0) == (name != "none")


@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_carries_k_channel_masks(name):
    labels = np.stack(
        [np.kron(np.eye(4, 6, k, dtype=np.uint8), np.ones((12, 10), np.uint8)) for k in range(3)]
    )
    labels[1, :4] = IGNORE_INDEX
    photo = torch.from_numpy(photo_array(48, 60, 2)).permute(2, 0, 1).contiguous()
    for seed in range(4):
        torch.manual_seed(seed)
        out = build_sample_transform(name, 24, train=True)(photo, labels, task="multilabel")
        assert out["mask"].shape == (3, 24, 24) and out["ignore"].shape == (3, 24, 24)
        assert ids_of(out["mask"]) <= {0.0, 1.0} and out["ignore"].dtype == torch.bool
        assert not bool((out["ignore"] & (out["mask"] == 1)).any())


def test_resizing_index_masks_is_nearest_neighbour():
    labels = np.random.default_rng(0).choice(np.array([0, 3, 9, IGNORE_INDEX], dtype=np.uint8), (20, 28))
    photo = torch.from_numpy(photo_array(20, 28, 0)).permute(2, 0, 1).contiguous()
    for size in (9, 16, 64):
        out = build_sample_transform("none", size, train=False)(photo, labels, task="multiclass")
        expected = F.interpolate(torch.from_numpy(labels)[None, None].float(), (size, size), mode="nearest")
        assert torch.equal(out["mask"], expected[0].long())


def test_the_transform_refuses_ids_that_do_not_fit_a_byte():
    photo = torch.zeros(3, 4, 4, dtype=torch.uint8)
    transform = build_sample_transform("none", 8, train=False)
    with pytest.raises(ValueError, match="0..255"):
        transform(photo, np.full((4, 4), 300, dtype=np.int64), task="multiclass")
    with pytest.raises(ValueError, match="integer"):
        transform(photo, np.zeros((4, 4), dtype=np.float32), task="multiclass")


# -- the folder dataset: multiclass --------------------------------------------------------------


@pytest.mark.parametrize("style", ["L", "P"])
def test_multiclass_folder_from_classes_txt(tmp_path, style):
    truth = write_multiclass_folder(tmp_path, NAMES, CLASSES, style=style)
    dataset = folder(tmp_path)
    info = dataset_task_info(dataset)
    assert info["task"] == "multiclass" and info["class_names"] == CLASSES and info["ignore_index"] == 255
    assert info["palette"][0] == [0, 0, 0]
    for index, name in enumerate(dataset.names):
        mask, ignore = dataset.original_mask(index)
        # Palette PNGs give their indices, never their colours.
        assert mask.dtype == np.int64 and np.array_equal(mask, truth[name].astype(np.int64))
        assert ignore.dtype == bool and np.array_equal(ignore, truth[name] == 255)
        item = dataset[index]
        check_multiclass_item(item, 3, 16)
        assert ids_of(item["mask"]) <= set(np.unique(truth[name]).tolist())


@pytest.mark.parametrize("augment", PIPELINES)
def test_multiclass_folder_items_keep_their_ids_through_augmentation(tmp_path, augment):
    truth = write_multiclass_folder(tmp_path, NAMES, CLASSES, ignore=False)
    dataset = folder(tmp_path, augment=augment, image_size=24)
    for seed in range(3):
        for index, name in enumerate(dataset.names):
            torch.manual_seed(seed)
            item = dataset[index]
            check_multiclass_item(item, 3, 24)
            assert ids_of(item["mask"]) <= set(np.unique(truth[name]).tolist()) | {IGNORE_INDEX}


def test_unlabelled_multiclass_items_still_carry_an_ignore_mask(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, CLASSES, ignore=False)
    item = folder(tmp_path, augment="none")[0]
    assert item["ignore"].shape == (1, 16, 16) and not bool(item["ignore"].any())


def test_an_id_beyond_the_classes_is_a_data_error_naming_file_and_value(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, CLASSES)
    bad = tmp_path / "masks" / "img2.png"
    ids = np.asarray(Image.open(bad)).copy()
    ids[0, 0] = 7
    save(bad, Image.fromarray(ids, mode="L"), "PNG")
    for strict in (False, True):  # not a file to skip: the data contradicts its classes
        with pytest.raises(DataError, match=r"\{7\}") as caught:
            folder(tmp_path, strict=strict)  # when the dataset is built, before any run starts
        assert str(bad) in str(caught.value) and "ids 0..2" in str(caught.value)


def test_a_mask_changed_after_the_dataset_was_built_is_still_checked_when_read(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, CLASSES)
    dataset = folder(tmp_path)
    index = dataset.names.index("img2")
    bad = tmp_path / "masks" / "img2.png"
    ids = np.asarray(Image.open(bad)).copy()
    ids[0, 0] = 7
    save(bad, Image.fromarray(ids, mode="L"), "PNG")
    for load in (lambda: dataset[index], lambda: dataset.original_mask(index)):
        with pytest.raises(DataError, match=r"\{7\}") as caught:
            load()
        assert str(bad) in str(caught.value) and "ids 0..2" in str(caught.value)
    assert dataset[index - 1]["mask"].dtype == torch.int64  # the others load


def test_rgb_masks_are_a_data_error_asking_for_index_masks(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, CLASSES, style="RGB")
    with pytest.raises(DataError, match="RGB.*index mask.*palette PNG") as caught:
        folder(tmp_path)
    assert str(tmp_path / "masks") in str(caught.value)


def test_unreadable_multiclass_masks_are_skipped_like_binary_ones(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, CLASSES)
    (tmp_path / "masks" / "img3.png").write_bytes(b"not a png")
    with pytest.warns(SkippedFilesWarning, match="img3"):
        dataset = folder(tmp_path)
    assert "img3" not in dataset.names and len(dataset) == len(NAMES) - 1
    with pytest.raises(DataError, match="img3"):
        folder(tmp_path, strict=True)
    truncated_jpeg(tmp_path / "images" / "img4.png", size=(20, 28))
    with pytest.warns(SkippedFilesWarning):
        assert len(folder(tmp_path)) == len(NAMES) - 2


def test_class_names_from_the_option_as_list_string_or_file(tmp_path):
    write_multiclass_folder(tmp_path, NAMES, classes=None)
    with pytest.raises(DataError, match=r"holds values \{0, 1, 2, 255\}.*classes\.txt"):
        folder(tmp_path)  # no classes.txt: binary, and its 0..2 ids refused, pointing at classes.txt
    by_list = folder(tmp_path, classes=["bg", "a", "b"])
    by_text = folder(tmp_path, classes="bg, a, b")
    by_flag = folder(tmp_path, classes="[bg,a,b]")  # as --dataset-option classes=[bg,a,b] gives it
    (tmp_path / "names.txt").write_text("bg\na\nb\n")
    by_file = folder(tmp_path, classes="names.txt")  # relative paths are also looked up under ROOT
    by_path = folder(tmp_path, classes=str(tmp_path / "names.txt"))
    for dataset in (by_list, by_text, by_flag, by_file, by_path):
        assert dataset.task == "multiclass" and dataset.class_names == ["bg", "a", "b"]
    assert np.array_equal(by_list.original_mask(1)[0], by_file.original_mask(1)[0])
    palette = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert (
        dataset_task_info(folder(tmp_path, classes=["bg", "a", "b"], palette=palette))["palette"] == palette
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"classes": ["bg", "a", "a"]}, "twice"),
        ({"classes": ["bg"]}, "at least 2"),
        ({"task": "multiclass"}, "classes.txt"),
        ({"task": "multilabel"}, "labels"),
        ({"classes": ["bg", "a"], "labels": ["a"]}, "exclude each other"),
        ({"task": "binary", "classes": ["bg", "a"]}, "task=multiclass"),
        ({"task": "multiclass", "labels": ["a"]}, "task=multilabel"),
        ({"labels": ["../up"]}, "folder"),
        ({"task": "semantic"}, "task"),
        ({"classes": ["bg", "a"], "palette": [[0, 0, 0]]}, "palette"),
    ],
)
def test_contradictory_or_bad_task_options_are_usage_errors(tmp_path, options, message):
    write_folder_layout(tmp_path, NAMES)
    with pytest.raises(UsageError, match=message):
        folder(tmp_path, **options)


def test_task_binary_overrides_a_classes_txt(tmp_path):
    write_folder_layout(tmp_path / "plain", NAMES, style="01")
    write_folder_layout(tmp_path / "with", NAMES, style="01")
    write_classes_file(tmp_path / "with" / "classes.txt", CLASSES)
    assert folder(tmp_path / "with").task == "multiclass"
    binary = folder(tmp_path / "with", task="binary", augment="none")
    reference = folder(tmp_path / "plain", augment="none")
    assert dataset_task_info(binary)["task"] == "binary"
    for index in range(len(reference)):
        assert torch.equal(binary[index]["mask"], reference[index]["mask"])
        assert binary[index]["mask"].dtype == torch.float32


def test_classes_txt_beside_split_folders(tmp_path):
    for split in ("train", "valid"):
        write_multiclass_folder(tmp_path / split, NAMES[:3], classes=None)
    write_classes_file(tmp_path / "classes.txt", CLASSES)
    dataset = folder(tmp_path, split="valid")
    assert dataset.class_names == CLASSES
    check_multiclass_item(dataset[0], 3, 16)


# -- the folder dataset: multilabel --------------------------------------------------------------


def test_multilabel_folder_with_a_mask_folder_per_label(tmp_path):
    labels = ["cat", "collar"]
    truth = write_multilabel_folder(tmp_path, NAMES, labels)
    dataset = folder(tmp_path, labels=labels, augment="none")
    info = dataset_task_info(dataset)
    assert info["task"] == "multilabel" and info["class_names"] == labels and info["ignore_index"] is None
    for index, name in enumerate(dataset.names):
        mask, ignore = dataset.original_mask(index)
        assert mask.shape == (2, 20, 28) and np.array_equal(mask, truth[name]) and ignore is None
        item = dataset[index]
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (2, 16, 16)
        assert ids_of(item["mask"]) <= {0.0, 1.0} and "ignore" not in item
    overlap = sum(int((truth[name][0] & truth[name][1]).sum()) for name in NAMES)
    assert overlap > 0, "the fixture's labels overlap"
    torch.manual_seed(0)
    augmented = folder(tmp_path, labels="cat,collar", augment="strong")[0]
    assert augmented["mask"].shape == (2, 16, 16)


def test_multilabel_folder_missing_a_label_folder_or_mask(tmp_path):
    write_multilabel_folder(tmp_path, NAMES, ["cat", "collar"])
    with pytest.raises(DataError, match=r"masks_dog.*found: masks_cat, masks_collar"):
        folder(tmp_path, labels=["cat", "dog"])
    (tmp_path / "masks_collar" / "img1.png").unlink()
    with pytest.raises(DataError, match="img1"):
        folder(tmp_path, labels=["cat", "collar"])


# -- oxford_pet: the trimap task -----------------------------------------------------------------


def test_oxford_pet_trimap_task_on_the_real_sample(real_sample):
    dataset = segkit.create_dataset(
        "oxford_pet", root=real_sample, split="valid", image_size=32, task="trimap"
    )
    info = dataset_task_info(dataset)
    assert info["task"] == "multiclass" and info["class_names"] == ["background", "pet", "border"]
    for index in range(3):
        trimap = read_mask(dataset.mask_path(index))
        mask, ignore = dataset.original_mask(index)
        expected = np.select(
            [trimap == TRIMAP_BACKGROUND, trimap == TRIMAP_PET, trimap == TRIMAP_BORDER], [0, 1, 2]
        )
        assert mask.dtype == np.int64 and np.array_equal(mask, expected) and not ignore.any()
        item = dataset[index]
        check_multiclass_item(item, 3, 32)
        assert ids_of(item["mask"]) == {0, 1, 2}
    train = segkit.create_dataset(
        "oxford_pet", root=real_sample, split="train", image_size=32, task="trimap", augment="strong"
    )
    for seed in range(3):
        torch.manual_seed(seed)
        check_multiclass_item(train[seed], 3, 32)
    with pytest.raises(UsageError, match="border"):
        segkit.create_dataset("oxford_pet", root=real_sample, task="trimap", border="ignore")


# -- synthetic: the multiclass variant -----------------------------------------------------------


def test_synthetic_multiclass_is_deterministic_with_every_class_present():
    first = segkit.create_dataset("synthetic", split="valid", length=16, task="multiclass")
    second = segkit.create_dataset("synthetic", split="valid", length=16, task="multiclass", cache=False)
    info = dataset_task_info(first)
    assert info["task"] == "multiclass" and len(info["class_names"]) == 4
    assert info["class_names"][0] == "background"
    seen = set()
    for index in range(len(first)):
        item = first[index]
        check_multiclass_item(item, 4, 64)
        assert not bool(item["ignore"].any())
        other = second[index]
        assert torch.equal(item["mask"], other["mask"]) and torch.equal(item["image"], other["image"])
        seen |= ids_of(item["mask"])
    assert seen == {0, 1, 2, 3}
    binary = segkit.create_dataset("synthetic", split="valid", length=1)[0]
    assert not torch.equal(binary["image"], first[0]["image"]), "its own images, not the binary ones"
    torch.manual_seed(0)
    augmented = segkit.create_dataset(
        "synthetic", split="train", length=2, task="multiclass", augment="strong"
    )
    check_multiclass_item(augmented[1], 4, 64)


# -- binary items: bit-identical to the code before multiclass support ---------------------------
# Recorded with the committed code (before this change) from the same fixtures and seeds: mask and
# ignore bytes exactly (sha256), image sums to float precision.

BINARY_REFERENCE = {
    ("folder", "none", 0): (151.44896946288645, "c105f6ba83ce2dad", None),
    ("folder", "none", 1): (165.7230316735804, "8cbb0ab31978aa07", None),
    ("folder", "none", 2): (167.08473620563745, "9ad8db1b088c53bb", None),
    ("folder", "default", 0): (-218.9479291839525, "446f99cb4a7fee94", None),
    ("folder", "default", 1): (207.64878724794835, "c12915c33c276fd7", None),
    ("folder", "default", 2): (63.19209558190778, "a3940a72167d9d5a", None),
    ("folder", "strong", 0): (-435.5969555503689, "e44cfe0f59af50fe", None),
    ("folder", "strong", 1): (362.17248648032546, "974911ada7008e4b", None),
    ("folder", "strong", 2): (-144.3165491707623, "30f6c4987d7bee72", None),
    ("synthetic", "none", 0): (4.073081469163299, "c482349419a3aa3e", None),
    ("synthetic", "none", 1): (-181.34919271292165, "c5fe8d1b7f978935", None),
    ("synthetic", "none", 2): (-212.96596412314102, "b4abebc4981b226c", None),
    ("synthetic", "default", 0): (-4458.55168314185, "9e2770ba18258d97", None),
    ("synthetic", "default", 1): (187.31162062566727, "1cfa95840ebe44f9", None),
    ("synthetic", "default", 2): (-8368.625734604895, "0df2a28da8a0e87d", None),
}
OXFORD_REFERENCE = {
    ("foreground", "none", 0): (1476.7223529871553, "a166007f862b080f", None),
    ("foreground", "none", 1): (-2418.0684878188185, "8a0936d6742ed6c4", None),
    ("foreground", "default", 0): (-1045.6508686509915, "a9bd7f8ecf703e8e", None),
    ("foreground", "default", 1): (-741.6205818834715, "f8cb724bf93eee35", None),
    ("ignore", "none", 0): (1476.7223529871553, "75860c8a60fce2ed", "495c7f347a79f41f"),
    ("ignore", "none", 1): (-2418.0684878188185, "c9aa9022b5856027", "990d05e3e908ffa1"),
    ("ignore", "default", 0): (-1045.6508686509915, "3cf62facfc6ecd58", "ab54643730f6ab47"),
    ("ignore", "default", 1): (-741.6205818834715, "1817cca7e187258e", "a8db0db22773fa6d"),
}
#: original_mask(0) of the augmented train split: (mask digest, ignore digest or None).
OXFORD_ORIGINAL = {
    "foreground": ("8047e460a2c6b231", None),
    "ignore": ("08612d1bed92c64b", "1a4c328c1ceb55f8"),
}


def assert_reference(item, reference) -> None:
    image_sum, mask_digest, ignore_digest = reference
    assert item["mask"].dtype == torch.float32
    assert digest(item["mask"]) == mask_digest
    assert item["image"].double().sum().item() == pytest.approx(image_sum, rel=1e-6, abs=1e-3)
    assert ("ignore" in item) == (ignore_digest is not None)
    if ignore_digest is not None:
        assert digest(item["ignore"]) == ignore_digest


def test_binary_folder_and_synthetic_items_are_unchanged(tmp_path):
    write_folder_layout(tmp_path, [f"p{index}" for index in range(6)], style="0255")
    for augment in PIPELINES:
        dataset = folder(tmp_path, augment=augment)
        for index in range(3):
            torch.manual_seed(100 + index)
            assert_reference(dataset[index], BINARY_REFERENCE[("folder", augment, index)])
    mask, ignore = dataset.original_mask(1)
    assert mask.dtype == np.uint8 and digest(mask) == "52389702057a5716" and ignore is None
    for augment in ("none", "default"):
        dataset = segkit.create_dataset("synthetic", split="train", length=3, augment=augment)
        for index in range(3):
            torch.manual_seed(3 + index)
            assert_reference(dataset[index], BINARY_REFERENCE[("synthetic", augment, index)])


def test_binary_oxford_pet_items_are_unchanged(real_sample):
    for border in ("foreground", "ignore"):
        for augment in ("none", "default"):
            dataset = segkit.create_dataset(
                "oxford_pet",
                root=real_sample,
                split="valid" if augment == "none" else "train",
                image_size=32,
                augment=augment,
                border=border,
            )
            for index in range(2):
                torch.manual_seed(7 + index)
                assert_reference(dataset[index], OXFORD_REFERENCE[(border, augment, index)])
        mask, ignore = dataset.original_mask(0)
        assert (digest(mask), None if ignore is None else digest(ignore)) == OXFORD_ORIGINAL[border]
        assert dataset_task_info(dataset)["task"] == "binary" and not hasattr(dataset, "task")


def test_the_conformance_kit_accepts_multiclass_datasets_and_rejects_ids_beyond_the_classes():
    import torch

    from segkit.testing import check_dataset

    dataset = segkit.create_dataset(
        "synthetic", split="valid", task="multiclass", valid_size=4, image_size=32
    )
    check_dataset(dataset)

    class IdsBeyondTheClasses:
        task, class_names = "multiclass", ["background", "a", "b"]

        def __len__(self):
            return 1

        def __getitem__(self, index):
            mask = torch.zeros(1, 8, 8, dtype=torch.int64)
            mask[0, 0, 0] = 7
            return {"image": torch.zeros(3, 8, 8), "mask": mask, "name": "x"}

    with pytest.raises(AssertionError, match=r"ids \[7\]"):
        check_dataset(IdsBeyondTheClasses())
