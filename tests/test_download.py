"""segkit.data.download and ``segkit data download``: verified downloads and safe extraction, all local."""

from __future__ import annotations

import functools
import hashlib
import http.server
import tarfile
import threading
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from data_fixtures import tar_folder, tar_with_members, write_oxford_layout
from fixtures import error_line, invoke
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.cli import SegkitGroup
from segkit.cli.data_cmd import data
from segkit.data.download import download_dataset, safe_extract, unsafe_members
from segkit.errors import DataError, UsageError
from segkit.testing import check_dataset

TRAINVAL = [f"Bengal_{index}" for index in range(1, 13)]
TEST = ["pug_1", "pug_2"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    """A folder holding images.tar.gz and annotations.tar.gz laid out like the official archives."""
    source = write_oxford_layout(tmp_path / "source", TRAINVAL, TEST, size=(20, 24))
    (source / "annotations" / "trimaps" / "._Bengal_1.png").write_bytes(b"\0\5\26\7 macOS resource fork")
    folder = tmp_path / "mirror"
    folder.mkdir()
    tar_folder(folder / "images.tar.gz", source, ["images"])
    tar_folder(folder / "annotations.tar.gz", source, ["annotations"])
    return folder


def checksums(folder: Path) -> dict[str, str]:
    return {name: md5(folder / name) for name in ("images.tar.gz", "annotations.tar.gz")}


def test_download_verify_extract_then_load(tmp_path, mirror):
    target = tmp_path / "pets"
    messages = []
    download_dataset(
        "oxford-pet", target, base_url=mirror.as_uri(), md5_overrides=checksums(mirror), log=messages.append
    )
    assert (target / "images" / "Bengal_1.jpg").is_file() and (target / "annotations" / "test.txt").is_file()
    assert not list(target.glob(".segkit-extract-*")), "the staging folder is cleaned up"
    for split in ("train", "valid", "test"):
        check_dataset(segkit.create_dataset("oxford_pet", root=target, split=split, image_size=16))
    assert len(segkit.create_dataset("oxford_pet", root=target, split="valid", image_size=16)) == 2
    assert any("ready" in message for message in messages)


def test_second_run_skips_verified_work(tmp_path, mirror):
    target = tmp_path / "pets"
    sums = checksums(mirror)
    download_dataset("oxford-pet", target, base_url=mirror.as_uri(), md5_overrides=sums)
    messages = []
    download_dataset(
        "oxford-pet", target, base_url=(tmp_path / "gone").as_uri(), md5_overrides=sums, log=messages.append
    )
    assert sum("already extracted" in message for message in messages) == 2
    for marker in target.glob(".segkit-extracted-*"):
        marker.unlink()
    messages.clear()
    download_dataset(
        "oxford-pet", target, base_url=(tmp_path / "gone").as_uri(), md5_overrides=sums, log=messages.append
    )
    assert sum("already downloaded, checksum verified" in message for message in messages) == 2


def test_bad_checksum_is_clear_and_extracts_nothing(tmp_path, mirror):
    target = tmp_path / "pets"
    sums = checksums(mirror)
    sums["annotations.tar.gz"] = "0" * 32
    with pytest.raises(DataError) as caught:
        download_dataset("oxford-pet", target, base_url=mirror.as_uri(), md5_overrides=sums)
    message = str(caught.value)
    assert "checksum mismatch" in message and "annotations.tar.gz" in message and "0" * 32 in message
    assert md5(mirror / "annotations.tar.gz") in message
    assert not (target / "images").exists() and not (target / "annotations").exists()
    assert not (target / "annotations.tar.gz").exists(), "the bad download is deleted"


def test_official_checksums_are_checked_by_default(tmp_path, mirror):
    with pytest.raises(DataError, match="expected MD5 5c4f3ee8e5d25df40f4fd59a7f44e54c"):
        download_dataset("oxford-pet", tmp_path / "pets", base_url=mirror.as_uri())
    assert not (tmp_path / "pets" / "images").exists()


def test_unreachable_source_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match=r"cannot download .*nowhere/images\.tar\.gz"):
        download_dataset("oxford-pet", tmp_path / "pets", base_url=(tmp_path / "nowhere").as_uri())
    with pytest.raises(UsageError, match="no downloadable dataset 'imagenet'; available: oxford-pet"):
        download_dataset("imagenet", tmp_path)
    with pytest.raises(UsageError, match="unknown archive"):
        download_dataset("oxford-pet", tmp_path, md5_overrides={"videos.tar": "0" * 32})


def test_archives_without_the_expected_layout_are_reported(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    tar_with_members(folder / "images.tar.gz", [("file", "photos/a.jpg", "x")])
    tar_with_members(folder / "annotations.tar.gz", [("file", "notes.txt", "x")])
    with pytest.raises(DataError, match="missing: images, annotations/trimaps"):
        download_dataset(
            "oxford-pet", tmp_path / "pets", base_url=folder.as_uri(), md5_overrides=checksums(folder)
        )


# -- safe extraction -----------------------------------------------------------------------------

DANGEROUS = [
    [("file", "../escaped.txt", "gotcha")],
    [("file", "images/../../escaped.txt", "gotcha")],
    [("file", "/tmp/segkit-absolute-escape.txt", "gotcha")],
    [("symlink", "images/link", "../../escaped.txt")],
    [("symlink", "images/link", "/etc/passwd")],
    [("hardlink", "images/link", "../escaped.txt")],
    [("hardlink", "images/link", "/etc/passwd")],
]


@pytest.mark.parametrize(
    "members", DANGEROUS, ids=lambda members: f"{members[0][0]}:{members[0][1]}->{members[0][2]}"
)
def test_members_escaping_the_target_are_refused_before_anything_is_written(tmp_path, members):
    archive = tar_with_members(tmp_path / "evil.tar.gz", [("file", "images/fine.txt", "ok"), *members])
    target = tmp_path / "deep" / "target"
    with pytest.raises(
        DataError, match=rf"refusing to extract .*evil\.tar\.gz: .*{members[0][1].split('/')[-1]}"
    ):
        safe_extract(archive, target)
    assert list(target.iterdir()) == [], "nothing is extracted from a refused archive"
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/segkit-absolute-escape.txt").exists()


def test_refused_members_fail_the_whole_download(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    tar_with_members(
        folder / "images.tar.gz", [("dir", "images", ""), ("symlink", "images/x.jpg", "/etc/passwd")]
    )
    tar_with_members(folder / "annotations.tar.gz", [("file", "annotations/trainval.txt", "a 1 1 1")])
    with pytest.raises(DataError, match="symlink 'images/x.jpg' points outside"):
        download_dataset(
            "oxford-pet", tmp_path / "pets", base_url=folder.as_uri(), md5_overrides=checksums(folder)
        )
    assert not (tmp_path / "pets" / "images").exists()


def test_links_inside_the_target_are_extracted(tmp_path):
    archive = tar_with_members(
        tmp_path / "ok.tar.gz",
        [
            ("file", "data/a.txt", "A"),
            ("symlink", "data/b.txt", "a.txt"),
            ("hardlink", "data/c.txt", "data/a.txt"),
        ],
    )
    target = tmp_path / "target"
    assert safe_extract(archive, target) == ["data/a.txt", "data/b.txt", "data/c.txt"]
    assert (target / "data" / "b.txt").read_text() == "A" and (target / "data" / "c.txt").read_text() == "A"


def test_pythons_without_extraction_filters_are_protected_too(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter")
    good = tar_with_members(tmp_path / "good.tar.gz", [("file", "images/a.txt", "A")])
    assert safe_extract(good, tmp_path / "target") == ["images/a.txt"]
    evil = tar_with_members(tmp_path / "evil.tar.gz", [("symlink", "images/b.txt", "../../../escaped.txt")])
    with pytest.raises(DataError, match="points outside"):
        safe_extract(evil, tmp_path / "target")
    assert not (tmp_path / "target" / "images" / "b.txt").exists()


def test_target_that_is_a_file_is_a_data_error(tmp_path):
    (tmp_path / "pets").write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the target folder .*pets"):
        download_dataset("oxford-pet", tmp_path / "pets")


def test_corrupt_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match=r"cannot extract .*broken\.tar\.gz"):
        safe_extract(archive, tmp_path / "target")


segments = st.lists(st.sampled_from(["a", "b", "..", "."]), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(parts=segments, link=st.one_of(st.none(), segments))
def test_refusal_matches_where_a_path_would_land(tmp_path_factory, parts, link):
    """A member is refused exactly when its path (or a symlink's target) leaves the folder."""
    root = tmp_path_factory.mktemp("x")
    name = "/".join(parts)

    def escapes(path_parts):
        depth = 0
        for part in path_parts:
            depth += {"..": -1, ".": 0}.get(part, 1)
            if depth < 0:
                return True
        return False

    def depth(path_parts):
        return sum({"..": -1, ".": 0}.get(part, 1) for part in path_parts)

    info = tarfile.TarInfo(name)
    if link is None:
        refused = escapes(parts)
    else:
        # A link named like the folder itself ("." or "a/..") would replace it; a symlink's target
        # is relative to the folder its name says.
        info.type, info.linkname = tarfile.SYMTYPE, "/".join(link)
        refused = escapes(parts) or depth(parts) == 0 or escapes([*parts[:-1], *link])
    assert bool(unsafe_members([info], root)) == refused


# -- the command line ----------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_mirror(mirror):
    """The mirror served over HTTP on 127.0.0.1, stopped after the test (or after 60 s at most)."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(mirror))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def md5_options(folder: Path) -> list[str]:
    return [option for name, value in checksums(folder).items() for option in ("--md5", f"{name}={value}")]


def test_cli_downloads_over_http_with_the_url_from_the_environment(tmp_path, mirror, http_mirror):
    target = tmp_path / "pets"
    result = CliRunner().invoke(
        data,
        ["download", "oxford-pet", str(target), *md5_options(mirror)],
        env={"SEGKIT_OXFORD_PET_URL": http_mirror},
    )
    assert result.exit_code == 0, result.output
    assert "oxford-pet is ready" in result.output
    check_dataset(segkit.create_dataset("oxford_pet", root=target, split="test", image_size=16))


def test_cli_base_url_option_and_remove_archives(tmp_path, mirror):
    target = tmp_path / "pets"
    arguments = ["download", "oxford_pet", str(target), "--base-url", mirror.as_uri(), "--remove-archives"]
    result = CliRunner().invoke(data, [*arguments, *md5_options(mirror)])
    assert result.exit_code == 0, result.output
    assert (target / "images").is_dir() and not list(target.glob("[!.]*.tar.gz"))


def test_cli_usage_mistakes(tmp_path):
    runner = CliRunner()
    result = runner.invoke(data, ["download", "imagenet", str(tmp_path)])
    assert result.exit_code == 2 and "not downloadable; choose from oxford-pet" in result.output
    result = runner.invoke(data, ["download", "oxford-pet", str(tmp_path), "--md5", "images.tar.gz"])
    assert result.exit_code == 2 and "is not ARCHIVE=MD5" in result.output


def test_cli_errors_are_one_line_under_the_segkit_group(tmp_path, mirror):
    @click.group(cls=SegkitGroup)
    def root():
        pass

    root.add_command(data)
    wrong = ["--md5", f"images.tar.gz={'1' * 32}", "--md5", f"annotations.tar.gz={'2' * 32}"]
    result = CliRunner().invoke(
        root,
        ["data", "download", "oxford-pet", str(tmp_path / "pets"), "--base-url", mirror.as_uri(), *wrong],
    )
    assert result.exit_code == 1
    assert "Error: checksum mismatch for file://" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "member",
    [
        ("file", "../escaped.txt", "gotcha"),
        ("symlink", "images/link.jpg", "../../escaped.txt"),
        ("hardlink", "images/link.jpg", "/etc/passwd"),
    ],
    ids=["path-traversal", "symlink-outside", "hardlink-outside"],
)
def test_data_download_refuses_escaping_members_as_one_line(tmp_path, member):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tar_with_members(mirror / "images.tar.gz", [("dir", "images", ""), ("file", "images/a.jpg", "x"), member])
    tar_with_members(mirror / "annotations.tar.gz", [("file", "annotations/trainval.txt", "a 1 1 1\n")])
    md5 = [
        f"{name}={hashlib.md5((mirror / name).read_bytes()).hexdigest()}"
        for name in ("images.tar.gz", "annotations.tar.gz")
    ]
    target = tmp_path / "deep" / "pets"
    result = invoke(
        "data",
        "download",
        "oxford-pet",
        target,
        "--base-url",
        mirror.as_uri(),
        "--md5",
        md5[0],
        "--md5",
        md5[1],
    )
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "refusing to extract" in line and member[1].split("/")[-1] in line, line
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (target / "images").exists()
