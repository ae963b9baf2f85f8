"""segkit.inference.postprocess: the optional clean-up of predicted masks, against a pure-Python flood fill.

The reference labels connected components with a breadth-first search of its own (4-neighbours for
specks and holes, 8-neighbours for the largest component, as the module's scikit-image and scipy calls
use), so a wrong connectivity, a size off by one or the steps in another order shows up.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segkit.inference.postprocess import postprocess_mask

FOUR = ((0, 1), (1, 0), (0, -1), (-1, 0))
EIGHT = FOUR + ((1, 1), (1, -1), (-1, 1), (-1, -1))


def components(mask, neighbours):
    """Connected components of the True pixels, each a set of (row, col), in raster order of their
    first pixel."""
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    height, width = mask.shape
    for row in range(height):
        for col in range(width):
            if not mask[row, col] or seen[row, col]:
                continue
            seen[row, col] = True
            pixels, queue = set(), deque([(row, col)])
            while queue:
                r, c = queue.popleft()
                pixels.add((r, c))
                for dr, dc in neighbours:
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < height and 0 <= nc < width and mask[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        queue.append((nr, nc))
            found.append(pixels)
    return found


def painted(shape, pixel_sets):
    out = np.zeros(shape, dtype=bool)
    for pixels in pixel_sets:
        for r, c in pixels:
            out[r, c] = True
    return out


def reference(mask, fill_holes, keep_largest, min_size):
    """The clean-up by hand; for keep_largest, every component of the largest size (ties are the
    implementation's to break)."""
    mask = mask.astype(bool)
    if min_size > 0:
        mask = painted(mask.shape, [c for c in components(mask, FOUR) if len(c) >= min_size])
    if fill_holes:
        # A hole is background that no 4-connected path of background joins to the border.
        outside = [
            c
            for c in components(~mask, FOUR)
            if any(r in (0, mask.shape[0] - 1) or col in (0, mask.shape[1] - 1) for r, col in c)
        ]
        mask = ~painted(mask.shape, outside)
    if not keep_largest or not mask.any():
        return [mask]
    parts = components(mask, EIGHT)
    largest = max(len(c) for c in parts)
    return [painted(mask.shape, [c]) for c in parts if len(c) == largest]


masks = hnp.arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9)))


@settings(max_examples=150, deadline=None)
@given(masks, st.booleans(), st.booleans(), st.integers(0, 6))
def test_clean_up_matches_a_flood_fill_reference(mask, fill_holes, keep_largest, min_size):
    result = postprocess_mask(mask, fill_holes=fill_holes, keep_largest=keep_largest, min_size=min_size)
    assert result.dtype == bool and result.shape == mask.shape
    assert any(
        np.array_equal(result, expected) for expected in reference(mask, fill_holes, keep_largest, min_size)
    )


def mask_of(text):
    return np.array([[char == "#" for char in line] for line in text.split()], dtype=bool)


def test_nothing_asked_returns_the_mask_as_bool():
    # A ring with a hole, a speck and two objects: none of the steps is on by default.
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 0, 2], [1, 1, 1, 0, 0]], dtype=np.uint8)
    result = postprocess_mask(mask)
    assert result.dtype == bool
    assert result.tolist() == (mask > 0).tolist()


@pytest.mark.parametrize(
    ("min_size", "kept"),
    [(0, 3), (1, 3), (2, 2), (3, 1), (4, 1), (5, 0)],  # a speck of 1, a bar of 2, a block of 4 pixels
)
def test_min_size_keeps_objects_of_at_least_that_many_pixels(min_size, kept):
    mask = mask_of("#.....\n......\n##..##\n....##")
    result = postprocess_mask(mask, min_size=min_size)
    assert len(components(result, FOUR)) == kept


def test_diagonal_pixels_are_separate_specks_but_one_component_for_keep_largest():
    # Two pixels touching at a corner: two objects of 1 for min_size (4-connected), one object of 2
    # for keep_largest (8-connected), so a lone pixel elsewhere is the one dropped.
    mask = mask_of("#....\n.#...\n....#")
    assert not postprocess_mask(mask, min_size=2).any()
    assert postprocess_mask(mask, keep_largest=True).tolist() == mask_of("#....\n.#...\n.....").tolist()


def test_holes_are_filled_but_a_bay_open_to_the_border_is_not():
    ring = mask_of("#####\n#...#\n#.#.#\n#...#\n#####")
    assert postprocess_mask(ring, fill_holes=True).all()
    bay = mask_of("#####\n#...#\n#...#\n#...#\n##.##")
    assert postprocess_mask(bay, fill_holes=True).tolist() == bay.tolist()


def test_steps_run_in_order_specks_then_holes_then_largest():
    # A 3x3 ring has 8 pixels: with min_size 9 it goes before its hole is filled (filled first, it
    # would have 9 and stay).
    small_ring = mask_of("###\n#.#\n###")
    assert not postprocess_mask(small_ring, fill_holes=True, min_size=9).any()
    # The big ring's hole is filled before the largest component is chosen: the filled ring (25
    # pixels) beats the 20-pixel block, which beats the unfilled ring (17).
    mask = np.zeros((5, 12), dtype=bool)
    mask[:, :5] = mask_of("#####\n#...#\n#.#.#\n#...#\n#####")
    mask[:4, 7:] = True
    ring_filled, block = np.zeros_like(mask), np.zeros_like(mask)
    ring_filled[:, :5] = True
    block[:4, 7:] = True
    assert postprocess_mask(mask, fill_holes=True, keep_largest=True).tolist() == ring_filled.tolist()
    assert postprocess_mask(mask, keep_largest=True).tolist() == block.tolist()


def test_an_empty_mask_stays_empty_whatever_is_asked():
    empty = np.zeros((4, 4), dtype=bool)
    assert not postprocess_mask(empty, fill_holes=True, keep_largest=True, min_size=3).any()
