"""``segkit.progress``: one rule for every progress bar segkit draws (commands and notebooks): quiet ->
none; a Jupyter kernel -> drawn; stderr a terminal -> drawn; stderr redirected to a file -> none."""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
from fixtures import run_cli
from PIL import Image

import segkit.progress
from segkit.data.download import Archive, RemoteDataset, download_dataset
from segkit.progress import progress, show_progress

SEGKIT = Path(segkit.progress.__file__).parent
#: Modules of other owners that still make their own bars; each is a one-line change to ``progress``.
NOT_YET_SWITCHED: set[str] = set()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as a real stream's isatty does
        return True


class Shell:
    def __init__(self, *apps: str) -> None:
        self.config = {app: {} for app in apps}


def fake_ipython(shell: Shell | None) -> types.ModuleType:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell
    return module


@pytest.fixture
def stderr(monkeypatch):
    """Sets what stderr is: ``stderr("terminal")``, ``stderr("file")``; returns the stream."""

    def use(kind: str) -> io.StringIO:
        stream = Terminal() if kind == "terminal" else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    return use


@pytest.mark.parametrize(
    ("quiet", "shell", "stream", "drawn"),
    [
        (False, None, "terminal", True),
        (False, None, "file", False),
        (True, None, "terminal", False),
        (False, Shell("IPKernelApp"), "file", True),  # a notebook: its stderr is not a terminal
        (True, Shell("IPKernelApp"), "file", False),
        (False, Shell("TerminalIPythonApp"), "file", False),  # IPython in a terminal, stderr redirected
        (False, Shell("TerminalIPythonApp"), "terminal", True),
    ],
)
def test_the_rule(monkeypatch, stderr, quiet, shell, stream, drawn):
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython(shell))
    written = stderr(stream)
    assert show_progress(quiet) is drawn
    assert list(progress(range(3), quiet=quiet, desc="counting")) == [0, 1, 2]  # iterates either way
    assert ("counting" in written.getvalue()) is drawn


def test_no_ipython_imported_is_not_a_notebook(monkeypatch, stderr):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    stderr("file")
    assert not show_progress()


def test_a_closed_stderr_draws_nothing(monkeypatch):
    closed = Terminal()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert not show_progress()


def test_a_notebook_without_ipywidgets_gets_a_text_bar_not_an_error(monkeypatch, stderr):
    """tqdm.auto's notebook bar raises "IProgress not found" without ipywidgets (the test extra does
    not bring it): the bar is then drawn as text."""
    import tqdm.auto
    import tqdm.notebook

    monkeypatch.setitem(sys.modules, "IPython", fake_ipython(Shell("IPKernelApp")))
    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.notebook.tqdm)  # what tqdm.auto is, imported in a kernel
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "ipywidgets" else 1)
    written = stderr("file")
    assert list(progress(range(2), desc="cells")) == [0, 1]
    assert "cells" in written.getvalue()


def test_every_bar_is_made_by_the_helper():
    """No segkit module but ``segkit/progress.py`` imports tqdm, so no command has a rule of its own."""
    own = {
        path.relative_to(SEGKIT).as_posix()
        for path in SEGKIT.rglob("*.py")
        if re.search(r"^\s*(from tqdm|import tqdm)", path.read_text(), re.MULTILINE)
    }
    assert own - NOT_YET_SWITCHED == {"progress.py"}


def two_photos(folder: Path) -> Path:
    folder.mkdir()
    for index in range(2):
        Image.fromarray(np.full((20, 24, 3), 60 * index, np.uint8)).save(folder / f"p{index}.png")
    return folder


@pytest.mark.parametrize(("terminal", "drawn"), [(False, False), (True, True)])
def test_predict_follows_the_rule(tiny_checkpoint, tmp_path, monkeypatch, terminal, drawn):
    """predict drew its bar whenever there were two files, on a redirected stderr too."""
    monkeypatch.setattr(segkit.progress, "stderr_is_terminal", lambda: terminal)
    result = run_cli("predict", tiny_checkpoint, two_photos(tmp_path / "in"), "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert ("predict: 100%" in result.stderr) is drawn


@pytest.mark.parametrize(("terminal", "drawn"), [(False, False), (True, True)])
def test_download_follows_the_rule(tmp_path, monkeypatch, capsys, terminal, drawn):
    """download's copy bar was plain tqdm: drawn into a redirected stderr too."""
    source = tmp_path / "source" / "images"
    source.mkdir(parents=True)
    (source / "a.txt").write_text("a")
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="images")
    monkeypatch.setattr(segkit.progress, "stderr_is_terminal", lambda: terminal)
    archive = Archive("images.tar.gz", hashlib.md5((tmp_path / "images.tar.gz").read_bytes()).hexdigest())
    dataset = RemoteDataset("tiny", tmp_path.as_uri(), (archive,), "SEGKIT_TINY_URL", ("images",), "folder")
    download_dataset(dataset, tmp_path / "target", log=lambda message: None)
    assert (tmp_path / "target" / "images" / "a.txt").is_file()
    assert ("images.tar.gz" in capsys.readouterr().err) is drawn
