"""``--time-budget`` (segkit.engine.budget): a step is begun only when it, and the validation after it,
should still end within the budget; progress, and so schedules and progressive resizing, follow the
budget spent; and a run resumed under a budget continues as the uninterrupted one would have.

A fake clock makes time exact: each training step takes ``STEP_S`` seconds and each validation
``VALIDATION_S``, whatever the machine.
"""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from fixtures import only_run_dir, run_cli, tiny_run

import segkit
import segkit.engine.budget as budget
import segkit.engine.step as step
import segkit.engine.trainer as trainer
import segkit.engine.validation as validation
from segkit.callbacks import Callback
from segkit.checkpoint_files import load_checkpoint
from segkit.engine.budget import RunClock
from segkit.plugins import get_host

STEP_S = 10.0
VALIDATION_S = 25.0
#: 32 training images in batches of 8: four steps an epoch.
TINY = tiny_run(loss="bce_dice", batch_size=8, train_size=32, valid_size=16, callbacks=("csv",))
STEPS_PER_EPOCH = 4


def install_fake_clock(patch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Seconds pass only as the run works: STEP_S per training step, VALIDATION_S per validation."""
    clock = SimpleNamespace(now=0.0)
    fake_time = SimpleNamespace(monotonic=lambda: clock.now)
    patch.setattr(budget, "time", fake_time)
    patch.setattr(trainer, "time", fake_time)  # epoch times and the validation's duration
    real_compute_loss, real_evaluate = step.compute_loss, validation.evaluate_loader

    def training_step_loss(*args, **kwargs):
        if torch.is_grad_enabled():  # training steps, not validation
            clock.now += STEP_S
        return real_compute_loss(*args, **kwargs)

    def slow_validation(*args, **kwargs):
        clock.now += VALIDATION_S
        return real_evaluate(*args, **kwargs)

    patch.setattr(step, "compute_loss", training_step_loss)
    patch.setattr(validation, "evaluate_loader", slow_validation)
    return clock


@pytest.fixture
def fake_clock(monkeypatch):
    return install_fake_clock(monkeypatch)


# -- the rule -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget_s, steps",
    [
        # Epoch 1: four steps end at 40 s, validation at 65 s. A fifth step would end at 75 s and
        # its validation at 100 s: begun under a 100 s budget, not under 95 s (where a rule that
        # forgot the validation would begin three more steps and validate until 120 s).
        (95, 4),
        (100, 5),
    ],
)
def test_a_step_is_begun_only_if_it_and_the_validation_after_it_fit(tmp_path, fake_clock, budget_s, steps):
    result = run_cli("run", *TINY, "--epochs", "50", "--time-budget", f"{budget_s}s", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "time budget" in result.output
    last = load_checkpoint(only_run_dir(tmp_path) / "last.pt")
    assert last["schedule_state"]["step"] == steps
    assert fake_clock.now <= budget_s, "the run, validation included, must end within the budget"
    assert last["schedule_state"]["elapsed_s"] <= budget_s


def test_the_clock_counts_the_last_validation_and_the_time_before_a_resume(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: now[0]))
    clock = RunClock(total_steps=10, budget_s=60, elapsed_before=20)
    assert clock.elapsed() == 20 and clock.progress(0) == pytest.approx(20 / 60)
    assert clock.next_step_fits()  # no step timed yet: 20 + 0 + 0 <= 60
    now[0] += 10
    assert clock.next_step_fits()  # 30 + 10 (the step before) <= 60
    clock.validation_seconds = 25
    now[0] += 10
    assert not clock.next_step_fits()  # 40 + 10 + 25 > 60 (without the validation: 50, it would fit)
    assert clock.progress(5) == pytest.approx(max(5 / 10, 40 / 60))
    assert RunClock(total_steps=10, budget_s=None).next_step_fits()


# -- resuming under a budget, with progressive resizing --------------------------------------------------


class InterruptAfterEpoch(Callback):
    """Ctrl-C once epoch ``epoch`` is checkpointed (set by the test: a callback option would be
    recorded in the run, and refused when the resumed run no longer has this callback)."""

    epoch = 0

    def on_epoch_end(self, context, metrics):
        if metrics["epoch"] == InterruptAfterEpoch.epoch:
            raise KeyboardInterrupt


class InterruptPlugin:
    @segkit.hookimpl
    def register_callbacks(self, register):
        register("interrupt_after", lambda run_dir: InterruptAfterEpoch(), description="test: Ctrl-C")


def records(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


#: Progressive sizes 16 then 24 then 32 over a 280 s budget: stages change at 93 s and 187 s of
#: training, so each size trains for an epoch or more; the budget, not the 50 epochs, ends the run.
BUDGETED = [*TINY, "--epochs", "50", "--time-budget", "280s", "--progressive-sizes", "16,24,32"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted budgeted run: (its records, its last.pt, the fake time it ended at)."""
    with pytest.MonkeyPatch.context() as patch:
        clock = install_fake_clock(patch)
        out = tmp_path_factory.mktemp("straight")
        result = run_cli("run", *BUDGETED, "--out", out)
        assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    return records(run_dir), load_checkpoint(run_dir / "last.pt"), clock.now


def test_the_budget_ends_the_run_and_every_stage_trains(straight_run):
    """Epochs of 4 steps (40 s) and a validation (25 s): epochs 1 and 2 at size 16 (progress below
    1/3 of 280 s), epoch 3 at 24, epoch 4 at 32; a fifth would end past 280 s."""
    expected, last, end = straight_run
    assert [int(row["train_image_size"]) for row in expected] == [16, 16, 24, 32]
    assert last["schedule_state"]["step"] == 4 * STEPS_PER_EPOCH
    assert end == 260 <= 280


@pytest.mark.parametrize(
    "interrupt_after",
    [
        2,  # the next epoch starts a new stage (24)
        3,  # ... and the last one (32)
        # Epoch 4 ends at 260 s, where a fifth epoch no longer fits (260 + 10 + 25 > 280); a resumed
        # run must know what a step and a validation take (the checkpoint saves the estimates), or
        # it begins two steps and validates until 305 s.
        4,
    ],
)
def test_a_run_resumed_under_a_budget_continues_as_the_uninterrupted_one(
    tmp_path, fake_clock, straight_run, interrupt_after
):
    expected, straight_last, _ = straight_run
    interrupted = tmp_path / "interrupted"
    host = get_host()
    host.register_plugin(InterruptPlugin(), "interrupt-plugin", "tests")
    InterruptAfterEpoch.epoch = interrupt_after
    try:
        result = run_cli("run", *BUDGETED, "--out", interrupted, "--callback", "interrupt_after")
    finally:
        host.unregister_plugin("interrupt-plugin")
    assert result.exit_code == 130, result.output
    run_dir = only_run_dir(interrupted)
    fake_clock.now += 1000.0  # the pause before the resume is no training time
    resumed = run_cli("run", "--resume", run_dir, "--callback", "csv")
    assert resumed.exit_code == 0, resumed.output
    assert "time budget" in resumed.output

    got = records(run_dir)
    assert [row["epoch"] for row in got] == [row["epoch"] for row in expected]
    assert [row["train_image_size"] for row in got] == [row["train_image_size"] for row in expected]
    for key in ("train_loss", "valid_loss", "valid_dice", "lr"):
        assert [float(row[key]) for row in got] == pytest.approx(
            [float(r[key]) for r in expected], rel=1e-5
        ), key
    resumed_last = load_checkpoint(run_dir / "last.pt")
    assert resumed_last["schedule_state"] == pytest.approx(straight_last["schedule_state"])
    assert resumed_last["schedule_state"]["elapsed_s"] <= 280
