"""``segkit run`` end to end on tiny synthetic data: run folder, records, checkpoints, resume, time
budget, bad flags and output folders it cannot make. (Settings from config files and recipes:
test_config_files.py; training faults: test_training_faults.py.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from data_fixtures import write_folder_layout
from fixtures import (
    InterruptPlugin,
    error_line,
    expect_named_failure,
    invoke,
    only_run_dir,
    run_cli,
    tiny_run,
)

from segkit.checkpoint_files import load_checkpoint
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

    import segkit.config.run_folder as rundir

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


# -- nothing typed is ignored -------------------------------------------------------------------------


def test_resume_refuses_flags_it_cannot_honour_naming_them_and_those_that_may_change(finished_run):
    _, run_dir, _ = finished_run
    before = (run_dir / "last.pt").read_bytes()
    result = invoke("run", "--resume", run_dir, "--lr", "0.1", "--image-size", "64", "--loss", "dice")
    expect_named_failure(result, run_dir, r"--loss, --learning-rate, --image-size cannot change", exit_code=2)
    assert "(only --data-path, --epochs" in result.output and "--time-budget" in result.output
    assert f"segkit run --config {run_dir / 'config.json'} with those flags" in result.output
    assert (run_dir / "last.pt").read_bytes() == before
    # --config and --recipe neither
    result = invoke("run", "--resume", run_dir, "--recipe", "budget")
    assert result.exit_code == 2 and "--recipe cannot be combined with --resume" in result.output


def test_resuming_a_finished_run_says_so_and_how_to_extend_it(finished_run):
    _, run_dir, _ = finished_run
    result = invoke("run", "--resume", run_dir, "--epochs", "2")
    expect_named_failure(result, run_dir, r"has finished: it trained all 2 of its epochs", exit_code=2)
    assert f"segkit run --resume {run_dir} --epochs 4" in result.output


def test_resume_accepts_flags_that_repeat_the_recorded_settings_and_extends_with_epochs(copy_of_run):
    # the command that made the run, with --resume and more epochs: nothing it cannot honour
    args = tiny_run(batch_size=4, train_size=4, valid_size=2, epochs=2, callbacks=("csv",))
    result = invoke("run", "--resume", copy_of_run, *args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(copy_of_run / "last.pt")["epoch"] == 2


def test_a_data_path_the_dataset_does_not_read_is_an_error_suggesting_the_folder_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    result = invoke("run", *TINY_RUN, "--data-path", tmp_path / "photos", "--out", tmp_path / "runs")
    expect_named_failure(result, tmp_path / "photos", "dataset 'synthetic' reads no folder", exit_code=2)
    assert "Did you mean --dataset folder?" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "option, instead",
    [
        ("image_size=64", "--image-size"),
        ("split=test", "--split"),
        ("augment=strong", "--augment"),
        ("root=data", "--data-path"),
    ],
)
def test_dataset_options_the_engine_sets_are_refused_with_the_flag_to_use(tmp_path, option, instead):
    result = invoke("run", *TINY_RUN, "--dataset-option", option, "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: --dataset-option {option.split('=')[0]}: ")
    assert instead in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_adding_a_callback_keeps_the_default_recorders(tmp_path):
    args = [a for a in TINY_RUN if a not in ("--no-callback", "excel")]
    result = invoke("run", *args, "--callback", "early_stopping", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "model_performance.xlsx").is_file()
    assert invoke("plot", run_dir, "-o", tmp_path / "plots").exit_code == 0


def test_leaving_out_a_default_callback_is_its_own_flag(tmp_path):
    assert "--no-callback NAME" in invoke("run", "--help").output
    args = [a for a in TINY_RUN if a not in ("--no-callback", "excel")]
    result = invoke("run", *args, "--no-callback", "excel", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / "metrics.csv").is_file() and not (run_dir / "model_performance.xlsx").exists()
    result = invoke("run", *args, "--callback", "csv", "--no-callback", "csv", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "contradict" in error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ["--callback", "early_stopping", "--callback-option", "early_stopping.patience=-1"],
        ["--callback-option", "early_stopping.patience=5"],
    ],
    ids=["refused-by-the-callback", "callback-not-enabled"],
)
def test_a_rejected_callback_option_leaves_no_run_folder(tmp_path, args):
    result = invoke("run", *TINY_RUN, *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert "early_stopping" in error_line(result)
    assert not any(tmp_path.iterdir()), "a failed setup must not leave a run folder"


# -- runs that travel ---------------------------------------------------------------------------------


def test_a_relative_data_path_is_recorded_absolute_and_evaluate_works_from_elsewhere(tmp_path, monkeypatch):
    write_folder_layout(tmp_path / "project" / "photos", [f"p{i}" for i in range(10)])
    monkeypatch.chdir(tmp_path / "project")
    args = tiny_run(batch_size=2, epochs=1, callbacks=("csv",))
    result = invoke("run", *args, "--dataset", "folder", "--data-path", "photos", "--out", "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "project" / "runs")
    recorded = json.loads((run_dir / "config.json").read_text())["config"]["data_path"]
    assert recorded == str(tmp_path / "project" / "photos")
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", run_dir.resolve(), "--split", "valid", "--no-boundary", "--device", "cpu")
    assert result.exit_code == 0, result.output
    # moved data: the message says where the run looked and that --data-path overrides it
    (tmp_path / "project" / "photos").rename(tmp_path / "moved")
    result = invoke("evaluate", run_dir.resolve(), "--split", "valid", "--device", "cpu")
    expect_named_failure(result, tmp_path / "project" / "photos", "no longer exists.*--data-path")
    result = invoke(
        "evaluate", run_dir.resolve(), "--split", "valid", "--data-path", tmp_path / "moved", "--no-boundary",
        "--device", "cpu", "-o", tmp_path / "eval",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


# -- output: per-epoch lines on stdout, bars on a terminal only --------------------------------------------


def test_per_epoch_lines_go_to_stdout_and_no_progress_bars_off_a_terminal(tmp_path):
    args = [a for a in TINY_RUN if a != "--quiet"]
    result = invoke("run", *args, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "epoch   1/1  train loss" in result.stdout and "Settings" in result.stdout
    assert "batch/s" not in result.stderr and "epoch 1/1:" not in result.stderr, result.stderr
    assert "> train.log" in invoke("run", "--help").output


# -- print-config and config.json as --config ------------------------------------------------------------


def test_print_config_writes_a_config_file_that_resolves_to_the_same_settings(tmp_path):
    from segkit.config.resolve import resolve_run_config

    result = invoke("run", *TINY, "--epochs", "3", "--callback", "early_stopping", "--print-config")
    assert result.exit_code == 0, result.output
    assert "epochs = 3  # flag" in result.stdout
    path = tmp_path / "printed.toml"
    path.write_text(result.stdout)
    again = invoke("run", "--config", path, "--print-config")
    assert again.exit_code == 0, again.output
    values = {k: v for k, v in resolve_run_config({}, path, None).values.items()}
    assert values["epochs"] == 3 and values["callbacks"] == ["early_stopping"]
    assert values["model_options"] == {"base_channels": 4} and values["image_size"] == 32
    assert not any(tmp_path.glob("runs*")) and not Path("runs").exists()


def test_a_runs_config_json_can_be_passed_back_to_config(finished_run, tmp_path):
    from segkit.config.resolve import resolve_run_config

    _, run_dir, _ = finished_run
    recorded = json.loads((run_dir / "config.json").read_text())["config"]
    config = resolve_run_config({"epochs": 1}, run_dir / "config.json", None)
    for key, value in recorded.items():
        assert config[key] == (1 if key == "epochs" else value), key
    assert config.sources["learning_rate"] == f"config {run_dir / 'config.json'}"
