"""Tiny on-the-fly datasets and files for the data tests (a plain module, imported by the tests).

Everything is generated from seeds, so a failing test reproduces; nothing is downloaded.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

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
