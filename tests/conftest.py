"""Shared pytest fixtures. Tests run on the CPU with one thread: the models in tests are tiny, where
more threads only add overhead, and an oversubscribed machine slows several-fold with two.

The fixtures that train a model are session-scoped: each trains once, for every file that uses it.
Plain helpers are in fixtures.py, generated files and datasets in data_fixtures.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from data_fixtures import REAL_SAMPLE, write_oxford_layout
from fixtures import EVIL_MODULE, PETS_SIZE, PETS_TEST_NAMES, invoke, only_run_dir, run_cli, tiny_run
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("default", deadline=None, max_examples=30)
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def real_sample() -> Path:
    """The real Oxford-IIIT Pet sample beside the checkout; tests using it skip where it is absent."""
    if not (REAL_SAMPLE / "annotations" / "trainval.txt").is_file():
        pytest.skip(f"real sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


@pytest.fixture
def fresh_host(monkeypatch):
    """A process-wide plugin host rebuilt for this test, and forgotten after it."""
    from segkit import plugins

    plugins.reset_host()
    yield plugins.get_host
    plugins.reset_host()


@pytest.fixture
def regular_file(tmp_path) -> Path:
    """Tests run as root, which chmod cannot stop: a path under a regular file is unwritable for anyone."""
    path = tmp_path / "a-file"
    path.write_text("occupied")
    return path


@pytest.fixture
def evil_module(tmp_path, monkeypatch) -> Path:
    """An importable module on sys.path that leaves a marker when imported; the test fails if segkit
    imported it."""
    marker = tmp_path / "imported"
    package = tmp_path / "on_path"
    package.mkdir()
    (package / f"{EVIL_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def build(**options):\n    raise SystemExit('factory ran')\n"
    )
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, EVIL_MODULE, raising=False)
    yield marker
    assert not marker.exists(), f"segkit imported {EVIL_MODULE}"
    assert EVIL_MODULE not in sys.modules


# -- runs trained once per session (synthetic data) ----------------------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """best.pt of a tiny model trained on synthetic data, for evaluate and predict."""
    out = tmp_path_factory.mktemp("trained")
    args = tiny_run(train_size=4, valid_size=2, batch_size=2, epochs=1, callbacks=("csv",))
    result = invoke("run", *args, "--out", out)
    assert result.exit_code == 0, result.output
    return only_run_dir(out) / "best.pt"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The run folder of a one-epoch tiny run, for tests that tamper with a copy of its files."""
    out = tmp_path_factory.mktemp("trained")
    args = tiny_run(batch_size=4, train_size=4, valid_size=2, epochs=1, callbacks=("csv",))
    result = invoke("run", *args, "--out", out)
    assert result.exit_code == 0, result.output
    return only_run_dir(out)


@pytest.fixture
def copy_of_run(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


# -- runs trained once per session on a tiny Oxford-IIIT Pet layout -------------------------------------


@pytest.fixture(scope="session")
def tiny_pets(tmp_path_factory) -> Path:
    """20 trainval and 6 test pictures (``PETS_TEST_NAMES``) of ``PETS_SIZE`` in the official layout."""
    return write_oxford_layout(
        tmp_path_factory.mktemp("pets"), [f"dog_{i}" for i in range(20)], PETS_TEST_NAMES, size=PETS_SIZE
    )


def train_on_pets(root: Path, out: Path, *extra: str) -> Path:
    args = tiny_run(batch_size=6, epochs=2, dataset="oxford_pet", data_path=root, augment="none")
    result = run_cli("run", *args, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return only_run_dir(out)


@pytest.fixture(scope="session")
def pets_run(tiny_pets, tmp_path_factory) -> tuple[Path, Path]:
    """(the tiny_pets root, the folder of a two-epoch run on it)."""
    return tiny_pets, train_on_pets(tiny_pets, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def pets_run_with_inference_choices(tiny_pets, tmp_path_factory) -> tuple[Path, Path]:
    """Like ``pets_run``, but the run's recipe chose flip TTA, both clean-ups and a calibrated threshold."""
    choices = ("--tta", "--fill-holes", "--keep-largest", "--calibrate-threshold", "--ema-decay", "0.9")
    return tiny_pets, train_on_pets(tiny_pets, tmp_path_factory.mktemp("runs"), *choices)
