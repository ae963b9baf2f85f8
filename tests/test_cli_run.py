"""``segkit run`` end to end on tiny synthetic data: run folder, records, checkpoints, resume, time
budget, bad flags and output folders it cannot make. (Settings from config files and recipes:
test_config_files.py; training faults: test_training_faults.py.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fixtures import expect_named_failure, invoke, only_run_dir, run_cli, tiny_run

import segkit
from segkit.callbacks import Callback
from segkit.checkpoint import load_checkpoint
from segkit.plugins import get_host

TINY = tiny_run(loss="bce_dice", batch_size=8, train_size=32, valid_size=16)
#: A smaller run, for the output-folder checks (they fail before training).
TINY_RUN = tiny_run(batch_size=2, epochs=1, train_size=4, valid_size=2, callbacks=("csv",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("run", *TINY, "--epochs", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, only_run_dir(out), result.output


def test_run_writes_config_metrics_and_checkpoints(finished_run):
    _, run_dir, output = finished_run
    assert f"Run saved to {run_dir}" in output
    assert "per-image mean" in output and "threshold 0.5" in output and "32x32" in output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and config["sources"]["epochs"] == "flag"
    assert config["sources"]["image_size"] == "flag"
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for key in ("train_loss", "train_dice", "valid_loss", "valid_dice", "lr", "epoch_time_s"):
        assert key in rows[0]
    for name in ("best.pt", "last.pt"):
        payload = load_checkpoint(run_dir / name)
        assert payload["model_name"] == "unet" and payload["model_options"] == {"base_channels": 4}
        assert payload["image_size"] == 32
        # Only last.pt carries what --resume needs; best.pt is for predict, evaluate and export.
        resumable = "optimizer_state" in payload and "rng_state" in payload
        assert resumable == (name == "last.pt")
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2


def test_settings_and_epochs_are_printed_unless_quiet(finished_run, tmp_path):
    _, _, quiet_output = finished_run
    assert "Settings" not in quiet_output and "Best valid Dice" in quiet_output
    args = [a for a in TINY if a != "--quiet"]
    output = run_cli("run", *args, "--epochs", "1", "--out", str(tmp_path)).output
    assert "Settings (value, and where it came from):" in output
    settings = {line.split()[0]: line.split()[-1] for line in output.splitlines() if line.startswith("  ")}
    assert settings["epochs"] == "flag" and settings["optimizer"] == "default"
    assert "epoch   1/1  train loss" in output and "valid loss" in output


class InterruptAfterEpoch2(Callback):
    """Ctrl-C arriving during epoch 3, after epoch 2 was checkpointed."""

    def on_epoch_end(self, context, metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt


class InterruptPlugin:
    @segkit.hookimpl
    def register_callbacks(self, register):
        register("interrupt_after_2", lambda run_dir: InterruptAfterEpoch2(), description="test")


@pytest.mark.parametrize(
    "extra",
    [[], ["--ema-decay", "0.9", "--calibrate-threshold", "--tta"]],
    ids=["plain", "weight-average-and-calibration"],
)
def test_resume_after_ctrl_c_reproduces_an_uninterrupted_run(tmp_path, extra):
    straight = tmp_path / "straight"
    assert run_cli("run", *TINY, *extra, "--epochs", "3", "--out", str(straight)).exit_code == 0
    interrupted = tmp_path / "interrupted"
    host = get_host()
    host.register_plugin(InterruptPlugin(), "interrupt-test", "tests")
    try:
        result = run_cli(
            "run",
            *TINY,
            *extra,
            "--epochs",
            "3",
            "--out",
            str(interrupted),
            "--callback",
            "csv",
            "--callback",
            "interrupt_after_2",
        )
    finally:
        host.unregister_plugin("interrupt-test")
    assert result.exit_code != 0 and "--resume" in result.output
    run_dir = only_run_dir(interrupted)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    result = run_cli("run", "--resume", str(run_dir), "--callback", "csv")
    assert result.exit_code == 0, result.output
    expected = list(csv.DictReader((only_run_dir(straight) / "metrics.csv").open()))
    resumed = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for key in ("train_loss", "train_dice", "valid_loss", "valid_dice"):
        assert [float(r[key]) for r in resumed] == pytest.approx(
            [float(r[key]) for r in expected], rel=1e-5
        ), key
    straight_last = load_checkpoint(only_run_dir(straight) / "last.pt")
    resumed_last = load_checkpoint(run_dir / "last.pt")
    for weights in ("model_state", "raw_model_state") if extra else ("model_state",):
        a, b = straight_last[weights], resumed_last[weights]
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a), weights
    assert resumed_last["threshold"] == straight_last["threshold"]


def test_two_runs_into_one_folder_never_share_a_run_dir(tmp_path):
    for _ in range(2):
        assert run_cli("run", *TINY, "--epochs", "1", "--out", str(tmp_path)).exit_code == 0
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_time_budget_stops_cleanly(tmp_path):
    result = run_cli("run", *TINY, "--epochs", "50", "--time-budget", "3s", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "time budget" in result.output
    run_dir = only_run_dir(tmp_path)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] < 50


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss", "bce_dise"], "Did you mean 'bce_dice'?"),
        (["--epochs", "0"], "--epochs"),
        (["--model-option", "base_channels"], "KEY=VALUE"),
        (["--time-budget", "soon"], "--time-budget"),
        (["--callback", "cvs"], "Did you mean 'csv'?"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, args, message):
    result = run_cli("run", *TINY, *args, "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not any(tmp_path.iterdir()), "a failed start must not leave a run folder"


def test_a_step_that_would_end_past_the_budget_is_not_begun(tmp_path, monkeypatch):
    """A fake clock advances 10 s per training step: under a 35 s budget three steps end at 30 s and
    a fourth would end at 40 s, so the run stops after three (and never overruns by a step)."""
    import segkit.engine.budget as budget
    import segkit.engine.step as step

    now = [0.0]
    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: now[0]))
    real_compute_loss = step.compute_loss

    def compute_loss_taking_ten_seconds(*args, **kwargs):
        if torch.is_grad_enabled():  # training steps, not validation
            now[0] += 10.0
        return real_compute_loss(*args, **kwargs)

    monkeypatch.setattr(step, "compute_loss", compute_loss_taking_ten_seconds)
    result = run_cli("run", *TINY, "--epochs", "50", "--time-budget", "35s", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "time budget" in result.output
    last = load_checkpoint(only_run_dir(tmp_path) / "last.pt")
    assert last["schedule_state"]["step"] == 3
    assert last["schedule_state"]["elapsed_s"] <= 35


# -- where results go ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["inside-a-file", "is-a-file"])
def test_run_output_folder_that_cannot_be_made(tmp_path, regular_file, where):
    out = regular_file / "runs" if where == "inside-a-file" else regular_file
    result = invoke("run", *TINY_RUN, "--out", out)
    message = (
        "cannot be created: Not a directory" if where == "inside-a-file" else "exists and is not a folder"
    )
    expect_named_failure(result, out, message, exit_code=2)
    assert regular_file.read_text() == "occupied"


def test_run_output_folder_without_write_permission(tmp_path, monkeypatch):
    import os

    import segkit.engine.rundir as rundir

    class OsWhereLockedIsReadOnly:
        """``os`` as the run-folder code sees it, with ``locked`` read-only (root ignores chmod)."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def access(path, mode):
            return not (Path(path) == tmp_path / "locked" and mode & os.W_OK)

    monkeypatch.setattr(rundir, "os", OsWhereLockedIsReadOnly())
    (tmp_path / "locked").mkdir()
    result = invoke("run", *TINY_RUN, "--out", tmp_path / "locked")
    expect_named_failure(result, tmp_path / "locked", "is not writable", exit_code=2)
