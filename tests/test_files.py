"""segkit.atomic_files: the one atomic-write helper (checkpoints, export, recorders, run files)."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from segkit.atomic_files import atomic_replace, atomic_write, atomic_write_text

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(previous)


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_writes_bytes_and_text_and_replaces_an_existing_file(tmp_path):
    path = tmp_path / "notes.json"
    atomic_write(path, lambda handle: handle.write(b"first"))
    assert path.read_bytes() == b"first"
    atomic_write_text(path, "second, with \u00e9")
    assert path.read_text(encoding="utf-8") == "second, with \u00e9"
    assert leftovers(tmp_path) == []


@posix_only
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_file_gets_the_permissions_the_umask_gives_a_new_file(tmp_path, umask, mask, mode):
    umask(mask)
    path = tmp_path / "metrics.csv"
    atomic_write_text(path, "a,b\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    with atomic_replace(tmp_path / "model.onnx") as temp:
        temp.write_bytes(b"onnx")
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == mode


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_a_failing_write_leaves_the_old_file_and_no_temp_file(tmp_path, error):
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")

    def write(handle):
        handle.write(b"half")
        raise error

    with pytest.raises(error):
        atomic_write(path, write)
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_failing_replace_block_leaves_no_temp_file(tmp_path):
    with pytest.raises(Boom):
        with atomic_replace(tmp_path / "model.onnx") as temp:
            temp.write_bytes(b"half")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_a_failing_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def refuse(source, destination):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        atomic_write_text(tmp_path / "a.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_the_temp_file_sits_beside_the_target_and_is_hidden(tmp_path):
    seen = []
    with atomic_replace(tmp_path / "best.torchscript.pt", suffix=".tmp") as temp:
        seen.append(temp)
        temp.write_bytes(b"x")
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".best.torchscript.pt.")
    assert seen[0].suffix == ".tmp" and not seen[0].exists()


@posix_only
def test_every_file_a_run_evaluation_and_export_write_gets_the_umask_permissions(tmp_path, umask):
    """Through the CLI: with umask 002 (a shared server's group-writable setting) every file is 0664,
    not mkstemp's owner-only 0600."""
    from fixtures import invoke, only_run_dir, tiny_run

    umask(0o002)
    args = tiny_run(batch_size=2, epochs=1, train_size=4, valid_size=2)
    assert invoke("run", *args, "--out", tmp_path / "runs").exit_code == 0
    run_dir = only_run_dir(tmp_path / "runs")
    result = invoke("evaluate", run_dir, "--split", "valid", "--no-boundary", "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = invoke("export", run_dir, "-o", tmp_path / "model.pt", "--no-check")
    assert result.exit_code == 0, result.output
    written = [*run_dir.rglob("*"), tmp_path / "model.pt", tmp_path / "model.pt.json"]
    files = [path for path in written if path.is_file()]
    names = {path.name for path in files}
    assert {"best.pt", "last.pt", "config.json", "metrics.csv", "summary.json", "model.pt"} <= names
    assert "model_performance.xlsx" in names
    modes = {str(path.relative_to(tmp_path)): oct(stat.S_IMODE(path.stat().st_mode)) for path in files}
    assert set(modes.values()) == {"0o664"}, modes
