"""The suite's own guard (conftest.py): with ``CI`` set, a test that skips for a reason this machine
may not have fails the run; the reasons it may have are the real sample absent along with
``../shared``, gpu-marked tests without CUDA, and Chromium missing outside CI. The probes below
skip only when the meta-test runs them (``SEGKIT_SKIP_PROBE`` set), in a pytest of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

PROBE = "SEGKIT_SKIP_PROBE"
REPOSITORY = Path(__file__).resolve().parents[1]


def test_probe_skips_for_no_good_reason():
    if os.environ.get(PROBE):
        pytest.skip("probe: a dependency went missing")


@pytest.mark.gpu
def test_probe_needs_a_gpu():
    pass


def test_probe_finds_no_chromium(monkeypatch, request):
    if os.environ.get(PROBE):
        monkeypatch.setenv("PATH", "")
        request.getfixturevalue("chromium")  # skips: no Chromium on an empty PATH


def test_an_unexpected_skip_fails_the_ci_run():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"{__file__}", "-k", "probe"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={**os.environ, "CI": "true", PROBE: "1"},
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # pytest's "tests failed", though none failed
    # -ra (addopts) prints every skip with its reason; the guard lists the unexpected ones.
    assert "SKIPPED" in output and "probe: a dependency went missing" in output
    section = output[output.index("unexpected skips") :]
    assert "test_probe_skips_for_no_good_reason: probe: a dependency went missing" in section
    assert "test_probe_needs_a_gpu" not in section  # allowed wherever torch sees no GPU (it passes on one)
    assert f"test_probe_finds_no_chromium: {conftest.NO_CHROMIUM_REASON}" in section  # CI installs it


def test_allowed_skips(monkeypatch, tmp_path):
    sample_missing = f"{conftest.REAL_SAMPLE_REASON} /somewhere/oxford-iiit-pet-mini"
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "absent")
    assert conftest.allowed_skip(sample_missing, {})
    monkeypatch.setattr(conftest, "SHARED", tmp_path)  # ../shared is there: the sample must be too
    assert not conftest.allowed_skip(sample_missing, {})
    monkeypatch.setattr(conftest, "CUDA_AVAILABLE", False)
    assert conftest.allowed_skip(conftest.NO_GPU_REASON, {"gpu": 1})
    assert not conftest.allowed_skip(conftest.NO_GPU_REASON, {})  # the reason, but not a gpu test
    assert not conftest.allowed_skip("could not import 'onnx': No module named 'onnx'", {"gpu": 1})
    monkeypatch.setattr(conftest, "CUDA_AVAILABLE", True)
    assert not conftest.allowed_skip(conftest.NO_GPU_REASON, {"gpu": 1})
    # Chromium missing: allowed on a developer's machine, a failure in CI (.ci/run installs it).
    monkeypatch.delenv("CI", raising=False)
    assert conftest.allowed_skip(conftest.NO_CHROMIUM_REASON, {})
    monkeypatch.setenv("CI", "true")
    assert not conftest.allowed_skip(conftest.NO_CHROMIUM_REASON, {})
    assert not conftest.allowed_skip("chromium crashed", {})
