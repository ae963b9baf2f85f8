"""segkit.data.imageio: decoding by content, colour modes, masks, and clean errors for bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    SEED_FILES,
    decode_or_data_error,
    mutate,
    png_claiming_size,
    png_with_corrupt_pixels,
    save,
    seed_and_edits,
    seed_bytes,
    truncated_jpeg,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from segkit.data import imageio
from segkit.data.imageio import check_image_file, read_image, read_mask
from segkit.errors import DataError

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


def rgb_arrays(height_width=sizes):
    return height_width.flatmap(lambda hw: arrays(np.uint8, (hw[0], hw[1], 3)))


# -- photos: decoded by content, whatever the extension ------------------------------------------


@FAST
@given(pixels=rgb_arrays(), image_format=st.sampled_from(["PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM"]))
def test_lossless_formats_load_under_a_jpg_name(tmp_path, pixels, image_format):
    path = tmp_path / f"photo_{image_format}.jpg"
    source = Image.fromarray(pixels)
    if image_format == "GIF":  # GIF is a palette format: compare with what it can store
        source = source.quantize(colors=256)
        save(path, source, "GIF")
        expected = np.asarray(source.convert("RGB"))
    else:
        save(path, source, image_format, **({"lossless": True} if image_format == "WEBP" else {}))
        expected = pixels
    image = read_image(path)
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), expected)


def test_jpeg_saved_as_png_loads(tmp_path):
    pixels = np.full((16, 20, 3), (200, 40, 90), dtype=np.uint8)
    image = read_image(save(tmp_path / "photo.png", pixels, "JPEG", quality=100))
    assert image.size == (20, 16)
    assert np.abs(np.asarray(image).astype(int) - pixels).max() <= 3


@FAST
@given(values=sizes.flatmap(lambda hw: arrays(np.uint8, hw)))
def test_greyscale_is_replicated_to_three_channels(tmp_path, values):
    image = read_image(save(tmp_path / "grey.jpg", values, "PNG"))
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.repeat(values[..., None], 3, axis=2))


@FAST
@given(values=sizes.flatmap(lambda hw: arrays(np.uint16, hw)))
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path, values):
    path = save(tmp_path / "deep.png", Image.fromarray(values), "PNG")
    assert Image.open(path).mode.startswith("I")
    image = np.asarray(read_image(path))
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(image[..., 0], expected)
    assert np.array_equal(image[..., 0], image[..., 2])


def test_sixteen_bit_extremes_and_middle(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    image = np.asarray(read_image(save(tmp_path / "deep.png", Image.fromarray(values), "PNG")))
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]


@FAST
@given(pixels=rgb_arrays(), alpha=sizes.flatmap(lambda hw: arrays(np.uint8, hw)))
def test_alpha_is_dropped_keeping_colours(tmp_path, pixels, alpha):
    if alpha.shape != pixels.shape[:2]:
        alpha = np.resize(alpha, pixels.shape[:2])
    rgba = np.dstack([pixels, alpha])
    image = read_image(save(tmp_path / "rgba.jpg", Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert np.array_equal(np.asarray(image), pixels)


def test_palette_and_transparent_palette_use_their_colours(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = [10, 20, 30, 200, 100, 0, 0, 255, 0] + [0, 0, 0] * 253
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    expected = np.array(palette[:9], dtype=np.uint8).reshape(3, 3)[indices]
    assert np.array_equal(np.asarray(read_image(save(tmp_path / "p.png", image, "PNG"))), expected)
    transparent = save(tmp_path / "pt.gif", image, "GIF", transparency=1)
    assert np.array_equal(np.asarray(read_image(transparent)), expected)


def test_cmyk_la_and_bilevel_photos_become_rgb(tmp_path):
    cmyk = Image.new("CMYK", (12, 10), (0, 255, 255, 0))  # pure red in CMYK
    red = np.asarray(read_image(save(tmp_path / "cmyk.jpg", cmyk, "JPEG", quality=100)))
    assert red.shape == (10, 12, 3)
    assert red[..., 0].min() > 230 and red[..., 1:].max() < 25
    la = Image.fromarray(np.dstack([np.full((5, 6), 77, np.uint8), np.zeros((5, 6), np.uint8)]), mode="LA")
    assert np.all(np.asarray(read_image(save(tmp_path / "la.png", la, "PNG"))) == 77)
    bilevel = Image.fromarray(np.eye(6, dtype=bool))
    rgb = np.asarray(read_image(save(tmp_path / "one.png", bilevel, "PNG")))
    assert np.array_equal(rgb[..., 1], np.eye(6, dtype=np.uint8) * 255)


@pytest.mark.parametrize("orientation, rotated", [(1, False), (3, False), (6, True), (8, True)])
def test_exif_orientation_is_applied(tmp_path, orientation, rotated):
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:20, :30] = 255  # a white block in the top-left corner of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path / "phone.jpg", pixels, "JPEG", quality=100, exif=exif.tobytes())
    expected = (
        np.asarray(Image.fromarray(pixels).transpose(_TRANSPOSE[orientation])) if orientation > 1 else pixels
    )
    image = np.asarray(read_image(path))
    assert image.shape == expected.shape == ((60, 40, 3) if rotated else (40, 60, 3))
    assert np.abs(image.astype(int) - expected).mean() < 4
    assert check_image_file(path) == image.shape[:2]


_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}


# -- masks: raw label values -----------------------------------------------------------------------


@FAST
@given(values=sizes.flatmap(lambda hw: arrays(np.uint8, hw)))
def test_eight_bit_masks_keep_their_values(tmp_path, values):
    mask = read_mask(save(tmp_path / "m.png", values, "PNG"))
    assert mask.dtype == np.uint8 and np.array_equal(mask, values)


@FAST
@given(values=sizes.flatmap(lambda hw: arrays(np.uint16, hw)))
def test_sixteen_bit_masks_keep_their_values(tmp_path, values):
    mask = read_mask(save(tmp_path / "m16.png", Image.fromarray(values), "PNG"))
    assert mask.dtype == np.uint16 and np.array_equal(mask, values)


@FAST
@given(indices=sizes.flatmap(lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 5))))
def test_palette_masks_give_indices_not_colours(tmp_path, indices):
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9, 1, 2, 3, 250, 250, 250] + [0] * 750)
    mask = read_mask(save(tmp_path / "pal.png", image, "PNG"))
    assert np.array_equal(mask, indices)


def test_bilevel_grey_rgb_and_grey_alpha_masks(tmp_path):
    binary = np.eye(5, dtype=bool)
    assert np.array_equal(
        read_mask(save(tmp_path / "b.png", Image.fromarray(binary), "PNG")), binary.astype(np.uint8)
    )
    grey = np.repeat((binary * 255).astype(np.uint8)[..., None], 3, axis=2)
    assert np.array_equal(read_mask(save(tmp_path / "rgb.png", grey, "PNG")), binary * 255)
    la = np.dstack([binary.astype(np.uint8), np.full((5, 5), 255, np.uint8)])
    assert np.array_equal(read_mask(save(tmp_path / "la.png", Image.fromarray(la, mode="LA"), "PNG")), binary)


def test_colour_mask_is_refused(tmp_path):
    colours = np.zeros((4, 4, 3), dtype=np.uint8)
    colours[0, 0] = (255, 0, 0)
    path = save(tmp_path / "colour.png", colours, "PNG")
    with pytest.raises(DataError, match="colour.png.*colour"):
        read_mask(path)


def test_mask_exif_orientation_matches_its_photo(tmp_path):
    labels = np.zeros((4, 6), dtype=np.uint8)
    labels[0, 0] = 1
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "m.png", labels, "PNG", exif=exif.tobytes())
    mask = read_mask(path)
    assert mask.shape == (6, 4) and mask[0, 3] == 1 and mask.sum() == 1
    assert check_image_file(path) == (6, 4)


# -- bad files: DataError naming the file and the problem ------------------------------------------


@pytest.mark.parametrize("reader", [read_image, read_mask, check_image_file])
def test_missing_empty_and_non_image_files(tmp_path, reader):
    with pytest.raises(DataError, match=r"nowhere\.jpg does not exist"):
        reader(tmp_path / "nowhere.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png is empty \(0 bytes\)"):
        reader(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 10)
    with pytest.raises(DataError, match=r"notes\.jpg is not an image"):
        reader(tmp_path / "notes.jpg")
    matlab = tmp_path / "Abyssinian_100.mat"
    matlab.write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(200))
    with pytest.raises(DataError, match=r"Abyssinian_100\.mat is not an image"):
        reader(matlab)
    with pytest.raises(DataError, match="is not a file"):
        reader(tmp_path)


@pytest.mark.parametrize("reader", [read_image, check_image_file])
def test_truncated_jpeg_is_a_data_error(tmp_path, reader):
    path = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"cut\.jpg.*truncated"):
        reader(path)


def test_truncated_png_fails_the_cheap_check_and_decoding(tmp_path):
    whole = save(tmp_path / "whole.png", np.arange(600, dtype=np.uint8).reshape(20, 30), "PNG").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*(broken|truncated)"):
        check_image_file(cut)
    with pytest.raises(DataError, match=r"cut\.png"):
        read_mask(cut)


def test_damage_inside_pixel_data_surfaces_when_decoding(tmp_path):
    path = png_with_corrupt_pixels(tmp_path / "bad.png", np.arange(900, dtype=np.uint8).reshape(30, 30))
    assert check_image_file(path) == (30, 30)  # the cheap check cannot see it ...
    with pytest.raises(DataError, match=r"cannot decode mask file .*bad\.png"):
        read_mask(path)  # ... decoding names the file


def test_jpeg_with_trailing_bytes_after_the_end_marker_is_fine(tmp_path):
    path = save(tmp_path / "padded.jpg", np.zeros((8, 8, 3), np.uint8), "JPEG")
    path.write_bytes(path.read_bytes() + b"\0" * 10_000)
    assert check_image_file(path) == (8, 8)
    assert read_image(path).size == (8, 8)


@pytest.mark.parametrize("width, height", [(10_000, 10_000), (20_000, 20_000)])
@pytest.mark.parametrize("reader", [read_image, read_mask, check_image_file])
def test_huge_images_are_refused_before_decoding(tmp_path, reader, width, height):
    path = png_claiming_size(tmp_path / "bomb.png", width, height)
    with pytest.raises(DataError, match=r"bomb\.png .*MAX_IMAGE_PIXELS = 50,000,000"):
        reader(path)


def test_pixel_limit_is_the_module_constant(tmp_path, monkeypatch):
    path = save(tmp_path / "photo.png", np.zeros((10, 10, 3), np.uint8), "PNG")
    assert read_image(path).size == (10, 10)
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 99)
    with pytest.raises(
        DataError, match=r"10x10 = 100 pixels, more than segkit.data.imageio.MAX_IMAGE_PIXELS = 99"
    ):
        read_image(path)


def test_check_image_file_returns_height_width_for_each_format(tmp_path):
    pixels = np.zeros((7, 11, 3), np.uint8)
    for image_format in ("JPEG", "PNG", "GIF", "WEBP"):
        assert check_image_file(save(tmp_path / f"x.{image_format}.jpg", pixels, image_format)) == (7, 11)


# -- real files, mutated: decoded or refused with a DataError (fuzzing) --------------------------------

DECODING = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@DECODING
@given(case=seed_and_edits())
def test_mutated_real_files_decode_or_give_a_data_error(tmp_path_factory, case):
    name, edits = case
    path = tmp_path_factory.mktemp("fuzz") / Path(SEED_FILES[name]).name
    path.write_bytes(mutate(seed_bytes(name), edits))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # segkit's pixel limit must act first
        size = decode_or_data_error(check_image_file, path)
        image = decode_or_data_error(read_image, path)
        mask = decode_or_data_error(read_mask, path)
    if image is not None:
        assert image.mode == "RGB" and image.width * image.height >= 1
    if mask is not None:
        assert mask.ndim == 2 and mask.dtype in (np.uint8, np.uint16)
    if size is not None and image is not None:
        assert size == (image.height, image.width), "the cheap check and the decoder disagree on the size"


def test_the_seed_files_themselves_decode(real_sample):
    """The unmutated seeds are valid, so the mutations are what the decoders are tested against."""
    for name, relative in SEED_FILES.items():
        image = read_image(real_sample / relative)
        assert check_image_file(real_sample / relative) == (image.height, image.width), name
