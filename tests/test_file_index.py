"""The dataset file index (segkit.data.file_checks, segkit.data.data_cache): checks kept per file and
reused while files are unchanged, many files checked in parallel, the cache beside the data or in the user's
cache.

The reference for every result is segkit.data.imageio.check_image_file called on each file directly, the
check a dataset made per run before the index existed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import rewrite_in_place, truncated_jpeg, write_folder_layout
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import segkit
from segkit.data import file_checks, imageio
from segkit.errors import DataError

NAMES = ["a", "b", "c", "d", "e", "f"]
HOUR_AGO = time.time() - 3600

# What a file of the generated folder may be turned into.
DAMAGE = {
    "good": None,
    "truncated": lambda path: truncated_jpeg(path, (20, 28)),
    "empty": lambda path: path.write_bytes(b""),
    "not an image": lambda path: path.write_bytes(b"just some text, not pixels"),
}


def age(root: Path, seconds_ago: float = 3600) -> None:
    """Every file under ``root`` last modified ``seconds_ago``: older than the index's racy window."""
    stamp = time.time() - seconds_ago
    for path in root.rglob("*"):
        if path.is_file() and ".segkit-cache" not in path.parts:
            os.utime(path, (stamp, stamp))


def build(root: Path, **options):
    return segkit.create_dataset(
        "folder", root=root, split="train", valid_fraction=0, test_fraction=0, **options
    )


def reference(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(usable names, [(name, reason)] skipped) from checking each file directly, in name order."""
    usable, skipped = [], []
    for image in sorted((root / "images").iterdir()):
        try:
            imageio.check_image_file(image, "image")
            imageio.check_image_file(root / "masks" / f"{image.stem}.png", "mask")
        except DataError as error:
            skipped.append((image.stem, str(error)))
            continue
        usable.append(image.stem)
    return usable, skipped


def damaged_folder(root: Path, damage: dict[str, tuple[str, str]]) -> None:
    """The folder layout with file ``damage[name] = (which file, how)`` applied."""
    write_folder_layout(root, NAMES)
    for name, (which, how) in damage.items():
        if DAMAGE[how] is not None:
            path = root / ("images" if which == "image" else "masks") / f"{name}.png"
            DAMAGE[how](path)


def count_checks(monkeypatch) -> list[Path]:
    checked: list[Path] = []
    real = file_checks.check_file

    def counting(path, role, values=False):
        checked.append(Path(path))
        return real(path, role, values)

    monkeypatch.setattr(file_checks, "check_file", counting)
    return checked


@given(
    damage=st.dictionaries(
        st.sampled_from(NAMES),
        st.tuples(st.sampled_from(["image", "mask"]), st.sampled_from(sorted(DAMAGE))),
        max_size=len(NAMES) - 1,
    ).filter(lambda damage: any(how == "good" for _, how in damage.values()) or len(damage) < len(NAMES))
)
def test_cold_and_warm_index_agree_with_checking_each_file(damage):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        damaged_folder(root, damage)
        age(root)
        expected_names, expected_skipped = reference(root)
        for attempt in ("cold", "warm"):
            with pytest.warns(Warning) if expected_skipped else _nothing():
                dataset = build(root)
            assert dataset.names == expected_names, attempt
            assert dataset.skipped == expected_skipped, attempt


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_unchanged_files_are_not_opened_again_and_changed_ones_are(tmp_path, monkeypatch):
    write_folder_layout(tmp_path, NAMES)
    age(tmp_path)
    checked = count_checks(monkeypatch)
    assert build(tmp_path).names == NAMES
    assert len(checked) == 2 * len(NAMES)
    checked.clear()
    assert build(tmp_path).names == NAMES
    assert checked == []
    # A photo replaced by a truncated one, modified an hour ago but later than before: only it is checked.
    broken = truncated_jpeg(tmp_path / "images" / "c.png", (20, 28))
    os.utime(broken, (HOUR_AGO + 60, HOUR_AGO + 60))
    with pytest.warns(Warning, match="c:.*truncated"):
        dataset = build(tmp_path)
    assert dataset.names == ["a", "b", "d", "e", "f"]
    assert checked == [broken]
    checked.clear()
    with pytest.warns(Warning, match="truncated"):
        assert build(tmp_path).skipped[0][0] == "c"  # the reason is kept too
    assert checked == []


def test_a_same_sized_rewrite_with_a_new_mtime_is_checked_again(tmp_path, monkeypatch):
    """Size and inode unchanged (a file corrupted in place, a photo re-saved at the same length): the
    modification time alone must send the file back to be checked."""
    write_folder_layout(tmp_path, NAMES)
    age(tmp_path)
    assert build(tmp_path).names == NAMES
    checked = count_checks(monkeypatch)
    mask = tmp_path / "masks" / "d.png"
    rewrite_in_place(
        mask, b"not a png " * (mask.stat().st_size // 10) + b"!" * (mask.stat().st_size % 10), HOUR_AGO + 60
    )
    with pytest.warns(Warning, match="d:"):
        dataset = build(tmp_path)
    assert checked == [mask]
    assert dataset.names == ["a", "b", "c", "e", "f"]
    assert dataset.skipped == reference(tmp_path)[1]


def test_the_cache_file_read_is_not_remembered_past_a_same_sized_rewrite(tmp_path):
    """``read_cached`` keeps the last file it parsed; a rewrite of the same length with a new mtime
    (another process updating the index) must be read again, not answered from memory."""
    from segkit.data import data_cache

    data_cache.write_cached(tmp_path, "facts.json", 1, {"value": "aaaa"})
    assert data_cache.read_cached(tmp_path, "facts.json", 1)["value"] == "aaaa"
    path = tmp_path / "facts.json"
    rewrite_in_place(path, path.read_bytes().replace(b"aaaa", b"bbbb"), HOUR_AGO)
    assert data_cache.read_cached(tmp_path, "facts.json", 1)["value"] == "bbbb"


def test_files_modified_just_now_are_checked_again(tmp_path, monkeypatch):
    """A rewrite of the same size within one tick of the file system's clock keeps its mtime: recent
    files are not remembered, so such a rewrite is never missed."""
    write_folder_layout(tmp_path, NAMES)
    checked = count_checks(monkeypatch)
    build(tmp_path)
    build(tmp_path)
    assert len(checked) == 2 * 2 * len(NAMES)


def test_index_lives_beside_the_data_or_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    data = tmp_path / "data"
    write_folder_layout(data, NAMES)
    age(data)
    build(data)
    beside = data / ".segkit-cache" / "file-index.json"
    assert beside.is_file()
    assert len(json.loads(beside.read_text())["files"]) == 2 * len(NAMES)
    assert not (tmp_path / "user-cache").exists()

    other = tmp_path / "read-only"
    write_folder_layout(other, NAMES)
    age(other)
    other.chmod(0o555)  # marked read-only: not written, even by root (who could)
    try:
        build(other)
        assert not (other / ".segkit-cache").exists()
    finally:
        other.chmod(0o755)
    (in_user_cache,) = (tmp_path / "user-cache" / "segkit" / "data").glob("*/file-index.json")
    assert len(json.loads(in_user_cache.read_text())["files"]) == 2 * len(NAMES)


def test_caching_off_writes_nothing_and_checks_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_CACHE_DIR", "off")
    write_folder_layout(tmp_path, NAMES)
    age(tmp_path)
    checked = count_checks(monkeypatch)
    build(tmp_path)
    build(tmp_path)
    assert len(checked) == 2 * 2 * len(NAMES)
    assert not (tmp_path / ".segkit-cache").exists()


def test_a_moved_folder_keeps_its_index_and_names_files_where_they_are_now(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    old = tmp_path / "old"
    write_folder_layout(old, NAMES)
    truncated_jpeg(old / "images" / "b.png", (20, 28))
    age(old)
    with pytest.warns(Warning):
        build(old)
    new = tmp_path / "new"
    old.rename(new)
    checked = count_checks(monkeypatch)
    with pytest.warns(Warning):
        dataset = build(new)
    assert checked == []
    assert str(new / "images" / "b.png") in dataset.skipped[0][1]
    assert str(old) not in dataset.skipped[0][1]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        json.dumps(
            {
                "version": file_checks.INDEX_VERSION,
                "max_pixels": imageio.MAX_IMAGE_PIXELS,
                "files": {"image:images/a.png": "nonsense", "mask:masks/a.png": [1, 2]},
            }
        ).encode(),
    ],
    ids=["garbage", "not an object", "odd entries"],
)
def test_a_damaged_index_is_rebuilt_not_trusted(tmp_path, monkeypatch, content):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    write_folder_layout(tmp_path, NAMES)
    age(tmp_path)
    (tmp_path / ".segkit-cache").mkdir()
    (tmp_path / ".segkit-cache" / "file-index.json").write_bytes(content)
    assert build(tmp_path).names == NAMES
    assert len(json.loads((tmp_path / ".segkit-cache" / "file-index.json").read_text())["files"]) == 12


def test_a_lower_pixel_limit_is_not_answered_from_the_index(tmp_path, monkeypatch):
    write_folder_layout(tmp_path, NAMES, size=(20, 28))
    age(tmp_path)
    assert build(tmp_path).names == NAMES
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 20 * 28 - 1)
    with pytest.raises(DataError, match="MAX_IMAGE_PIXELS"):
        build(tmp_path, strict=True)


def test_a_file_added_later_is_listed(tmp_path):
    write_folder_layout(tmp_path, NAMES[:3])
    age(tmp_path)
    for folder in ("images", "masks"):
        os.utime(tmp_path / folder, (HOUR_AGO, HOUR_AGO))
    assert build(tmp_path).names == NAMES[:3]
    write_folder_layout(tmp_path, NAMES[:4])  # d added (a..c rewritten alike)
    assert build(tmp_path).names == NAMES[:4]


def test_many_files_are_checked_in_parallel_with_the_same_results(tmp_path, monkeypatch):
    """Above PARALLEL_FROM unchecked files a process pool checks them; results and order as in one process."""
    root = tmp_path / "many"
    names = [f"p{index:03d}" for index in range(40)]
    write_folder_layout(root, names, size=(8, 10))
    truncated_jpeg(root / "images" / "p007.png", (8, 10))
    (root / "masks" / "p031.png").write_bytes(b"")
    age(root)
    expected = reference(root)
    monkeypatch.setattr(file_checks, "PARALLEL_FROM", 10)
    monkeypatch.setattr(file_checks, "usable_cores", lambda: 2)
    real_pool = file_checks.ProcessPoolExecutor
    pools = []
    monkeypatch.setattr(
        file_checks, "ProcessPoolExecutor", lambda **options: pools.append(options) or real_pool(**options)
    )
    with pytest.warns(Warning):
        dataset = build(root)
    assert [pool["max_workers"] for pool in pools] == [2]
    assert (dataset.names, dataset.skipped) == expected


def test_check_file_reports_size_mode_or_the_reason(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(photo)
    assert file_checks.check_file(photo, "image") == file_checks.FileFacts(5, 7, "RGB")
    missing = file_checks.check_file(tmp_path / "gone.png", "mask")
    assert missing.error is not None and "mask file" in missing.error and "gone.png" in missing.error


# --- check_files and the cache folder called directly (the mutation run's survivors) -----------------


def photos(folder: Path, sizes: dict[str, tuple[int, int, str]]) -> list[tuple[Path, str]]:
    """PNG files ``name.png`` of the given (height, width, mode), aged past the racy window."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, (height, width, mode) in sizes.items():
        shape = (height, width, 3) if mode == "RGB" else (height, width)
        path = folder / f"{name}.png"
        Image.fromarray(np.zeros(shape, np.uint8), mode).save(path)
        os.utime(path, (HOUR_AGO, HOUR_AGO))
        files.append((path, "image" if mode == "RGB" else "mask"))
    return files


SIZES = {"wide": (6, 11, "RGB"), "tall": (13, 4, "L"), "square": (7, 7, "RGB")}


def index_of(folder: Path) -> dict:
    return json.loads((folder / ".segkit-cache" / "file-index.json").read_text())


def test_a_warm_index_gives_back_each_files_size_and_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    files = photos(tmp_path / "images", SIZES)
    expected = [file_checks.FileFacts(h, w, mode) for h, w, mode in SIZES.values()]
    assert file_checks.check_files(files, tmp_path) == expected
    checked = count_checks(monkeypatch)
    warm = file_checks.check_files(files, tmp_path)
    assert checked == []
    assert warm == expected
    assert [(type(facts.height), type(facts.width), type(facts.mode)) for facts in warm] == [
        (int, int, str)
    ] * 3


def test_index_keys_are_relative_inside_the_data_folder_and_absolute_outside(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    data = tmp_path / "data"
    files = photos(data, {"top": (3, 4, "RGB")}) + photos(data / "images", {"inner": (3, 4, "RGB")})
    files += photos(tmp_path / "elsewhere", {"outer": (3, 4, "L")})
    file_checks.check_files(files, data)
    outside = (tmp_path / "elsewhere").resolve().as_posix()
    assert sorted(index_of(data)["files"]) == sorted(
        ["image:top.png", "image:images/inner.png", f"mask:{outside}/outer.png"]
    )


def test_without_a_data_folder_files_are_checked_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    files = photos(tmp_path, SIZES)
    checked = count_checks(monkeypatch)
    for _ in range(2):
        assert file_checks.check_files(files) == [
            file_checks.FileFacts(h, w, m) for h, w, m in SIZES.values()
        ]
    assert len(checked) == 2 * len(SIZES)
    assert not (tmp_path / ".segkit-cache").exists() and not (tmp_path / "user-cache").exists()


def test_no_index_is_written_when_every_file_is_too_recent_to_remember(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    files = photos(tmp_path, SIZES)
    for path, _ in files:
        path.touch()
    file_checks.check_files(files, tmp_path)
    assert not (tmp_path / ".segkit-cache" / "file-index.json").exists()


def test_the_racy_window_ends_racy_seconds_before_the_check_to_the_nanosecond(tmp_path, monkeypatch):
    """The window is closed: a file modified ``RACY_SECONDS`` before the check is still too recent,
    one modified a nanosecond earlier is remembered."""
    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    files = photos(tmp_path, {"old": (3, 4, "RGB"), "edge": (3, 4, "RGB"), "just-before": (3, 4, "RGB")})
    edge_mtime = files[1][0].stat().st_mtime_ns + 60 * 10**9
    for (path, _), mtime in zip(files[1:], [edge_mtime, edge_mtime - 1], strict=True):
        os.utime(path, ns=(mtime, mtime))
    now = edge_mtime + int(file_checks.RACY_SECONDS * 10**9)
    monkeypatch.setattr(file_checks, "time", type("Clock", (), {"time_ns": staticmethod(lambda: now)}))
    file_checks.check_files(files, tmp_path)
    assert sorted(index_of(tmp_path)["files"]) == ["image:just-before.png", "image:old.png"]


class Recorder:
    """Stands in for the progress bar or the process pool, recording how it was made and used."""

    def __init__(self, **options):
        self.options, self.updates, self.chunksizes = options, 0, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, count=1):
        self.updates += count

    def map(self, function, *iterables, chunksize=1):
        self.chunksizes.append(chunksize)
        return map(function, *iterables)


@pytest.fixture
def recorded(monkeypatch):
    """(bars, pools): every progress bar and process pool ``_check_all`` makes, nothing really forked."""
    bars, pools = [], []

    def maker(into):
        def make(*args, **options):
            assert not args
            into.append(Recorder(**options))
            return into[-1]

        return make

    monkeypatch.setattr(file_checks, "progress", maker(bars))
    monkeypatch.setattr(file_checks, "ProcessPoolExecutor", maker(pools))
    return bars, pools


@pytest.mark.parametrize(
    "count, workers, cores, expected_pool",
    [
        (4, None, 40, 16),  # at the threshold: a pool, of the usable cores but at most 16
        (4, None, 3, 3),
        (4, 1, 40, None),  # one worker asked for: this process, however many files
        (4, 2, 40, 2),
        (3, None, 40, None),  # under the threshold: this process
    ],
)
def test_the_pool_is_used_from_parallel_from_files_with_the_workers_asked(
    tmp_path, monkeypatch, recorded, count, workers, cores, expected_pool
):
    import multiprocessing

    bars, pools = recorded
    monkeypatch.setattr(file_checks, "PARALLEL_FROM", 4)
    monkeypatch.setattr(file_checks, "usable_cores", lambda: cores)
    files = photos(tmp_path, {f"p{index}": (2 + index, 3, "RGB") for index in range(count)})
    facts = file_checks.check_files(files, workers=workers)
    assert facts == [file_checks.FileFacts(2 + index, 3, "RGB") for index in range(count)]
    if expected_pool is None:
        assert pools == []
    else:
        (pool,) = pools
        assert pool.options == {
            "max_workers": expected_pool,
            "mp_context": multiprocessing.get_context("fork"),
        }
        assert pool.chunksizes == [file_checks.CHUNK]
    (bar,) = bars
    assert bar.updates == count


@pytest.mark.parametrize("count, shown", [(3, True), (2, False)])
@pytest.mark.parametrize("description, suffix", [("train photos", " of train photos"), ("", "")])
def test_the_progress_bar_names_the_files_and_shows_only_for_many(
    tmp_path, monkeypatch, recorded, count, shown, description, suffix
):
    bars, _ = recorded
    monkeypatch.setattr(file_checks, "PARALLEL_FROM", 3)
    files = photos(tmp_path, {f"p{index}": (2, 3, "RGB") for index in range(count)})
    file_checks.check_files(files, workers=1, **({"description": description} if description else {}))
    (bar,) = bars
    assert bar.options == {
        "total": count,
        "desc": f"checking {count} files{suffix}",
        "unit": "file",
        "quiet": not shown,  # segkit.progress decides where a bar is drawn
        "leave": False,
    }


def test_usable_cores_without_affinity_falls_back_to_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert file_checks.usable_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert file_checks.usable_cores() == 1


# --- where the cache lives (segkit.data.data_cache) ----------------------------------------------------


def folder_hash(folder: Path) -> str:
    """The documented key: the first 16 hex digits of the SHA-256 of the absolute path."""
    import hashlib

    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


def test_segkit_cache_dir_holds_every_datasets_cache_under_its_own_key(tmp_path, monkeypatch):
    from segkit.data import data_cache

    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path / "caches"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert data_cache.cache_folder(first) == tmp_path / "caches" / "data" / folder_hash(first)
    assert data_cache.cache_folder(second) == tmp_path / "caches" / "data" / folder_hash(second)
    assert folder_hash(first) != folder_hash(second)
    assert not (first / ".segkit-cache").exists()  # writable, but the variable wins


def test_the_user_cache_is_xdg_cache_home_else_dot_cache_in_home(tmp_path, monkeypatch):
    from segkit.data import data_cache

    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache.user_cache_root() == tmp_path / "xdg" / "segkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_cache.user_cache_root() == tmp_path / "home" / ".cache" / "segkit"


@pytest.mark.parametrize(
    "value, enabled", [(None, True), ("", True), ("/some/folder", True), ("off", False), (" OFF ", False)]
)
def test_caching_is_off_only_when_the_variable_says_off(tmp_path, monkeypatch, value, enabled):
    from segkit.data import data_cache

    if value is None:
        monkeypatch.delenv("SEGKIT_CACHE_DIR")
    else:
        monkeypatch.setenv("SEGKIT_CACHE_DIR", value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache.caching_enabled() is enabled
    assert (data_cache.cache_folder(tmp_path) is not None) is enabled


def test_a_missing_data_folder_is_not_created_its_cache_goes_to_the_user_cache(tmp_path, monkeypatch):
    from segkit.data import data_cache

    monkeypatch.delenv("SEGKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    missing = tmp_path / "missing"
    assert data_cache.cache_folder(missing) == tmp_path / "xdg" / "segkit" / "data" / folder_hash(missing)
    assert not missing.exists()


def test_no_cache_folder_when_none_can_be_made(tmp_path, monkeypatch):
    from segkit.data import data_cache

    (tmp_path / "a-file").write_text("in the way")
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path / "a-file" / "caches"))
    assert data_cache.cache_folder(tmp_path) is None
    files = photos(tmp_path / "images", SIZES)
    assert file_checks.check_files(files, tmp_path) == [
        file_checks.FileFacts(h, w, m) for h, w, m in SIZES.values()
    ]


def test_two_cache_files_alike_in_size_and_mtime_are_told_apart(tmp_path):
    """The remembered read is keyed by path too: another file of the same length and time is read."""
    from segkit.data import data_cache

    data_cache.write_cached(tmp_path, "one.json", 1, {"value": "aaaa"})
    data_cache.write_cached(tmp_path, "two.json", 1, {"value": "bbbb"})
    for name in ("one.json", "two.json"):
        os.utime(tmp_path / name, ns=(10**18, 10**18))
    assert data_cache.read_cached(tmp_path, "one.json", 1)["value"] == "aaaa"
    assert data_cache.read_cached(tmp_path, "two.json", 1)["value"] == "bbbb"


def test_an_unchanged_cache_file_is_parsed_once_per_process(tmp_path, monkeypatch):
    """The splits of one run read the same index in turn: the second read is answered from memory."""
    from segkit.data import data_cache

    data_cache.write_cached(tmp_path, "facts.json", 1, {"value": "aaaa"})
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(data_cache.json, "loads", lambda text: parsed.append(text) or real_loads(text))
    first = data_cache.read_cached(tmp_path, "facts.json", 1)
    second = data_cache.read_cached(tmp_path, "facts.json", 1)
    assert first == second == {"version": 1, "value": "aaaa"}
    assert len(parsed) == 1
    second["value"] = "changed by the caller"  # a copy: the remembered content is not touched
    assert data_cache.read_cached(tmp_path, "facts.json", 1)["value"] == "aaaa"
