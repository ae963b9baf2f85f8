"""segkit.data.rendered_masks: masks rendered from an annotation file once, kept in the data folder's
cache, and rendered again whenever the file, the renderer or its options change."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from segkit.data import rendered_masks
from segkit.data.rendered_masks import rendered_masks as render_into


@pytest.fixture(autouse=True)
def trusted_at_once(monkeypatch):
    monkeypatch.setattr(rendered_masks, "RACY_SECONDS", -1.0)  # files written by a test count as settled


def counting(value: int, calls: list[str], shape=(3, 4)):
    def render(name: str) -> np.ndarray:
        calls.append(name)
        return np.full(shape, value, np.uint8)

    return render


def read(paths) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in paths]


def test_masks_are_rendered_once_and_read_back_as_rendered(tmp_path):
    annotation = tmp_path / "labels.json"
    annotation.write_text("{}")
    calls: list[str] = []
    first = render_into(tmp_path, [annotation], "test-1", {}, ["a", "b/c"], counting(7, calls))
    again = render_into(tmp_path, [annotation], "test-1", {}, ["a", "b/c"], counting(9, calls))
    assert calls == ["a", "b/c"] and again == first
    assert [mask.tolist() for mask in read(first["b/c"])] == [np.full((3, 4), 7).tolist()]


def test_a_same_sized_rewrite_with_a_new_mtime_renders_again(tmp_path):
    annotation = tmp_path / "labels.json"
    annotation.write_text("{1}")
    calls: list[str] = []
    first = render_into(tmp_path, [annotation], "test-1", {}, ["a"], counting(1, calls))
    annotation.write_text("{2}")
    later = time.time() - 100  # another mtime, settled
    os.utime(annotation, (later, later))
    second = render_into(tmp_path, [annotation], "test-1", {}, ["a"], counting(2, calls))
    assert calls == ["a", "a"]
    assert read(second["a"])[0].max() == 2
    assert not first["a"][0].exists()  # the render of the older file is gone


@pytest.mark.parametrize("change", ["renderer", "options"])
def test_another_renderer_or_options_render_again(tmp_path, change):
    annotation = tmp_path / "labels.json"
    annotation.write_text("{}")
    calls: list[str] = []
    render_into(tmp_path, [annotation], "test-1", {"categories": [1]}, ["a"], counting(1, calls))
    renderer, options = (
        ("test-2", {"categories": [1]}) if change == "renderer" else ("test-1", {"categories": [2]})
    )
    render_into(tmp_path, [annotation], renderer, options, ["a"], counting(2, calls))
    assert calls == ["a", "a"]


def test_two_annotation_files_keep_their_renders_side_by_side(tmp_path):
    train, valid = tmp_path / "train.json", tmp_path / "valid.json"
    train.write_text("{}")
    valid.write_text("{ }")
    calls: list[str] = []
    render_into(tmp_path, [train], "test-1", {}, ["a"], counting(1, calls))
    render_into(tmp_path, [valid], "test-1", {}, ["b"], counting(2, calls))
    render_into(tmp_path, [train], "test-1", {}, ["a"], counting(3, calls))
    assert calls == ["a", "b"]


def test_a_file_written_just_now_is_not_trusted_as_rendered(tmp_path, monkeypatch):
    monkeypatch.setattr(rendered_masks, "RACY_SECONDS", 3600.0)
    annotation = tmp_path / "labels.json"
    annotation.write_text("{}")
    calls: list[str] = []
    render_into(tmp_path, [annotation], "test-1", {}, ["a"], counting(1, calls))
    render_into(tmp_path, [annotation], "test-1", {}, ["a"], counting(1, calls))
    assert calls == ["a", "a"]


def test_a_failing_render_records_nothing(tmp_path):
    annotation = tmp_path / "labels.json"
    annotation.write_text("{}")

    def broken(name):
        raise ValueError(f"bad annotation for {name}")

    with pytest.raises(ValueError, match="bad annotation for a"):
        render_into(
            tmp_path,
            [annotation],
            "test-1",
            {"x": 1},
            ["b", "a"],
            lambda name: broken(name) if name == "a" else np.zeros((2, 2), np.uint8),
        )
    assert not list(tmp_path.rglob("*.png"))  # the mask of b, rendered before a failed, is gone too
    calls: list[str] = []
    render_into(tmp_path, [annotation], "test-1", {}, ["a"], counting(1, calls))
    assert calls == ["a"]


def test_multilabel_renders_are_one_file_per_label(tmp_path):
    annotation = tmp_path / "labels.json"
    annotation.write_text("{}")
    planes = np.stack([np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)])
    written = render_into(tmp_path, [annotation], "test-1", {}, ["a"], lambda name: planes)
    assert [plane.tolist() for plane in read(written["a"])] == planes.tolist()


def test_a_dataset_of_rendered_masks_keeps_its_file_index_under_its_data_root(tmp_path, monkeypatch):
    """Masks rendered into the user cache (a read-only data folder) must not put the file index in the
    folder the photos and the cache share (the file system root, or the home folder)."""
    from data_fixtures import photo_array, save

    from segkit.data import file_checks
    from segkit.data.pairs import Pair
    from segkit.data.transforms import build_sample_transform
    from segkit.datasets import PairedImageDataset

    class Rendered(PairedImageDataset):
        def labels_from_mask(self, raw, path):
            return raw

    data = tmp_path / "deep" / "data"
    save(data / "a.png", photo_array(3, 4, 0), "PNG")
    masks = render_into(
        tmp_path / "cache-home", [data / "a.png"], "t-1", {}, ["a"], lambda n: np.zeros((3, 4), np.uint8)
    )
    places = []
    real = file_checks.check_files
    monkeypatch.setattr(
        "segkit.data.datasets.check_files",
        lambda files, root, **kw: places.append(root) or real(files, root, **kw),
    )
    pair = Pair("a", data / "a.png", masks["a"][0])
    Rendered([pair], build_sample_transform("none", 8, train=False), data_root=data)
    assert places == [data]
