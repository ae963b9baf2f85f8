"""Learning-rate schedules and progressive resizing as functions of run progress."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segkit.engine.schedule import learning_rate_factor, train_image_size
from segkit.errors import UsageError

progress = st.floats(0.0, 1.0)
warmups = st.sampled_from([0.0, 0.05, 0.1, 0.3])


@given(schedule=st.sampled_from(["none", "cosine", "onecycle"]), p=st.floats(-1, 2), warmup=warmups)
def test_the_factor_stays_between_one_percent_and_one(schedule, p, warmup):
    assert 0.01 <= learning_rate_factor(schedule, p, warmup) <= 1.0


@given(schedule=st.sampled_from(["cosine", "onecycle"]), a=progress, b=progress, warmup=warmups)
def test_warmup_rises_then_the_cosine_falls(schedule, a, b, warmup):
    a, b = sorted((a, b))
    end_of_warmup = warmup or (0.3 if schedule == "onecycle" else 0.0)
    fa, fb = learning_rate_factor(schedule, a, warmup), learning_rate_factor(schedule, b, warmup)
    if b <= end_of_warmup:
        assert fa <= fb
    elif a >= end_of_warmup:
        assert fa >= fb


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_cosine_ends_at_one_percent_and_peaks_after_warmup(schedule):
    assert learning_rate_factor(schedule, 1.0, 0.1) == pytest.approx(0.01)
    assert learning_rate_factor(schedule, 0.1, 0.1) == pytest.approx(1.0)


def test_constant_schedule_is_constant_after_warmup():
    assert learning_rate_factor("none", 0.05, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor("none", 0.7, 0.1) == 1.0


def test_an_unknown_schedule_is_a_usage_error():
    with pytest.raises(UsageError, match="--scheduler"):
        learning_rate_factor("linear", 0.5)


sizes_lists = st.lists(st.integers(8, 512), min_size=1, max_size=5)


@given(stages=st.integers(1, 6), final=st.integers(8, 512))
def test_each_size_trains_for_an_equal_share_of_progress(stages, final):
    sizes = [100 + 10 * stage for stage in range(stages)]
    points = [step / 1000 for step in range(1000)]
    seen = [train_image_size(sizes, final, p) for p in points]
    for size in sizes:
        assert seen.count(size) / len(points) == pytest.approx(1 / stages, abs=2e-3)
    assert seen == sorted(seen)  # in the order given
    assert train_image_size(sizes, final, 1.0) == sizes[-1]


@given(sizes=sizes_lists, final=st.integers(8, 512), p=st.floats(-1, 2))
def test_progress_outside_zero_one_is_clipped(sizes, final, p):
    clipped = min(max(p, 0.0), 1.0)
    assert train_image_size(sizes, final, p) == train_image_size(sizes, final, clipped)


@given(sizes=sizes_lists.map(sorted), final=st.integers(8, 512), a=progress, b=progress)
def test_growing_sizes_never_shrink_as_the_run_goes_on(sizes, final, a, b):
    a, b = sorted((a, b))
    assert train_image_size(sizes, final, a) <= train_image_size(sizes, final, b)


@given(final=st.integers(1, 1024), p=st.floats(-1, 2))
def test_without_sizes_every_epoch_trains_at_the_final_size(final, p):
    assert train_image_size([], final, p) == final
