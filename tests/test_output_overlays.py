"""``segkit.reporting.overlays``: overlays painted band by band equal the whole-photo picture (against a
numpy reference), never hold a float copy of the whole photo, and put the class legend below the photo,
never over it, whatever the names and the number of classes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from segkit.reporting import overlays
from segkit.reporting.overlays import binary_overlay, class_overlay, legend_layout, whole_rows


def inner_outline(labels: np.ndarray, background=0) -> np.ndarray:
    """Pixels (not background) with a 4-neighbour of another label; outside the photo counts as the
    pixel itself. Written independently of skimage."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (
        (centre != padded[:-2, 1:-1])
        | (centre != padded[2:, 1:-1])
        | (centre != padded[1:-1, :-2])
        | (centre != padded[1:-1, 2:])
    )
    return differs & (labels != background)


def reference_binary(photo: np.ndarray, mask: np.ndarray, tint=(255, 40, 40), alpha=0.45) -> np.ndarray:
    pixels = photo.astype(np.float32)
    pixels[mask] = (1 - alpha) * pixels[mask] + alpha * np.array(tint, np.float32)
    pixels[inner_outline(mask)] = tint
    return pixels.clip(0, 255).astype(np.uint8)


def reference_classes(photo, colours, tinted, labels, alpha=0.5) -> np.ndarray:
    pixels = photo.astype(np.float32)
    pixels[tinted] = (1 - alpha) * pixels[tinted] + alpha * colours[tinted]
    edges = inner_outline(labels) & tinted
    pixels[edges] = colours[edges]
    return pixels.clip(0, 255).astype(np.uint8)


sizes = st.tuples(st.integers(1, 23), st.integers(1, 17))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=sizes, band=st.integers(1, 9))
def test_binary_overlay_band_by_band_equals_the_whole_photo_reference(data, shape, band):
    photo = data.draw(arrays(np.uint8, (*shape, 3)))
    mask = data.draw(arrays(bool, shape))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(overlays, "BAND_ROWS", band)
        drawn = np.asarray(binary_overlay(Image.fromarray(photo), mask))
    np.testing.assert_array_equal(drawn, reference_binary(photo, mask))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=sizes, band=st.integers(1, 9), classes=st.integers(2, 5))
def test_class_overlay_band_by_band_equals_the_whole_photo_reference(data, shape, band, classes):
    photo = data.draw(arrays(np.uint8, (*shape, 3)))
    labels = data.draw(arrays(np.uint8, shape, elements=st.integers(0, classes - 1)))
    palette = data.draw(arrays(np.float32, (classes, 3), elements=st.integers(0, 255).map(float)))
    colours, tinted = palette[labels], labels != 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(overlays, "BAND_ROWS", band)
        drawn = np.asarray(class_overlay(Image.fromarray(photo), whole_rows(colours, tinted, labels), []))
    np.testing.assert_array_equal(drawn, reference_classes(photo, colours, tinted, labels))


def test_in_place_paints_the_photo_itself_and_the_default_leaves_it_alone():
    photo = Image.fromarray(np.full((12, 10, 3), 100, np.uint8))
    mask = np.zeros((12, 10), bool)
    mask[3:8, 2:6] = True
    copy = binary_overlay(photo, mask)
    assert copy is not photo and np.asarray(photo).max() == 100
    painted = binary_overlay(photo, mask, in_place=True)
    assert painted is photo
    np.testing.assert_array_equal(np.asarray(photo), np.asarray(copy))


def test_an_overlay_holds_no_float_copy_of_the_whole_photo(monkeypatch):
    """The 8000 x 8000 predict peaked at 2.8 GB: the overlay was float32 arithmetic on the whole photo."""
    side = 1200
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    mask = np.zeros((side, side), bool)
    mask[:, : side // 2] = True
    monkeypatch.setattr(overlays, "BAND_ROWS", 64)
    float_copy = side * side * 3 * 4
    tracemalloc.start()
    try:
        binary_overlay(photo, mask, in_place=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float_copy / 8, f"peak {peak / 1e6:.1f} MB against a float copy's {float_copy / 1e6:.1f} MB"


LONG_NAMES = [f"a rather long class name number {index} (with detail)" for index in range(30)]


@pytest.mark.parametrize("size", [(24, 18), (70, 45), (320, 240), (2000, 1500)])
@pytest.mark.parametrize("names", [["background", "cat", "dog"], LONG_NAMES], ids=["3 classes", "30 long"])
def test_the_legend_goes_below_the_photo_and_fits_its_canvas(size, names):
    width, height = size
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in names]
    labels = rng.integers(0, len(names), (height, width)).astype(np.uint8)
    colours, tinted = np.asarray(palette, np.float32)[labels], labels != 0
    rows = whole_rows(colours, tinted, labels)
    legend = list(zip(names, palette, strict=True))
    plain = class_overlay(photo, rows, [])
    with_legend = class_overlay(photo, rows, legend)
    # the photo's pixels are where they were, none hidden by the legend
    np.testing.assert_array_equal(np.asarray(with_legend)[:height, :width], np.asarray(plain))
    assert with_legend.width >= width and with_legend.height > height
    entries, canvas_width, canvas_height = legend_layout(legend, width, height)
    assert (canvas_width, canvas_height) == with_legend.size
    assert [entry.name for entry in entries] == names
    boxes = [box for entry in entries for box in (entry.swatch, entry.text)]
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= canvas_width and height <= top < bottom <= canvas_height
    for index, first in enumerate(boxes):  # nothing drawn over anything else
        for second in boxes[index + 1 :]:
            apart = (
                first[2] <= second[0]
                or second[2] <= first[0]
                or first[3] <= second[1]
                or second[3] <= first[1]
            )
            assert apart, (first, second)
    if width >= 320:  # no wider than the photo unless one name alone is wider
        assert canvas_width == width
