"""A corpus of bad inputs, generated on the fly, each met through the CLI as a user meets it.

Every case is one row of ``IMAGE_CASES``/``MASK_CASES``: a file written into a small folder dataset
next to good pairs, and what segkit must do with it:

- ``LOADS``: it is a valid picture in an unusual form (GIF under a .jpg name, CMYK, 16-bit, ...) and
  trains, evaluates and predicts like any other;
- ``SKIPPED``: it is unreadable; datasets leave the pair out with a ``SkippedFilesWarning`` naming
  the file and the problem (``strict=true`` makes it an error, exit 1), ``predict`` reports it as
  ``skipped: ...``, carries on with the other inputs and exits 1;
- ``ERROR``: the data is inconsistent (sizes differ, label values that mean nothing); the command
  stops with one ``Error: ...`` line naming the file and the problem, exit 1.

Nothing may end in a Python traceback. The same bad files go through ``segkit run`` and ``segkit
evaluate`` with the folder dataset, through ``segkit evaluate`` with the Oxford-IIIT Pet layout (bad
photos only: trimaps have their own label rules) and through ``segkit predict``.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from data_fixtures import photo_array, truncated_jpeg, write_split_file
from PIL import Image

from segkit.checkpoint import load_checkpoint
from segkit.cli import cli
from segkit_builtin.folder import SkippedFilesWarning

LOADS, SKIPPED, ERROR = "loads", "skipped", "error"
#: (height, width) of every good picture in the corpus.
SIZE = (20, 28)
GOOD = ["good_a", "good_b", "good_c"]
BAD = "bad"
TINY_MODEL = "--model unet --model-option base_channels=4 --image-size 32 --workers 0 --quiet".split()
TINY_RUN = [*TINY_MODEL, "--batch-size", "2", "--epochs", "1", "--callback", "csv"]

# Three short epochs at a learning rate that improves validation Dice in epoch 2, so best.pt is
# written twice: the full-disk cases below fail the first or the second write of each file.
THREE_EPOCH_RUN = [
    *TINY_RUN,
    *("--epochs", "3", "--batch-size", "4", "--learning-rate", "0.01"),
    *("--dataset-option", "train_size=8", "--dataset-option", "valid_size=4"),
]


def invoke(*args: str):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"segkit crashed with {result.exception!r}:\n{result.output}")
    return result


# -- writing files ------------------------------------------------------------------------------------


def mask_array(height: int, width: int) -> np.ndarray:
    """A 0/255 mask: a foreground rectangle in the middle."""
    mask = np.zeros((height, width), np.uint8)
    mask[
        height // 4 : max(height // 4 + 1, 3 * height // 4), width // 4 : max(width // 4 + 1, 3 * width // 4)
    ] = 255
    return mask


def encoded(image: Image.Image | np.ndarray, image_format: str, **options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


_HUGE_PNG: dict[str, bytes] = {}


def huge_png() -> bytes:
    """A real, complete 10000x10000 bilevel PNG (100 megapixels, about 12 kB on disk), made once."""
    if "png" not in _HUGE_PNG:
        _HUGE_PNG["png"] = encoded(Image.new("1", (10_000, 10_000)), "PNG")
    return _HUGE_PNG["png"]


def photo(seed: int = 7) -> np.ndarray:
    return photo_array(*SIZE, seed)


# An image writer puts the photo for ``stem`` into ``folder`` and returns its path and the (height,
# width) its mask must have; a mask writer puts the mask at ``folder/stem.png`` for that size.
ImageWriter = Callable[[Path, str], "tuple[Path, tuple[int, int]]"]
MaskWriter = Callable[[Path, str, "tuple[int, int]"], Path]


def good_image(folder: Path, stem: str) -> tuple[Path, tuple[int, int]]:
    return write(folder / f"{stem}.jpg", encoded(photo(), "JPEG", quality=95)), SIZE


def good_mask(folder: Path, stem: str, size: tuple[int, int]) -> Path:
    return write(folder / f"{stem}.png", encoded(mask_array(*size), "PNG"))


def image_bytes(data: Callable[[], bytes], name: str = "{}.jpg", size=SIZE) -> ImageWriter:
    def writer(folder: Path, stem: str):
        return write(folder / name.format(stem), data()), size

    return writer


def mask_bytes(data: Callable[[tuple[int, int]], bytes], name: str = "{}.png") -> MaskWriter:
    def writer(folder: Path, stem: str, size: tuple[int, int]) -> Path:
        return write(folder / name.format(stem), data(size))

    return writer


def truncated_jpeg_file(folder: Path, stem: str):
    return truncated_jpeg(folder / f"{stem}.jpg", SIZE), SIZE


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def cmyk() -> bytes:
    return encoded(Image.fromarray(photo()).convert("CMYK"), "JPEG")


def palette() -> bytes:
    return encoded(Image.fromarray(photo()).quantize(colors=16), "PNG")


def sixteen_bit_grey() -> bytes:
    return encoded(Image.fromarray(photo()[..., 0].astype(np.uint16) * 257), "PNG")


def rgba() -> bytes:
    pixels = np.dstack([photo(), np.full(SIZE, 90, np.uint8)])
    return encoded(Image.fromarray(pixels, "RGBA"), "PNG")


def sixteen_bit_mask(scale: int) -> Callable[[tuple[int, int]], bytes]:
    def data(size):
        return encoded(Image.fromarray((mask_array(*size) > 0).astype(np.uint16) * scale), "PNG")

    return data


def palette_mask(size) -> bytes:
    mask = Image.fromarray((mask_array(*size) > 0).astype(np.uint8), mode="L").convert("P")
    mask.putpalette([200, 10, 10, 10, 200, 30] + [0, 0, 0] * 254)
    return encoded(mask, "PNG")


def mask_with_values(*values: int) -> Callable[[tuple[int, int]], bytes]:
    """A mask holding exactly ``values``, in horizontal bands."""

    def data(size):
        bands = np.arange(size[0]) * len(values) // size[0]
        mask = np.asarray(values, np.uint8)[bands][:, None].repeat(size[1], axis=1)
        return encoded(mask, "PNG")

    return data


def colour_mask(size) -> bytes:
    mask = np.zeros((*size, 3), np.uint8)
    mask[mask_array(*size) > 0] = (255, 0, 0)
    return encoded(mask, "PNG")


@dataclass(frozen=True)
class Case:
    """One bad (or merely unusual) file in a dataset, and what every command must do with it."""

    id: str
    outcome: str  # LOADS, SKIPPED or ERROR
    message: str = ""  # regex the message must match, besides naming the file
    image: ImageWriter = good_image
    mask: MaskWriter = good_mask
    culprit: str = "image"  # the file the message names: "image" or "mask"


IMAGE_CASES = [
    Case("zero-byte-jpeg", SKIPPED, r"is empty \(0 bytes\)", image=image_bytes(lambda: b"")),
    Case("zero-byte-png", SKIPPED, r"is empty \(0 bytes\)", image=image_bytes(lambda: b"", "{}.png")),
    Case("truncated-jpeg", SKIPPED, "truncated", image=truncated_jpeg_file),
    Case(
        "truncated-png",
        SKIPPED,
        "truncated",
        image=image_bytes(lambda: half(encoded(photo(), "PNG")), "{}.png"),
    ),
    Case(
        "text-file-named-jpg",
        SKIPPED,
        "is not an image",
        image=image_bytes(lambda: b"just some notes\n" * 20),
    ),
    Case(
        "html-error-page-named-jpg",
        SKIPPED,
        "is not an image",
        image=image_bytes(lambda: b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n"),
    ),
    Case(
        "10000x10000-png",
        SKIPPED,
        r"10000x10000 = 100,000,000 pixels, more than segkit\.imageio\.MAX_IMAGE_PIXELS",
        image=image_bytes(huge_png, "{}.png", size=(10_000, 10_000)),
        mask=mask_bytes(lambda size: huge_png()),
    ),
    Case(
        "gif-named-jpg", LOADS, image=image_bytes(lambda: encoded(Image.fromarray(photo()).quantize(), "GIF"))
    ),
    Case("png-named-jpg", LOADS, image=image_bytes(lambda: encoded(photo(), "PNG"))),
    Case("webp-named-jpg", LOADS, image=image_bytes(lambda: encoded(photo(), "WEBP"))),
    Case("rgba-png", LOADS, image=image_bytes(rgba, "{}.png")),
    Case("palette-png", LOADS, image=image_bytes(palette, "{}.png")),
    Case("16-bit-grey-png", LOADS, image=image_bytes(sixteen_bit_grey, "{}.png")),
    Case("grey-jpeg", LOADS, image=image_bytes(lambda: encoded(photo()[..., 1], "JPEG"))),
    Case("cmyk-jpeg", LOADS, image=image_bytes(cmyk)),
    Case("1x1-jpeg", LOADS, image=image_bytes(lambda: encoded(photo()[:1, :1], "JPEG"), size=(1, 1))),
]

MASK_CASES = [
    Case(
        "zero-byte-mask", SKIPPED, r"is empty \(0 bytes\)", mask=mask_bytes(lambda size: b""), culprit="mask"
    ),
    Case(
        "truncated-mask",
        SKIPPED,
        "broken or truncated PNG",
        culprit="mask",
        mask=mask_bytes(lambda size: half(encoded(mask_array(*size), "PNG"))),
    ),
    Case(
        "text-file-named-png-mask",
        SKIPPED,
        "is not an image",
        culprit="mask",
        mask=mask_bytes(lambda size: b"0 0 1 1\n" * 30),
    ),
    Case("16-bit-mask-0-1", LOADS, mask=mask_bytes(sixteen_bit_mask(1))),
    Case("16-bit-mask-0-255", LOADS, mask=mask_bytes(sixteen_bit_mask(255))),
    Case("palette-mask", LOADS, mask=mask_bytes(palette_mask)),
    Case(
        "1-bit-mask",
        LOADS,
        mask=mask_bytes(lambda size: encoded(Image.fromarray(mask_array(*size)).convert("1"), "PNG")),
    ),
    Case(
        "16-bit-mask-0-65535",
        ERROR,
        r"holds values \{0, 65535\}; folder masks must be 0/1 or 0/255",
        mask=mask_bytes(sixteen_bit_mask(65535)),
        culprit="mask",
    ),
    Case(
        "mask-values-0-128-255",
        ERROR,
        r"holds values \{0, 128, 255\}; folder masks must be 0/1 or 0/255",
        mask=mask_bytes(mask_with_values(0, 128, 255)),
        culprit="mask",
    ),
    Case(
        "mask-values-trimap-1-2-3",
        ERROR,
        r"holds values \{1, 2, 3\}",
        mask=mask_bytes(mask_with_values(1, 2, 3)),
        culprit="mask",
    ),
    Case("colour-mask", ERROR, r"is a colour \(RGB\) image", mask=mask_bytes(colour_mask), culprit="mask"),
    Case(
        "mask-of-another-size",
        ERROR,
        r"is 5x7 but its image .* is 28x20 \(width x height\); they must be the "
        "same size",
        mask=mask_bytes(lambda size: encoded(mask_array(7, 5), "PNG")),
        culprit="mask",
    ),
]

CASES = IMAGE_CASES + MASK_CASES


def write_pair(split_dir: Path, stem: str, case: Case) -> dict[str, Path]:
    image_path, size = case.image(split_dir / "images", stem)
    mask_path = case.mask(split_dir / "masks", stem, size)
    return {"image": image_path, "mask": mask_path}


def write_split(split_dir: Path, case: Case | None = None) -> dict[str, Path] | None:
    """Three good pairs and, with ``case``, the pair ``bad``; returns the bad pair's paths."""
    for seed, stem in enumerate(GOOD):
        write(split_dir / "images" / f"{stem}.jpg", encoded(photo_array(*SIZE, seed), "JPEG", quality=95))
        good_mask(split_dir / "masks", stem, SIZE)
    return write_pair(split_dir, BAD, case) if case is not None else None


def folder_dataset(root: Path, case: Case) -> dict[str, dict[str, Path]]:
    """ROOT/{train,valid,test}/{images,masks} with the bad pair in train and test (not valid, so that
    the run's validation stays good and the test split is the one evaluate reads); returns the bad
    pair's paths by split."""
    write_split(root / "valid")
    return {"train": write_split(root / "train", case), "test": write_split(root / "test", case)}


def expect_named_failure(result, path: Path, message: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    assert str(path) in error_lines[0], result.output
    assert re.search(message, error_lines[0]), result.output


def the_run_dir(out: Path) -> Path:
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model trained on synthetic data, for evaluate and predict."""
    out = tmp_path_factory.mktemp("trained")
    result = invoke(
        "run", *TINY_RUN, "--dataset-option", "train_size=4", "--dataset-option", "valid_size=2", "--out", out
    )
    assert result.exit_code == 0, result.output
    return the_run_dir(out) / "best.pt"


# -- the corpus through `segkit run` and `segkit evaluate` (folder dataset) --------------------------


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
        return
    assert result.exit_code == 0, result.output
    resolved = json.loads((the_run_dir(out) / "config.json").read_text())["resolved"]
    if case.outcome == LOADS:
        assert resolved["train_images"] == len(GOOD) + 1 and not skip_warnings
        return
    assert resolved["train_images"] == len(GOOD), "the unreadable pair is left out"
    (warning,) = skip_warnings
    assert str(bad[case.culprit]) in warning and re.search(case.message, warning), warning
    # strict=true turns the skip into an error, before any run folder is made
    strict = invoke(*args[:-2], "--dataset-option", "strict=true", "--out", tmp_path / "strict")
    expect_named_failure(strict, bad[case.culprit], case.message)
    assert not (tmp_path / "strict").exists() or not any((tmp_path / "strict").iterdir())


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_evaluate_on_a_folder_dataset(tmp_path, checkpoint, case):
    bad = folder_dataset(tmp_path / "data", case)["test"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(
            "evaluate",
            checkpoint,
            "--dataset",
            "folder",
            "--data-path",
            tmp_path / "data",
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            tmp_path / "eval",
        )
    skip_warnings = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    if case.outcome == ERROR:
        expect_named_failure(result, bad[case.culprit], case.message)
        return
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    expected_images = len(GOOD) + (case.outcome == LOADS)
    assert summary["images"] == expected_images
    if case.outcome == SKIPPED:
        (warning,) = skip_warnings
        assert str(bad[case.culprit]) in warning and re.search(case.message, warning), warning
    else:
        assert not skip_warnings
        assert f"{BAD}" in (tmp_path / "eval" / "per_image.csv").read_text()


# -- bad photos through `segkit evaluate` on the Oxford-IIIT Pet layout --------------------------------


def trimap(size: tuple[int, int]) -> np.ndarray:
    return np.where(mask_array(*size) > 0, 1, 2).astype(np.uint8)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_evaluate_on_the_oxford_pet_layout(tmp_path, checkpoint, case):
    root = tmp_path / "pets"
    for seed, name in enumerate(GOOD):
        write(root / "images" / f"{name}.jpg", encoded(photo_array(*SIZE, seed), "JPEG"))
        write(root / "annotations" / "trimaps" / f"{name}.png", encoded(trimap(SIZE), "PNG"))
    bad_photo, size = case.image(root / "images", BAD)
    big = size[0] * size[1] > 1_000_000  # the 10000x10000 case: the same cheap bilevel PNG will do
    write(
        root / "annotations" / "trimaps" / f"{BAD}.png", huge_png() if big else encoded(trimap(size), "PNG")
    )
    write_split_file(root / "annotations" / "test.txt", [*GOOD, BAD])
    write_split_file(root / "annotations" / "trainval.txt", GOOD)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(
            "evaluate",
            checkpoint,
            "--dataset",
            "oxford_pet",
            "--data-path",
            root,
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            tmp_path / "eval",
        )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    skip_warnings = [str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning)]
    if case.outcome == LOADS:
        assert summary["images"] == len(GOOD) + 1 and not skip_warnings
    else:
        assert summary["images"] == len(GOOD)
        (warning,) = skip_warnings
        assert str(bad_photo) in warning and re.search(case.message, warning), warning


# -- bad photos through `segkit predict` ---------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.id)
def test_predict(tmp_path, checkpoint, case):
    good = write(tmp_path / "in" / "good.jpg", encoded(photo(), "JPEG"))
    bad, size = case.image(tmp_path / "in", BAD)
    out = tmp_path / "out"
    result = invoke("predict", checkpoint, good, bad, "-o", out, "--no-overlay")
    mask_of_good = out / "good_mask.png"
    assert mask_of_good.is_file(), "a bad input must not stop the good ones"
    if case.outcome == LOADS:
        assert result.exit_code == 0, result.output
        with Image.open(out / f"{BAD}_mask.png") as mask:
            assert (mask.height, mask.width) == size
        return
    assert result.exit_code == 1, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and str(bad) in skipped[0] and re.search(case.message, skipped[0]), result.output
    assert "1 file(s) could not be read" in result.output
    assert not (out / f"{BAD}_mask.png").exists()


def test_predict_refuses_the_huge_image_before_decoding_it(tmp_path, checkpoint, monkeypatch):
    """The 100-megapixel file is refused from its header: no pixel is decoded, no memory spent."""
    bad = write(tmp_path / "scan.png", huge_png())
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size))
    result = invoke("predict", checkpoint, bad, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "MAX_IMAGE_PIXELS = 50,000,000" in result.output, result.output
    assert decoded == []


# -- what is missing or unpaired -------------------------------------------------------------------------


def run_folder(data_path: Path, out: Path, *extra: str):
    return invoke("run", *TINY_RUN, "--dataset", "folder", "--data-path", data_path, "--out", out, *extra)


def test_an_image_without_a_mask_and_a_mask_without_an_image_are_both_listed(tmp_path):
    data = tmp_path / "data"
    write_split(data / "valid")
    write_split(data / "train")
    lonely_image = write(data / "train" / "images" / "lonely.jpg", encoded(photo(), "JPEG"))
    lonely_mask = good_mask(data / "train" / "masks", "orphan", SIZE)
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
        write(data / "valid" / "images" / "a.jpg", encoded(photo(), "JPEG"))
    elif layout == "every-valid-file-unreadable":
        for stem in GOOD:
            write(data / "valid" / "images" / f"{stem}.jpg", b"")
            good_mask(data / "valid" / "masks", stem, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFilesWarning)
        result = run_folder(data, tmp_path / "runs")
    expect_named_failure(result, data / culprit, message)


@pytest.mark.parametrize("command", ["run", "evaluate"])
@pytest.mark.parametrize("what", ["missing", "a-file"])
def test_a_data_path_that_is_missing_or_a_file(tmp_path, checkpoint, command, what):
    data = tmp_path / "data"
    if what == "a-file":
        data.write_text("not a folder")
    if command == "run":
        result = run_folder(data, tmp_path / "runs")
    else:
        result = invoke("evaluate", checkpoint, "--dataset", "folder", "--data-path", data, "--quiet")
    expected = "is not a folder" if what == "a-file" else "does not exist"
    expect_named_failure(result, data, f"folder root folder .*{expected}")


def test_predict_inputs_that_do_not_exist_are_usage_errors(tmp_path, checkpoint):
    result = invoke("predict", checkpoint, tmp_path / "nowhere.jpg", "-o", tmp_path / "out")
    expect_named_failure(result, tmp_path / "nowhere.jpg", "does not exist", exit_code=2)
    (tmp_path / "empty").mkdir()
    result = invoke("predict", checkpoint, tmp_path / "empty", "-o", tmp_path / "out")
    expect_named_failure(result, tmp_path / "empty", "no input images found", exit_code=2)


# -- where results go ---------------------------------------------------------------------------------


@pytest.fixture
def regular_file(tmp_path) -> Path:
    """Tests run as root, which chmod cannot stop: a path under a regular file is unwritable for anyone."""
    path = tmp_path / "a-file"
    path.write_text("occupied")
    return path


@pytest.mark.parametrize("where", ["inside-a-file", "is-a-file"])
def test_run_output_folder_that_cannot_be_made(tmp_path, regular_file, where):
    out = regular_file / "runs" if where == "inside-a-file" else regular_file
    result = invoke(
        "run", *TINY_RUN, "--dataset-option", "train_size=4", "--dataset-option", "valid_size=2", "--out", out
    )
    message = (
        "cannot be created: Not a directory" if where == "inside-a-file" else "exists and is not a folder"
    )
    expect_named_failure(result, out, message, exit_code=2)
    assert regular_file.read_text() == "occupied"


def test_run_output_folder_without_write_permission(tmp_path, monkeypatch):
    import os

    import segkit.engine.rundir as rundir

    class OsWhereLockedIsReadOnly:
        """``os`` as the run-folder code sees it, with ``locked`` read-only (root ignores chmod)."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def access(path, mode):
            return not (Path(path) == tmp_path / "locked" and mode & os.W_OK)

    monkeypatch.setattr(rundir, "os", OsWhereLockedIsReadOnly())
    (tmp_path / "locked").mkdir()
    result = invoke(
        "run",
        *TINY_RUN,
        "--dataset-option",
        "train_size=4",
        "--dataset-option",
        "valid_size=2",
        "--out",
        tmp_path / "locked",
    )
    expect_named_failure(result, tmp_path / "locked", "is not writable", exit_code=2)


def test_predict_output_folder_that_cannot_be_made(tmp_path, checkpoint, regular_file):
    image = write(tmp_path / "in.jpg", encoded(photo(), "JPEG"))
    result = invoke("predict", checkpoint, image, "-o", regular_file / "out")
    expect_named_failure(result, regular_file / "out", "cannot be created", exit_code=2)


def test_evaluate_output_folder_that_cannot_be_made(tmp_path, checkpoint, regular_file):
    folder_dataset(tmp_path / "data", IMAGE_CASES[-1])
    result = invoke(
        "evaluate",
        checkpoint,
        "--dataset",
        "folder",
        "--data-path",
        tmp_path / "data",
        "--quiet",
        "--no-boundary",
        "-o",
        regular_file / "eval",
    )
    expect_named_failure(result, regular_file / "eval", "cannot be created", exit_code=2)


# -- a full disk while a checkpoint is written ------------------------------------------------------


@pytest.mark.parametrize(
    "target, failing_write",
    [("last.pt", 1), ("last.pt", 3), ("best.pt", 1), ("best.pt", 2)],
    ids=["1st-last.pt", "3rd-last.pt", "1st-best.pt", "2nd-best.pt"],
)
def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path, monkeypatch, target, failing_write
):
    """The disk fills up when the ``failing_write``-th write of ``target`` has put half its bytes down:
    the run stops with the error, the previous file of that name (if any) is still whole, no temp file
    is left, and ``--resume`` carries on from last.pt."""
    import segkit.checkpoint as checkpoint_module

    real_atomic_write = checkpoint_module.atomic_write
    writes: dict[str, int] = {}
    epoch_on_disk: dict[str, int] = {}  # the epoch of each checkpoint's last complete write

    def atomic_write_until_the_disk_fills(path, write_contents):
        writes[path.name] = writes.get(path.name, 0) + 1
        if path.name != target or writes[target] != failing_write:
            real_atomic_write(path, write_contents)
            if path.suffix == ".pt":
                epoch_on_disk[path.name] = load_checkpoint(path)["epoch"]
            return

        def half_then_full(handle):
            buffer = io.BytesIO()
            write_contents(buffer)
            handle.write(buffer.getvalue()[: buffer.tell() // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        return real_atomic_write(path, half_then_full)

    monkeypatch.setattr(checkpoint_module, "atomic_write", atomic_write_until_the_disk_fills)
    out = tmp_path / "runs"
    # A high learning rate on this seeded data improves validation Dice in epoch 2, so best.pt is
    # written twice (asserted below through ``writes``). last.pt is written once per epoch (and may be
    # written before the first, so that a run killed in epoch 1 can resume).
    args = THREE_EPOCH_RUN
    result = invoke("run", *args, "--out", out)
    run_dir = the_run_dir(out)
    expect_named_failure(result, run_dir / target, "could not write checkpoint .*: No space left on device")
    assert writes[target] == failing_write
    previous = run_dir / target
    if failing_write == 1:
        assert not previous.exists(), "no half-written checkpoint under the real name"
    else:
        assert load_checkpoint(previous)["epoch"] == epoch_on_disk[target], (
            "the previous write is still whole"
        )
    for name, epoch in epoch_on_disk.items():
        assert load_checkpoint(run_dir / name)["epoch"] == epoch
    assert [path.name for path in run_dir.iterdir() if path.name.startswith(".")] == [], "temp files left"
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_atomic_write)
    resumed = invoke("run", "--resume", run_dir)
    if "last.pt" not in epoch_on_disk:  # nothing to resume from: said so
        expect_named_failure(resumed, run_dir / "last.pt", "does not exist")
        return
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3
    assert load_checkpoint(run_dir / "best.pt")["epoch"] >= 1
    recorded = [int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open())]
    if target == "last.pt":  # (for best.pt, see the next test)
        assert recorded == [1, 2, 3]


def test_records_are_complete_after_resuming_a_run_that_failed_writing_best_pt(tmp_path, monkeypatch):
    import segkit.checkpoint as checkpoint_module

    real_atomic_write = checkpoint_module.atomic_write

    def best_pt_fills_the_disk(path, write_contents):
        if path.name == "best.pt" and path.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_atomic_write(path, write_contents)

    monkeypatch.setattr(checkpoint_module, "atomic_write", best_pt_fills_the_disk)
    args = THREE_EPOCH_RUN
    assert invoke("run", *args, "--out", tmp_path).exit_code == 1
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_atomic_write)
    run_dir = the_run_dir(tmp_path)
    assert invoke("run", "--resume", run_dir).exit_code == 0
    assert [int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open())] == [1, 2, 3]


@pytest.mark.slow
def test_a_skipped_file_is_reported_on_stderr_without_a_traceback(tmp_path, checkpoint):
    """What a user sees in a terminal (a subprocess, where pytest does not capture warnings)."""
    from distributions import run_segkit

    bad = folder_dataset(tmp_path / "data", IMAGE_CASES[0])["test"]["image"]
    result = run_segkit(
        [
            "evaluate",
            str(checkpoint),
            "--dataset",
            "folder",
            "--data-path",
            str(tmp_path / "data"),
            "--split",
            "test",
            "--no-boundary",
            "--quiet",
            "-o",
            str(tmp_path / "eval"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"left out 1 unreadable file pair(s) (strict=True makes this an error): bad: image file {bad} is "
        "empty" in result.stderr
    )
