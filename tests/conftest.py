"""Shared pytest fixtures and hooks. Tests run on the CPU with one thread: the models in tests are
tiny, where more threads only add overhead, and an oversubscribed machine slows several-fold with two.

- **The CPU only**, unless a test is marked ``gpu``: for every other test torch sees no CUDA or MPS
  device, so ``--device auto`` means the CPU on any machine (``tiny_run`` and ``run_cli`` also pass
  ``--device cpu``). ``gpu``-marked tests see the real devices and skip, saying so, without CUDA.
- **Skips that must not happen**: with ``CI`` set (or ``--fail-on-unexpected-skip``) the run fails
  when a test skips for any reason but the allowed ones (``allowed_skip``): the real Oxford-IIIT Pet
  sample absent because ``../shared`` is, a ``gpu`` test on a machine without CUDA, or Chromium
  missing for the report page's browser test, outside CI only (.ci/run installs it).
- The fixtures that train a model are session-scoped: each trains once, for every file that uses it.

Plain helpers are in fixtures.py, generated files and datasets in data_fixtures.py.
"""

from __future__ import annotations

import functools
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

# CI draws new examples each run, as a developer's machine does (a fixed derandomized set would test the
# same 30 examples forever); a failure prints the ``@reproduce_failure`` line that replays it exactly.
settings.register_profile("default", deadline=None, max_examples=30)
settings.register_profile("ci", deadline=None, max_examples=30, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# -- the CPU only, unless a test is marked gpu ------------------------------------------------------------

#: What torch says before the suite hides the accelerators from tests that are not gpu-marked.
CUDA_AVAILABLE = torch.cuda.is_available()
_REAL_CUDA_IS_AVAILABLE = torch.cuda.is_available
_REAL_MPS_IS_AVAILABLE = torch.backends.mps.is_available
NO_GPU_REASON = "gpu-marked: needs a CUDA GPU, and torch sees none here"


@pytest.fixture(scope="session", autouse=True)
def cpu_only():
    """torch sees no CUDA or MPS device for the whole session (gpu-marked tests excepted, see
    ``real_devices_for_gpu_tests``), so nothing in the default suite trains or infers elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", _no_device)
        patch.setattr(torch.backends.mps, "is_available", _no_device)
        yield


@pytest.fixture(scope="session", autouse=True)
def data_caches_in_tmp(tmp_path_factory):
    """Dataset caches (file index, fingerprint: ``segkit.data.data_cache``) go to a session folder, not
    beside the data: tests must not write into ../shared's sample. Tests of the beside-the-data
    default unset ``SEGKIT_CACHE_DIR`` themselves. Subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGKIT_CACHE_DIR", str(tmp_path_factory.mktemp("segkit-cache")))
        yield


@functools.cache  # as torch's own is_available functions are (torch._dynamo looks for __wrapped__)
def _no_device() -> bool:
    return False


@pytest.fixture(autouse=True)
def real_devices_for_gpu_tests(request, monkeypatch):
    if request.node.get_closest_marker("gpu") is not None:
        monkeypatch.setattr(torch.cuda, "is_available", _REAL_CUDA_IS_AVAILABLE)
        monkeypatch.setattr(torch.backends.mps, "is_available", _REAL_MPS_IS_AVAILABLE)
    yield


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not CUDA_AVAILABLE:
        pytest.skip(NO_GPU_REASON)


# -- skips that must not happen in CI ---------------------------------------------------------------------

#: Beside the checkout: holds the real data sample where a machine has it.
SHARED = REAL_SAMPLE.parents[1]
REAL_SAMPLE_REASON = "real sample not found at"


def pytest_addoption(parser):
    parser.addoption(
        "--fail-on-unexpected-skip",
        action="store_true",
        default=False,
        help="fail the run when a test skips for a reason other than the allowed ones (on when CI is set)",
    )


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def allowed_skip(reason: str, keywords) -> bool:
    """Whether a skip is one this machine may have: the real sample's tests where ``../shared`` is
    absent (not where it is present but incomplete), gpu-marked tests where there is no CUDA, and
    the browser test without Chromium, but not in CI (where .ci/run installs it)."""
    if reason.startswith(REAL_SAMPLE_REASON):
        return not SHARED.exists()
    if reason == NO_CHROMIUM_REASON:
        return not _ci()
    return "gpu" in keywords and reason == NO_GPU_REASON and not CUDA_AVAILABLE


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


#: (test id, reason) of every skip this session that ``allowed_skip`` does not allow.
_UNEXPECTED: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and not getattr(report, "wasxfail", None):
        reason = _skip_reason(report)
        if not allowed_skip(reason, report.keywords):
            _UNEXPECTED.append((report.nodeid, reason))


def _checking(config) -> bool:
    return config.getoption("--fail-on-unexpected-skip") or _ci()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _UNEXPECTED and _checking(config):
        terminalreporter.section("unexpected skips", sep="=", red=True, bold=True)
        for nodeid, reason in _UNEXPECTED:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(
            f"{len(_UNEXPECTED)} test(s) skipped for a reason that is not allowed here; the run fails "
            "(allowed: the real sample absent with ../shared, gpu-marked tests without CUDA, Chromium "
            "missing outside CI)"
        )


def pytest_sessionfinish(session, exitstatus):
    if _UNEXPECTED and _checking(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def real_sample() -> Path:
    """The real Oxford-IIIT Pet sample beside the checkout; tests using it skip where it is absent."""
    if not (REAL_SAMPLE / "annotations" / "trainval.txt").is_file():
        pytest.skip(f"{REAL_SAMPLE_REASON} {REAL_SAMPLE}")
    return REAL_SAMPLE


#: Why the report page's browser test skips: allowed outside CI only (.ci/run installs Chromium).
NO_CHROMIUM_REASON = (
    "chromium not found on PATH: install it (Debian/Ubuntu: apt-get install -y chromium) to open the "
    "report page in a real headless browser"
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium``, Ubuntu's ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> str:
    """The Chromium executable; the test skips, saying how to install it, where there is none."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(NO_CHROMIUM_REASON)
    return executable


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
