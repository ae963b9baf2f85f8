"""Shared fixtures. Tests run on the CPU with one thread: the models in tests are tiny, where more
threads only add overhead, and an oversubscribed machine slows several-fold with two."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("default", deadline=None, max_examples=30)
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "oxford-iiit-pet-mini"


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
