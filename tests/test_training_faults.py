"""Training faults: non-finite losses and weights, Ctrl-C, a full disk, SIGKILL, and runs sharing an
output root.

Faults are injected the way a plugin would cause them: ``faulty_bce``, an inline loss plugin
registered on the process-wide host for the test (unregistered in ``finally``), computes BCE but
returns NaN/inf, poisons the gradients, or sends the process SIGINT at chosen training steps. Steps
count training calls of one loss object from 1 (validation calls do not count); with
``--batch-size 4`` and 8 training images an epoch is 2 steps, so steps 3 and 4 are epoch 2.

SIGKILL and real-signal tests run ``segkit run`` in a subprocess through a small runner that
instruments ``atomic_write`` (marker files say when a write is under way or done, and the targeted
write pauses halfway) so that a kill lands *during* or *between* checkpoint writes for sure; they are
marked ``slow`` (each process spends seconds importing torch). A full disk is a checkpoint write that
fails halfway with ENOSPC.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from fixtures import error_line, expect_named_failure, invoke, only_run_dir, tiny_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

import segkit
from segkit.checkpoint_files import load_checkpoint
from segkit.config import run_folder as rundir
from segkit.plugins import get_host

STEPS_PER_EPOCH = 2
TINY = tiny_run(batch_size=4, train_size=8, valid_size=4, callbacks=("csv",), seed=3)
FAULTY = [*TINY, "--loss", "faulty_bce"]

#: Steps (of the current loss object) at which ``faulty_bce`` sends its own process SIGINT; set by tests.
SIGINT_AT_STEPS: set[int] = set()


class _PoisonGradient(torch.autograd.Function):
    """Identity forward; NaN gradients backward (what an overflow deep in a network produces)."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, gradient):
        return torch.full_like(gradient, math.nan)


class FaultyBCE(torch.nn.Module):
    """BCE with logits, with faults at chosen training steps.

    ``bad_steps``: steps whose loss is ``value`` ("nan", "inf", "-inf"); ``from_step``: every step
    from this one on is bad too; ``fault="gradient"`` keeps the loss finite but makes its gradients NaN.
    """

    def __init__(self, bad_steps=(), from_step=None, value="nan", fault="loss"):
        super().__init__()
        self.bad_steps = set(bad_steps)
        self.from_step = from_step
        self.value = float(value)
        self.fault = fault
        self.step = 0

    def forward(self, logits, target, ignore=None):
        loss = F.binary_cross_entropy_with_logits(logits, target)
        if not logits.requires_grad:  # validation
            return loss
        self.step += 1
        if self.step in SIGINT_AT_STEPS:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here, as for Ctrl-C
        if self.step not in self.bad_steps and (self.from_step is None or self.step < self.from_step):
            return loss
        if self.fault == "gradient":
            return _PoisonGradient.apply(loss)
        return loss + self.value


class FaultyLossPlugin:
    @segkit.hookimpl
    def register_losses(self, register):
        register("faulty_bce", FaultyBCE, description="test: BCE with injected faults")


@pytest.fixture(scope="module")
def faulty_loss():
    host = get_host()
    host.register_plugin(FaultyLossPlugin(), "faulty-loss-test", "tests")
    try:
        yield "faulty_bce"
    finally:
        host.unregister_plugin("faulty-loss-test")
        SIGINT_AT_STEPS.clear()


def finite(payload: dict) -> bool:
    return all(
        torch.isfinite(value).all() for value in payload["model_state"].values() if value.is_floating_point()
    )


def recorded_epochs(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- non-finite losses and weights ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_loss_stops_the_run_with_the_last_good_checkpoint_intact(tmp_path, faulty_loss, value):
    bad_step = STEPS_PER_EPOCH + 2  # the second step of epoch 2
    result = invoke(
        "run",
        *FAULTY,
        "--epochs",
        "3",
        "--loss-option",
        f"from_step={bad_step}",
        "--loss-option",
        f"value={value}",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 1, result.output
    assert error_line(result) == (
        f"Error: the training loss became {value} at step 2 of this epoch; stopping with the last good "
        "checkpoint intact (lower --learning-rate, or pass --on-nan skip to skip such steps)"
    )
    run_dir = only_run_dir(tmp_path)
    for name in ("last.pt", "best.pt"):
        payload = load_checkpoint(run_dir / name)
        assert payload["epoch"] == 1 and finite(payload), name
    assert [row["epoch"] for row in recorded_epochs(run_dir)] == ["1"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_steps=st.sets(st.integers(1, 3 * STEPS_PER_EPOCH)), value=st.sampled_from(["nan", "inf", "-inf"]))
def test_on_nan_skip_skips_and_counts_exactly_the_bad_steps(tmp_path_factory, faulty_loss, bad_steps, value):
    out = tmp_path_factory.mktemp("skip")
    result = invoke(
        "run",
        *FAULTY,
        "--epochs",
        "3",
        "--on-nan",
        "skip",
        "--loss-option",
        f"bad_steps={sorted(bad_steps)}".replace(" ", ""),
        "--loss-option",
        f"value={value}",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    rows = recorded_epochs(run_dir)
    for epoch, row in enumerate(rows, start=1):
        steps = range((epoch - 1) * STEPS_PER_EPOCH + 1, epoch * STEPS_PER_EPOCH + 1)
        skipped = sum(step in bad_steps for step in steps)
        assert int(row["skipped_steps"]) == skipped, (epoch, row)
        if skipped == STEPS_PER_EPOCH:  # nothing trained: no loss to report, and certainly not 0
            assert math.isnan(float(row["train_loss"])), row
        else:
            assert math.isfinite(float(row["train_loss"])) and float(row["train_loss"]) > 0, row
    assert len(rows) == 3
    for name in ("last.pt", "best.pt"):
        assert finite(load_checkpoint(run_dir / name)), name


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_non_finite_weights_never_reach_a_checkpoint(tmp_path, faulty_loss, on_nan):
    """A finite loss with NaN gradients in the last step of epoch 2 poisons the weights: the run stops
    before writing them, and best.pt and last.pt keep epoch 1."""
    result = invoke(
        "run",
        *FAULTY,
        "--epochs",
        "3",
        "--on-nan",
        on_nan,
        "--loss-option",
        "fault=gradient",
        "--loss-option",
        f"bad_steps=[{2 * STEPS_PER_EPOCH}]",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 1, result.output
    assert (
        error_line(result) == "Error: model weights became non-finite in epoch 2; best.pt is left as it was"
    )
    run_dir = only_run_dir(tmp_path)
    for name in ("last.pt", "best.pt"):
        payload = load_checkpoint(run_dir / name)
        assert payload["epoch"] == 1 and finite(payload), name


# -- Ctrl-C ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, faulty_loss) -> Path:
    out = tmp_path_factory.mktemp("straight")
    assert invoke("run", *FAULTY, "--epochs", "3", "--out", out).exit_code == 0
    return only_run_dir(out)


def assert_same_training(run_dir: Path, reference: Path) -> None:
    expected, resumed = recorded_epochs(reference), recorded_epochs(run_dir)
    assert [row["epoch"] for row in resumed] == [row["epoch"] for row in expected]
    for key in ("train_loss", "valid_loss", "valid_dice"):
        assert [float(r[key]) for r in resumed] == pytest.approx(
            [float(r[key]) for r in expected], rel=1e-5
        ), key
    a, b = (
        load_checkpoint(reference / "last.pt")["model_state"],
        load_checkpoint(run_dir / "last.pt")["model_state"],
    )
    assert all(torch.allclose(a[key].float(), b[key].float(), atol=1e-5) for key in a)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, and what was there put back.

    A process started in the background by a non-interactive shell (``python -m pytest &``) inherits
    SIGINT as ignored, and Python then leaves it ignored: a SIGINT sent to this process would do
    nothing, the run would finish with exit 0, and a Ctrl-C test would fail though segkit is right.
    (No other test here touches SIGINT; the subprocess runner below restores it the same way.)"""
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, found)


def test_sigint_mid_step_keeps_the_last_epoch_and_resume_repeats_the_run(
    tmp_path, faulty_loss, uninterrupted, python_sigint_handler
):
    SIGINT_AT_STEPS.add(STEPS_PER_EPOCH + 1)  # the first step of epoch 2
    try:
        result = invoke("run", *FAULTY, "--epochs", "3", "--out", tmp_path)
    finally:
        SIGINT_AT_STEPS.clear()
    run_dir = only_run_dir(tmp_path)
    assert result.exit_code == 130, result.output  # the shell's convention for a SIGINT
    assert "Interrupted." in result.output
    assert (
        f"Interrupted: {run_dir / 'last.pt'} holds epoch 1; continue with: segkit run --resume {run_dir}"
        in result.output
    )
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    resumed = invoke("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert_same_training(run_dir, uninterrupted)


def test_sigint_during_a_checkpoint_write_keeps_the_previous_checkpoint(
    tmp_path, faulty_loss, monkeypatch, uninterrupted, python_sigint_handler
):
    import segkit.checkpoint_files as checkpoint_module

    real_atomic_write = checkpoint_module.atomic_write
    last_pt_writes = []

    def interrupted_halfway(path, write_contents):
        if path.name == "last.pt":
            last_pt_writes.append(path)
        if len(last_pt_writes) != 3 or path.name != "last.pt":  # the 3rd: epoch 2 (the 1st is epoch 0)
            return real_atomic_write(path, write_contents)

        def half_then_ctrl_c(handle):
            handle.write(b"PK\x03\x04 half a checkpoint")
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the KeyboardInterrupt arrives during this sleep

        return real_atomic_write(path, half_then_ctrl_c)

    monkeypatch.setattr(checkpoint_module, "atomic_write", interrupted_halfway)
    result = invoke("run", *FAULTY, "--epochs", "3", "--out", tmp_path)
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_atomic_write)
    run_dir = only_run_dir(tmp_path)
    assert result.exit_code == 130, result.output
    assert f"{run_dir / 'last.pt'} holds epoch 1;" in result.output, "the message must say what is on disk"
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert not [path for path in run_dir.iterdir() if path.name.endswith(".tmp")], "temp file left behind"
    assert invoke("run", "--resume", run_dir).exit_code == 0
    assert_same_training(run_dir, uninterrupted)


@pytest.mark.slow
def test_the_in_process_ctrl_c_tests_pass_where_sigint_is_ignored(tmp_path):
    """The two tests above, in a pytest started the way a background job starts: SIGINT ignored."""
    tests = [
        f"{__file__}::test_sigint_mid_step_keeps_the_last_epoch_and_resume_repeats_the_run",
        f"{__file__}::test_sigint_during_a_checkpoint_write_keeps_the_previous_checkpoint",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path), *tests],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout


# -- runs sharing an output root --------------------------------------------------------------------------


def test_concurrent_runs_get_distinct_run_folders(tmp_path, monkeypatch):
    """Sixteen runs starting in the same second with the same model and loss: sixteen folders."""
    monkeypatch.setattr(rundir.time, "strftime", lambda pattern: "20250101-120000")
    barrier = threading.Barrier(16)
    made: list[Path] = []

    def start_a_run():
        barrier.wait()
        made.append(rundir.create_run_dir(tmp_path, "unet", "bce_dice"))

    threads = [threading.Thread(target=start_a_run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == len(set(made)) == 16
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in made)
    assert {path.name for path in made} >= {
        "20250101-120000-unet-bce_dice",
        "20250101-120000-unet-bce_dice-16",
    }


# -- a full disk while a checkpoint is written ------------------------------------------------------

# Three short epochs at a learning rate that improves validation Dice in epoch 2, so best.pt is
# written twice: the full-disk cases below fail the first or the second write of each file.
THREE_EPOCH_RUN = tiny_run(
    batch_size=4, epochs=3, learning_rate=0.01, train_size=8, valid_size=4, callbacks=("csv",)
)


@pytest.mark.parametrize(
    "target, failing_write",
    [("last.pt", 1), ("last.pt", 3), ("best.pt", 1), ("best.pt", 2)],
    ids=["1st-last.pt", "3rd-last.pt", "1st-best.pt", "2nd-best.pt"],
)
def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(
    tmp_path, monkeypatch, target, failing_write
):
    """The disk fills up when the ``failing_write``-th write of ``target`` has put half its bytes down:
    the run stops with the error, the previous file of that name (if any) is still whole, no temp file
    is left, and ``--resume`` carries on from last.pt."""
    import segkit.checkpoint_files as checkpoint_module

    real_atomic_write = checkpoint_module.atomic_write
    writes: dict[str, int] = {}
    epoch_on_disk: dict[str, int] = {}  # the epoch of each checkpoint's last complete write

    def atomic_write_until_the_disk_fills(path, write_contents):
        writes[path.name] = writes.get(path.name, 0) + 1
        if path.name != target or writes[target] != failing_write:
            real_atomic_write(path, write_contents)
            if path.suffix == ".pt":
                epoch_on_disk[path.name] = load_checkpoint(path)["epoch"]
            return

        def half_then_full(handle):
            buffer = io.BytesIO()
            write_contents(buffer)
            handle.write(buffer.getvalue()[: buffer.tell() // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        return real_atomic_write(path, half_then_full)

    monkeypatch.setattr(checkpoint_module, "atomic_write", atomic_write_until_the_disk_fills)
    out = tmp_path / "runs"
    # A high learning rate on this seeded data improves validation Dice in epoch 2, so best.pt is
    # written twice (asserted below through ``writes``). last.pt is written once per epoch (and may be
    # written before the first, so that a run killed in epoch 1 can resume).
    args = THREE_EPOCH_RUN
    result = invoke("run", *args, "--out", out)
    run_dir = only_run_dir(out)
    expect_named_failure(result, run_dir / target, "could not write checkpoint .*: No space left on device")
    assert writes[target] == failing_write
    previous = run_dir / target
    if failing_write == 1:
        assert not previous.exists(), "no half-written checkpoint under the real name"
    else:
        assert load_checkpoint(previous)["epoch"] == epoch_on_disk[target], (
            "the previous write is still whole"
        )
    for name, epoch in epoch_on_disk.items():
        assert load_checkpoint(run_dir / name)["epoch"] == epoch
    assert [path.name for path in run_dir.iterdir() if path.name.startswith(".")] == [], "temp files left"
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_atomic_write)
    resumed = invoke("run", "--resume", run_dir)
    if "last.pt" not in epoch_on_disk:  # nothing to resume from: said so
        expect_named_failure(resumed, run_dir / "last.pt", "does not exist")
        return
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3
    assert load_checkpoint(run_dir / "best.pt")["epoch"] >= 1
    recorded = [int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open())]
    if target == "last.pt":  # (for best.pt, see the next test)
        assert recorded == [1, 2, 3]


def test_records_are_complete_after_resuming_a_run_that_failed_writing_best_pt(tmp_path, monkeypatch):
    import segkit.checkpoint_files as checkpoint_module

    real_atomic_write = checkpoint_module.atomic_write

    def best_pt_fills_the_disk(path, write_contents):
        if path.name == "best.pt" and path.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_atomic_write(path, write_contents)

    monkeypatch.setattr(checkpoint_module, "atomic_write", best_pt_fills_the_disk)
    args = THREE_EPOCH_RUN
    assert invoke("run", *args, "--out", tmp_path).exit_code == 1
    monkeypatch.setattr(checkpoint_module, "atomic_write", real_atomic_write)
    run_dir = only_run_dir(tmp_path)
    assert invoke("run", "--resume", run_dir).exit_code == 0
    assert [int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open())] == [1, 2, 3]


# -- SIGKILL and real signals, in subprocesses (slow) --------------------------------------------------

RUNNER = '''\
"""segkit run with atomic_write instrumented: marker files say what is being / has been written."""
import io, os, signal, sys, time
from pathlib import Path

# A child inherits an ignored SIGINT from its parent, and Python then leaves it ignored. In a full
# `pytest -m slow` run in file order both SIGINT tests once saw exactly that (the run ignored Ctrl-C),
# after earlier tests of the same session; Ctrl-C is what these runs are about, so restore Python's
# own handler whatever the parent left.
signal.signal(signal.SIGINT, signal.default_int_handler)

import segkit.checkpoint_files
import segkit.config.run_folder

markers = Path(os.environ["SEGKIT_TEST_MARKERS"])
pause_at = os.environ.get("SEGKIT_TEST_PAUSE_AT", "")
real_atomic_write = segkit.checkpoint_files.atomic_write
counts = {}


def instrumented(path, write):
    path = Path(path)
    counts[path.name] = number = counts.get(path.name, 0) + 1
    label = f"{path.name}-{number}"

    def in_two_halves(handle):
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        (markers / f"during-{label}").touch()
        if label == pause_at:
            time.sleep(60)  # the test kills the process here
        handle.write(data[len(data) // 2 :])

    real_atomic_write(path, in_two_halves)
    (markers / f"after-{label}").touch()


segkit.checkpoint_files.atomic_write = instrumented
segkit.config.run_folder.atomic_write = instrumented
from segkit.cli import main

main(sys.argv[1:])
'''
SUBPROCESS_EPOCHS = 4


def start_instrumented_run(tmp_path: Path, out: Path, pause_at: str = "") -> tuple[subprocess.Popen, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    runner = tmp_path / "instrumented_segkit.py"
    runner.write_text(RUNNER)
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "SEGKIT_TEST_MARKERS": str(markers),
        "SEGKIT_TEST_PAUSE_AT": pause_at,
        "OMP_NUM_THREADS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, str(runner), "run", *TINY, "--epochs", str(SUBPROCESS_EPOCHS), "--out", str(out)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, markers


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {marker.name}:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{marker.name} never appeared")
        time.sleep(0.01)


def assert_everything_readable(run_dir: Path) -> int | None:
    """Every file the run wrote loads; returns the epoch last.pt holds (None without last.pt)."""
    for path in run_dir.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".tmp"), f"unexpected hidden file {path.name}"  # a write cut short
        elif path.suffix == ".pt":
            assert finite(load_checkpoint(path)), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            for row in recorded_epochs(run_dir):
                int(row["epoch"])
    return load_checkpoint(run_dir / "last.pt")["epoch"] if (run_dir / "last.pt").exists() else None


def assert_resume_finishes(run_dir: Path, epoch_at_kill: int | None) -> None:
    result = invoke("run", "--resume", run_dir)
    if not (run_dir / "config.json").exists():  # killed before the run folder was described
        assert result.exit_code == 2 and "config.json is missing" in error_line(result), result.output
        return
    if epoch_at_kill is None:  # killed before the first last.pt: nothing to resume, and it says so
        assert result.exit_code == 1 and "last.pt does not exist" in error_line(result), result.output
        return
    if epoch_at_kill == SUBPROCESS_EPOCHS:  # killed after the last epoch was saved: nothing left to train
        assert result.exit_code == 2 and "has finished: it trained all" in error_line(result), result.output
    else:
        assert result.exit_code == 0, result.output
        assert f"Resuming {run_dir} at epoch {epoch_at_kill + 1}" in result.output
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == SUBPROCESS_EPOCHS
    epochs = [int(row["epoch"]) for row in recorded_epochs(run_dir)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == SUBPROCESS_EPOCHS
    # Every epoch trained after the resume is recorded (epoch_at_kill itself may be missing; see
    # test_records_are_complete_after_resuming_a_run_that_failed_writing_best_pt).
    assert set(range(epoch_at_kill + 1, SUBPROCESS_EPOCHS + 1)) <= set(epochs)


KILL_MOMENTS = [
    "during-config.json-1",  # the run folder exists but is not described yet
    "during-last.pt-1",  # the initial (epoch 0) checkpoint
    "after-last.pt-1",  # between the initial checkpoint and the first epoch's
    "during-last.pt-3",  # epoch 2's last.pt half written
    "during-best.pt-1",  # epoch 1's best.pt half written
    "after-last.pt-2",  # between last.pt and best.pt of epoch 1
]


@pytest.mark.slow
@pytest.mark.parametrize("moment", KILL_MOMENTS)
def test_sigkill_during_or_between_writes_leaves_readable_files_and_resume_continues(tmp_path, moment):
    out = tmp_path / "runs"
    process, markers = start_instrumented_run(tmp_path, out, pause_at=moment.removeprefix("during-"))
    wait_for(markers / moment, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL
    run_dir = only_run_dir(out)
    assert_resume_finishes(run_dir, assert_everything_readable(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_moment_leaves_readable_files_and_resume_continues(tmp_path, seed):
    out = tmp_path / "runs"
    process, markers = start_instrumented_run(tmp_path, out)
    wait_for(markers / "after-last.pt-1", process)  # training has started
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    run_dir = only_run_dir(out)
    assert_resume_finishes(run_dir, assert_everything_readable(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["after-last.pt-2", "during-last.pt-3"])
def test_real_sigint_writes_nothing_broken_and_says_how_to_resume(tmp_path, moment):
    out = tmp_path / "runs"
    process, markers = start_instrumented_run(tmp_path, out, pause_at=moment.removeprefix("during-"))
    wait_for(markers / moment, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0 and "Traceback" not in output, output
    run_dir = only_run_dir(out)
    epoch = assert_everything_readable(run_dir)
    assert (
        f"Interrupted: {run_dir / 'last.pt'} holds epoch {epoch}; continue with: segkit run --resume"
        in output
    )
    assert_resume_finishes(run_dir, epoch)


@pytest.mark.slow
def test_two_processes_training_into_one_output_root_at_once(tmp_path):
    out = tmp_path / "runs"
    first, _ = start_instrumented_run(tmp_path / "a", out)
    second, _ = start_instrumented_run(tmp_path / "b", out)
    for process in (first, second):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    run_dirs = [path for path in out.iterdir() if path.is_dir()]
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert load_checkpoint(run_dir / "last.pt")["epoch"] == SUBPROCESS_EPOCHS
        assert [int(row["epoch"]) for row in recorded_epochs(run_dir)] == list(
            range(1, SUBPROCESS_EPOCHS + 1)
        )
