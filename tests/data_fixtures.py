"""Tiny on-the-fly datasets and files for the data tests (a plain module, imported by the tests).

Everything is generated from seeds, so a failing test reproduces; nothing is downloaded. Besides the
writers of whole layouts (Oxford-IIIT Pet, folder) and of single damaged files, two corpora:

- the bad-file corpus (``IMAGE_CASES``, ``MASK_CASES``): one unreadable, inconsistent or merely
  unusual file per case, with what every command must do with it, met by the folder-dataset, evaluate
  and predict tests;
- mutations of real files (``SEED_FILES``, ``seed_and_edits``): bytes of files from the real sample
  flipped, inserted, deleted, repeated or cut off, for the decoder and dataset fuzzers.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from segkit.errors import DataError

#: The real 300-image sample shipped next to the repository (tests skip when it is absent).
REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "oxford-iiit-pet-mini"

TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3


def photo_array(height: int, width: int, seed: int) -> np.ndarray:
    """A random-looking but reproducible RGB photo, uint8 (H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def trimap_array(height: int, width: int, seed: int) -> np.ndarray:
    """A trimap: a pet rectangle (1) inside a one-pixel border ring (3) on background (2)."""
    rng = np.random.default_rng(seed)
    trimap = np.full((height, width), TRIMAP_BACKGROUND, dtype=np.uint8)
    top = int(rng.integers(1, max(2, height // 3)))
    left = int(rng.integers(1, max(2, width // 3)))
    bottom = int(rng.integers(top + 3, height))
    right = int(rng.integers(left + 3, width))
    trimap[top - 1 : bottom + 1, left - 1 : right + 1] = TRIMAP_BORDER
    trimap[top:bottom, left:right] = TRIMAP_PET
    return trimap


def save(path: Path, image: Image.Image | np.ndarray, image_format: str, **options) -> Path:
    """Write ``image`` at ``path`` in ``image_format`` whatever the extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format=image_format, **options)
    return path


def write_split_file(path: Path, names: Sequence[str], comments: bool = True) -> Path:
    """An official-format split file: ``<name> <class-id> <species> <breed-id>``, with comments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", ""] if comments else []
    lines += [f"{name} {index % 37 + 1} {index % 2 + 1} {index % 12 + 1}" for index, name in enumerate(names)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_oxford_layout(
    root: Path,
    trainval: Sequence[str],
    test: Sequence[str] | None = None,
    size: tuple[int, int] = (24, 32),
) -> Path:
    """The official Oxford-IIIT Pet layout with JPEG photos and PNG trimaps of ``size`` (H, W).

    Photo and trimap of name number ``i`` use seed ``i``. ``test=None`` writes no test.txt.
    """
    height, width = size
    for seed, name in enumerate([*trainval, *(test or [])]):
        save(root / "images" / f"{name}.jpg", photo_array(height, width, seed), "JPEG", quality=95)
        save(root / "annotations" / "trimaps" / f"{name}.png", trimap_array(height, width, seed), "PNG")
    write_split_file(root / "annotations" / "trainval.txt", trainval)
    if test is not None:
        write_split_file(root / "annotations" / "test.txt", test)
    return root


def write_folder_layout(
    root: Path, names: Iterable[str], size: tuple[int, int] = (20, 28), style: str = "0255"
) -> dict:
    """ROOT/images/<name>.png photos and ROOT/masks/<name>.png masks; returns {name: 0/1 mask}.

    ``style``: "01" (values 0/1), "0255" (0/255) or "palette" (palette PNG, indices 0/1, odd colours).
    """
    height, width = size
    truth = {}
    for seed, name in enumerate(names):
        binary = (trimap_array(height, width, seed + 100) != TRIMAP_BACKGROUND).astype(np.uint8)
        truth[name] = binary
        save(root / "images" / f"{name}.png", photo_array(height, width, seed), "PNG")
        if style == "01":
            save(root / "masks" / f"{name}.png", binary, "PNG")
        elif style == "0255":
            save(root / "masks" / f"{name}.png", binary * 255, "PNG")
        elif style == "palette":
            mask = Image.fromarray(binary, mode="L").convert("P")
            mask.putpalette([200, 10, 10, 10, 200, 30] + [0, 0, 0] * 254)
            save(root / "masks" / f"{name}.png", mask, "PNG")
        else:
            raise ValueError(style)
    return truth


def truncated_jpeg(path: Path, size: tuple[int, int] = (24, 32), seed: int = 0) -> Path:
    """A JPEG cut off halfway (as an interrupted download leaves it)."""
    buffer = io.BytesIO()
    Image.fromarray(photo_array(*size, seed)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def png_with_corrupt_pixels(path: Path, array: np.ndarray) -> Path:
    """A PNG whose chunks and CRCs are intact but whose compressed pixel data is garbage.

    It passes the cheap construction-time checks and fails only when decoded.
    """
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    position = data.index(b"IDAT")
    length = struct.unpack(">I", data[position - 4 : position])[0]
    start = position + 4
    data[start + 2 : start + length] = bytes((index * 37 + 11) % 256 for index in range(length - 2))
    crc = zlib.crc32(bytes(data[position : start + length])) & 0xFFFFFFFF
    data[start + length : start + length + 4] = struct.pack(">I", crc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims ``width`` x ``height`` (a decompression-bomb stand-in).

    Only the IHDR chunk is rewritten (with a correct CRC), so opening it reads the huge size without
    any large allocation.
    """
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    position = data.index(b"IHDR")
    data[position + 4 : position + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[position : position + 17])) & 0xFFFFFFFF
    data[position + 17 : position + 21] = struct.pack(">I", crc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def tar_folder(archive: Path, root: Path, top_level: Sequence[str]) -> Path:
    """A .tar.gz of ``root/<top>`` folders, stored under ``<top>/...`` like the official archives."""
    with tarfile.open(archive, "w:gz") as tar:
        for top in top_level:
            tar.add(root / top, arcname=top)
    return archive


def tar_with_members(archive: Path, members: Sequence[tuple[str, str, str]]) -> Path:
    """A .tar.gz built member by member: ``(kind, name, payload)`` with kind "file" (payload is the
    content), "symlink" or "hardlink" (payload is the link target) or "dir"."""
    with tarfile.open(archive, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                content = payload.encode()
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = payload
            tar.addfile(info)
    return archive


# -- the bad-file corpus ---------------------------------------------------------------------------
#
# Every case is a file written into a small dataset next to good pairs, and what segkit must do with it:
#
# - ``LOADS``: it is a valid picture in an unusual form (GIF under a .jpg name, CMYK, 16-bit, ...) and
#   trains, evaluates and predicts like any other;
# - ``SKIPPED``: it is unreadable; datasets leave the pair out with a ``SkippedFilesWarning`` naming
#   the file and the problem (``strict=true`` makes it an error, exit 1), ``predict`` reports it as
#   ``skipped: ...``, carries on with the other inputs and exits 1;
# - ``ERROR``: the data is inconsistent (sizes differ, label values that mean nothing); the command
#   stops with one ``Error: ...`` line naming the file and the problem, exit 1.
#
# Nothing may end in a Python traceback.

LOADS, SKIPPED, ERROR = "loads", "skipped", "error"
#: (height, width) of every good picture in the corpus.
CORPUS_SIZE = (20, 28)
GOOD_STEMS = ["good_a", "good_b", "good_c"]
BAD_STEM = "bad"


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


def corpus_photo(seed: int = 7) -> np.ndarray:
    return photo_array(*CORPUS_SIZE, seed)


# An image writer puts the photo for ``stem`` into ``folder`` and returns its path and the (height,
# width) its mask must have; a mask writer puts the mask at ``folder/stem.png`` for that size.
ImageWriter = Callable[[Path, str], "tuple[Path, tuple[int, int]]"]
MaskWriter = Callable[[Path, str, "tuple[int, int]"], Path]


def good_image(folder: Path, stem: str) -> tuple[Path, tuple[int, int]]:
    return write(folder / f"{stem}.jpg", encoded(corpus_photo(), "JPEG", quality=95)), CORPUS_SIZE


def good_mask(folder: Path, stem: str, size: tuple[int, int]) -> Path:
    return write(folder / f"{stem}.png", encoded(mask_array(*size), "PNG"))


def image_bytes(data: Callable[[], bytes], name: str = "{}.jpg", size=CORPUS_SIZE) -> ImageWriter:
    def writer(folder: Path, stem: str):
        return write(folder / name.format(stem), data()), size

    return writer


def mask_bytes(data: Callable[[tuple[int, int]], bytes], name: str = "{}.png") -> MaskWriter:
    def writer(folder: Path, stem: str, size: tuple[int, int]) -> Path:
        return write(folder / name.format(stem), data(size))

    return writer


def truncated_jpeg_file(folder: Path, stem: str):
    return truncated_jpeg(folder / f"{stem}.jpg", CORPUS_SIZE), CORPUS_SIZE


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def cmyk() -> bytes:
    return encoded(Image.fromarray(corpus_photo()).convert("CMYK"), "JPEG")


def palette() -> bytes:
    return encoded(Image.fromarray(corpus_photo()).quantize(colors=16), "PNG")


def sixteen_bit_grey() -> bytes:
    return encoded(Image.fromarray(corpus_photo()[..., 0].astype(np.uint16) * 257), "PNG")


def rgba() -> bytes:
    pixels = np.dstack([corpus_photo(), np.full(CORPUS_SIZE, 90, np.uint8)])
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
        image=image_bytes(lambda: half(encoded(corpus_photo(), "PNG")), "{}.png"),
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
        r"10000x10000 = 100,000,000 pixels, more than segkit\.data\.imageio\.MAX_IMAGE_PIXELS",
        image=image_bytes(huge_png, "{}.png", size=(10_000, 10_000)),
        mask=mask_bytes(lambda size: huge_png()),
    ),
    Case(
        "gif-named-jpg",
        LOADS,
        image=image_bytes(lambda: encoded(Image.fromarray(corpus_photo()).quantize(), "GIF")),
    ),
    Case("png-named-jpg", LOADS, image=image_bytes(lambda: encoded(corpus_photo(), "PNG"))),
    Case("webp-named-jpg", LOADS, image=image_bytes(lambda: encoded(corpus_photo(), "WEBP"))),
    Case("rgba-png", LOADS, image=image_bytes(rgba, "{}.png")),
    Case("palette-png", LOADS, image=image_bytes(palette, "{}.png")),
    Case("16-bit-grey-png", LOADS, image=image_bytes(sixteen_bit_grey, "{}.png")),
    Case("grey-jpeg", LOADS, image=image_bytes(lambda: encoded(corpus_photo()[..., 1], "JPEG"))),
    Case("cmyk-jpeg", LOADS, image=image_bytes(cmyk)),
    Case("1x1-jpeg", LOADS, image=image_bytes(lambda: encoded(corpus_photo()[:1, :1], "JPEG"), size=(1, 1))),
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
    for seed, stem in enumerate(GOOD_STEMS):
        write(
            split_dir / "images" / f"{stem}.jpg", encoded(photo_array(*CORPUS_SIZE, seed), "JPEG", quality=95)
        )
        good_mask(split_dir / "masks", stem, CORPUS_SIZE)
    return write_pair(split_dir, BAD_STEM, case) if case is not None else None


def folder_dataset(root: Path, case: Case) -> dict[str, dict[str, Path]]:
    """ROOT/{train,valid,test}/{images,masks} with the bad pair in train and test (not valid, so that
    the run's validation stays good and the test split is the one evaluate reads); returns the bad
    pair's paths by split."""
    write_split(root / "valid")
    return {"train": write_split(root / "train", case), "test": write_split(root / "test", case)}


# -- real files, mutated (for the decoder fuzzers) ----------------------------------------------------

SEED_FILES = {
    "baseline-jpeg": "images/Abyssinian_192.jpg",
    "progressive-jpeg": "images/Abyssinian_180.jpg",
    "jpeg-with-exif-thumbnail": "images/Bengal_146.jpg",
    "gif-named-jpg": "images/Abyssinian_34.jpg",
    "png-trimap": "annotations/trimaps/Abyssinian_34.png",
}
_SEED_BYTES: dict[str, bytes] = {}


def seed_bytes(name: str) -> bytes:
    if name not in _SEED_BYTES:
        path = REAL_SAMPLE / SEED_FILES[name]
        if not path.is_file():
            pytest.skip(f"real sample not found at {REAL_SAMPLE}")
        _SEED_BYTES[name] = path.read_bytes()
    return _SEED_BYTES[name]


@st.composite
def mutations(draw, size: int):
    """A list of edits to a file of ``size`` bytes, mostly within its first 2 kB (the headers)."""
    position = st.one_of(st.integers(0, min(size - 1, 2047)), st.integers(0, size - 1))
    edit = st.one_of(
        st.tuples(st.just("set"), position, st.integers(0, 255)),
        st.tuples(st.just("xor"), position, st.integers(1, 255)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), position, st.integers(1, 64)),
        st.tuples(st.just("repeat"), position, st.integers(1, 64)),
        st.tuples(st.just("truncate"), st.integers(0, size - 1), st.just(0)),
        st.tuples(
            st.just("big-number"), position, st.sampled_from([b"\xff\xff", b"\x7f\xff\xff\xff", b"\0\0"])
        ),
    )
    return draw(st.lists(edit, min_size=1, max_size=4))


def mutate(data: bytes, edits) -> bytes:
    buffer = bytearray(data)
    for kind, position, argument in edits:
        position = min(position, max(len(buffer) - 1, 0))
        if kind == "set":
            buffer[position : position + 1] = bytes([argument])
        elif kind == "xor":
            buffer[position : position + 1] = bytes([buffer[position] ^ argument]) if buffer else b""
        elif kind == "insert":
            buffer[position:position] = argument
        elif kind == "delete":
            del buffer[position : position + argument]
        elif kind == "repeat":
            buffer[position:position] = buffer[position : position + argument]
        elif kind == "truncate":
            del buffer[position:]
        else:  # overwrite with a large (or zero) number, e.g. a width or a segment length
            buffer[position : position + len(argument)] = argument
    return bytes(buffer)


def seed_and_edits():
    return st.sampled_from(sorted(SEED_FILES)).flatmap(
        lambda name: st.tuples(st.just(name), mutations(len(seed_bytes(name))))
    )


def decode_or_data_error(function, path: Path):
    try:
        return function(path)
    except DataError as error:
        assert str(path) in str(error), error
        return None


# -- multiclass and multilabel folders (tests/test_multiclass_datasets.py) -------------------------


def class_id_array(height: int, width: int, seed: int, num_classes: int, ignore: bool = True) -> np.ndarray:
    """uint8 (H, W) class ids in blocks of 4x4 pixels (so regions survive resizing), every id
    0..num_classes-1 present, and a few 255 (ignore) blocks when ``ignore``."""
    rng = np.random.default_rng(seed)
    rows, columns = -(-height // 4), -(-width // 4)
    cells = rng.integers(0, num_classes, size=rows * columns).astype(np.uint8)
    cells[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    if ignore:
        cells[num_classes : num_classes + 2] = 255
    cells = rng.permutation(cells).reshape(rows, columns)
    return np.kron(cells, np.ones((4, 4), dtype=np.uint8))[:height, :width].copy()


def write_classes_file(path: Path, names: Sequence[str], comments: bool = True) -> Path:
    """A classes.txt: one name per line, with a comment and blank lines when ``comments``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# class names, the first is id 0", ""] if comments else []
    for name in names:
        lines += [f"  {name}  ", ""] if comments else [name]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_multiclass_folder(
    root: Path,
    names: Iterable[str],
    classes: Sequence[str] | None = ("background", "cat", "dog"),
    size: tuple[int, int] = (20, 28),
    style: str = "L",
    ignore: bool = True,
) -> dict:
    """ROOT/images/<name>.png photos and ROOT/masks/<name>.png index masks, plus ROOT/classes.txt
    naming ``classes`` (none when ``classes`` is None); returns {name: uint8 ids}.

    ``style``: "L" (8-bit greyscale), "P" (palette PNG: values are indices, colours arbitrary) or
    "RGB" (a grey RGB image holding the ids, which multiclass datasets must refuse).
    """
    height, width = size
    num_classes = len(classes) if classes is not None else 3
    truth = {}
    for seed, name in enumerate(names):
        ids = class_id_array(height, width, seed + 200, num_classes, ignore=ignore)
        truth[name] = ids
        save(root / "images" / f"{name}.png", photo_array(height, width, seed), "PNG")
        if style == "L":
            mask = Image.fromarray(ids, mode="L")
        elif style == "P":
            mask = Image.fromarray(ids, mode="L").convert("P")
            mask.putpalette([(index * 97 + 31) % 256 for index in range(768)])
        elif style == "RGB":
            mask = Image.fromarray(np.stack([ids] * 3, axis=-1), mode="RGB")
        else:
            raise ValueError(style)
        save(root / "masks" / f"{name}.png", mask, "PNG")
    if classes is not None:
        write_classes_file(root / "classes.txt", classes)
    return truth


def write_multilabel_folder(
    root: Path, names: Iterable[str], labels: Sequence[str], size: tuple[int, int] = (20, 28)
) -> dict:
    """ROOT/images/<name>.png and one 0/255 mask per label in ROOT/masks_<label>/<name>.png;
    returns {name: uint8 (K, H, W) 0/1 array} (labels overlap)."""
    height, width = size
    truth = {}
    for seed, name in enumerate(names):
        channels = [
            (trimap_array(height, width, 1000 * index + seed) != TRIMAP_BACKGROUND).astype(np.uint8)
            for index in range(len(labels))
        ]
        truth[name] = np.stack(channels)
        save(root / "images" / f"{name}.png", photo_array(height, width, seed), "PNG")
        for label, channel in zip(labels, channels, strict=True):
            save(root / f"masks_{label}" / f"{name}.png", channel * 255, "PNG")
    return truth


# -- changes only the modification time tells (tests/test_file_index.py, tests/test_planning.py) ----------


def rewrite_in_place(path: Path, data: bytes, modified: float) -> None:
    """Overwrite ``path`` with ``data`` of the same length (same inode, same size) and set its
    modification time to ``modified``: only the mtime tells that the file changed (checked here)."""
    import os

    before = path.stat()
    assert len(data) == before.st_size, "a same-size rewrite needs data of the file's length"
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, (modified, modified))
    after = path.stat()
    assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
    assert after.st_mtime_ns != before.st_mtime_ns


def stored_png(array: np.ndarray) -> bytes:
    """A PNG of ``array`` with its pixels stored uncompressed: its length depends on the shape and mode
    alone, so two arrays of one shape give files of one size."""
    return encoded(Image.fromarray(array), "PNG", compress_level=0)
