"""TIFF photos read band by band (``segkit.data.tiff.TiffRows``) and TIFF masks written tile by tile, alone
and through ``segkit predict``: the rows equal the whole-image decode, the written mask reads back
equal, a streamed prediction equals the one from a PNG of the same photo and never decodes it whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from fixtures import expect_named_failure, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import segkit.data.imageio as imageio
from segkit.data.imageio import pixel_limit, read_image
from segkit.data.tiff import TiffRows, open_tiff_rows, read_photo, write_mask_tiffs, write_tiled_mask
from segkit.errors import DataError
from segkit.task import BinaryTask, MulticlassTask, MultilabelTask

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KINDS = ("rgb", "grey", "rgba", "grey16", "grey_alpha")


def random_photo(rng: np.random.Generator, height: int, width: int, kind: str) -> np.ndarray:
    if kind == "grey16":
        return rng.integers(0, 65536, (height, width), dtype=np.uint16)
    samples = {"rgb": 3, "grey": 1, "rgba": 4, "grey_alpha": 2}[kind]
    pixels = rng.integers(0, 256, (height, width, samples), dtype=np.uint8)
    return pixels[..., 0] if samples == 1 else pixels


def write_tiff(
    path: Path, pixels: np.ndarray, kind: str, layout: tuple[str, int, int], deflate: bool
) -> None:
    options: dict = {"compression": "zlib" if deflate else None}
    if kind == "grey_alpha":
        options.update(photometric="minisblack", extrasamples=["unassalpha"])
    elif kind in ("grey", "grey16"):
        options.update(photometric="minisblack")
    else:
        options.update(photometric="rgb")
    if layout[0] == "tiles":
        options["tile"] = (layout[1], layout[2])
    else:
        options["rowsperstrip"] = layout[1]
    tifffile.imwrite(path, pixels, **options)


layouts = st.one_of(
    st.tuples(st.just("tiles"), st.sampled_from([16, 32, 48]), st.sampled_from([16, 32, 48])),
    st.tuples(st.just("strips"), st.integers(1, 90), st.just(0)),
)


@EXAMPLES
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    kind=st.sampled_from(KINDS),
    layout=layouts,
    deflate=st.booleans(),
    rows=st.tuples(st.integers(0, 90), st.integers(0, 90)),
    seed=st.integers(0, 2**16),
)
def test_rows_read_through_the_row_source_equal_the_whole_image_decode(
    tmp_path, height, width, kind, layout, deflate, rows, seed
):
    path = tmp_path / "photo.tif"
    pixels = random_photo(np.random.default_rng(seed), height, width, kind)
    write_tiff(path, pixels, kind, layout, deflate)
    source = open_tiff_rows(path)
    assert source is not None
    assert (source.height, source.width) == (height, width)
    top, bottom = sorted(min(row, height) for row in rows)
    whole = np.asarray(read_image(path))  # Pillow's decode, converted to RGB as segkit reads photos
    got = source.read_rows(top, bottom)
    assert got.dtype == np.uint8 and got.shape == (bottom - top, width, 3)
    np.testing.assert_array_equal(got, whole[top:bottom])
    if kind in ("rgb", "grey"):  # and tifffile's own whole-image decode
        reference = tifffile.imread(path)
        reference = reference if kind == "rgb" else np.repeat(reference[..., None], 3, axis=-1)
        np.testing.assert_array_equal(got, reference[top:bottom])


@pytest.mark.parametrize("layout", [("strips", 8, 0), ("tiles", 16, 32)])
def test_a_band_decodes_only_the_segments_covering_its_rows(tmp_path, layout):
    path = tmp_path / "photo.tif"
    write_tiff(path, random_photo(np.random.default_rng(0), 64, 96, "rgb"), "rgb", layout, deflate=True)
    source = open_tiff_rows(path)
    assert isinstance(source, TiffRows)
    source.read_rows(3, 7)  # within the first strip, or the first row of tiles (96 / 32 = 3 tiles)
    assert source.segments_decoded == (1 if layout[0] == "strips" else 3)
    source.read_rows(10, 30)  # strips 1-3, or tile rows 0 (kept from the last call) and 1
    assert source.segments_decoded == (1 + 3 if layout[0] == "strips" else 3 + 3)
    source.read_rows(24, 40)  # strips 3 (kept) and 4, or tile rows 1 (kept) and 2
    assert source.segments_decoded == (4 + 1 if layout[0] == "strips" else 6 + 3)


def test_what_cannot_be_streamed_is_read_whole(tmp_path):
    pixels = random_photo(np.random.default_rng(1), 20, 30, "rgb")
    rotated, planar, png = tmp_path / "rotated.tif", tmp_path / "planar.tif", tmp_path / "photo.tif"
    tifffile.imwrite(rotated, pixels, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    tifffile.imwrite(planar, np.moveaxis(pixels, -1, 0), photometric="rgb", planarconfig="separate")
    Image.fromarray(pixels).save(png, format="PNG")  # a PNG under a .tif name
    for path in (rotated, planar, png):
        assert open_tiff_rows(path) is None
        photo = read_photo(path, stream=True)
        assert isinstance(photo, Image.Image)
    assert read_photo(png, stream=True).size == (30, 20)
    assert isinstance(read_photo(planar, stream=False), Image.Image)


def test_the_pixel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint8), photometric="rgb", tile=(16, 16))
    monkeypatch.setattr(TiffRows, "read_rows", lambda *_: pytest.fail("decoded pixels"))
    with pixel_limit(1999), pytest.raises(DataError, match=f"{path}.* 50x40 = 2,000 pixels"):
        open_tiff_rows(path)
    with pixel_limit(2000):
        assert open_tiff_rows(path) is not None


def test_a_truncated_tiff_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, random_photo(np.random.default_rng(2), 64, 64, "rgb"), rowsperstrip=8)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{path} is truncated"):
        open_tiff_rows(path)


@EXAMPLES
@given(
    height=st.integers(1, 600),
    width=st.integers(1, 600),
    cuts=st.lists(st.integers(1, 600), max_size=8),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    seed=st.integers(0, 2**16),
)
def test_the_tiled_writer_output_reads_back_equal_to_the_mask(tmp_path, height, width, cuts, dtype, seed):
    mask = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (height, width), dtype=dtype)
    edges = [0, *sorted({cut for cut in cuts if cut < height}), height]
    bands = (mask[top:bottom] for top, bottom in zip(edges, edges[1:], strict=False))  # rows in order
    path = tmp_path / "mask.tif"
    write_tiled_mask(path, bands, height, width, dtype=dtype)
    np.testing.assert_array_equal(tifffile.imread(path), mask)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)


def test_the_writer_refuses_bands_that_do_not_add_up(tmp_path):
    with pytest.raises(ValueError, match="hold 5 rows, not 6"):
        write_tiled_mask(tmp_path / "m.tif", [np.zeros((5, 4), np.uint8)], 6, 4)
    with pytest.raises(ValueError, match=r"\(rows, 4\)"):
        write_tiled_mask(tmp_path / "m.tif", [np.zeros((6, 5), np.uint8)], 6, 4)


def test_mask_tiffs_for_each_task(tmp_path):
    rng = np.random.default_rng(3)
    binary = rng.random((40, 300)) > 0.5
    write_mask_tiffs(tmp_path, "b", BinaryTask(), binary)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b_mask.tif"), binary.astype(np.uint8) * 255)
    classes = MulticlassTask(class_names=("bg", "cat", "dog"))
    ids = rng.integers(0, 3, (300, 20), dtype=np.uint8)
    write_mask_tiffs(tmp_path, "c", classes, ids)
    with Image.open(tmp_path / "c_mask.tif") as picture:  # a palette image in the task's colours
        assert picture.mode == "P"
        np.testing.assert_array_equal(np.asarray(picture), ids)
        assert picture.getpalette()[:9] == [value for colour in classes.palette for value in colour]
    labels = MultilabelTask(class_names=("road", "car"))
    layers = rng.random((2, 30, 30)) > 0.5
    write_mask_tiffs(tmp_path, "m", labels, layers)
    for index, name in enumerate(labels.class_names):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"m_mask_{name}.tif"), layers[index] * 255)


# -- through segkit predict ----------------------------------------------------------------------------


def test_predict_streams_a_tiff_and_gives_the_mask_of_the_same_photo_as_png(
    tiny_checkpoint, tmp_path, monkeypatch
):
    pixels = random_photo(np.random.default_rng(4), 70, 90, "rgb")
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    write_tiff(tmp_path / "photo.tif", pixels, "rgb", ("tiles", 32, 32), deflate=True)
    tiles = ("--tile", 32, "--overlap", 0.25)
    from_png = invoke("predict", tiny_checkpoint, tmp_path / "photo.png", "-o", tmp_path / "png", *tiles)
    assert from_png.exit_code == 0, from_png.output

    def whole_decode(path, *args, **kwargs):
        raise AssertionError(f"{path} was decoded whole")

    monkeypatch.setattr(imageio, "read_image", whole_decode)
    out = tmp_path / "tif"
    result = invoke(
        "predict", tiny_checkpoint, tmp_path / "photo.tif", "-o", out, *tiles, "--mask-format", "tiff"
    )
    assert result.exit_code == 0, result.output
    expected = np.asarray(Image.open(tmp_path / "png" / "photo_mask.png"))
    np.testing.assert_array_equal(tifffile.imread(out / "photo_mask.tif"), expected)
    assert not (out / "photo_overlay.png").exists()
    assert f"no overlay for {tmp_path / 'photo.tif'}" in result.output and "--no-overlay" in result.output
    quiet = invoke(
        "predict", tiny_checkpoint, tmp_path / "photo.tif", "-o", out / "png", *tiles, "--no-overlay"
    )
    assert "no overlay" not in quiet.output
    np.testing.assert_array_equal(np.asarray(Image.open(out / "png" / "photo_mask.png")), expected)


def test_predict_reports_a_broken_tiff_in_one_line(tiny_checkpoint, tmp_path):
    pixels = random_photo(np.random.default_rng(5), 64, 64, "rgb")
    cut, garbled = tmp_path / "cut.tif", tmp_path / "garbled.tif"
    for path in (cut, garbled):
        write_tiff(path, pixels, "rgb", ("strips", 16, 0), deflate=True)
    cut.write_bytes(cut.read_bytes()[:-2000])
    with tifffile.TiffFile(garbled) as tif:
        offset = int(tif.pages[0].dataoffsets[2])
    data = bytearray(garbled.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64  # the third strip's deflate stream
    garbled.write_bytes(bytes(data))
    tiles = ("--tile", 32, "--no-overlay")
    truncated = invoke("predict", tiny_checkpoint, cut, "-o", tmp_path / "out", *tiles)
    skipped = [line for line in truncated.output.splitlines() if line.startswith("skipped: ")]
    assert truncated.exit_code == 1 and len(skipped) == 1 and f"{cut} is truncated" in skipped[0]
    broken = invoke("predict", tiny_checkpoint, garbled, "-o", tmp_path / "out", *tiles)
    expect_named_failure(broken, garbled, "segment 2 is broken")
