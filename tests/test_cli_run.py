"""``segkit run`` end to end on tiny synthetic data: run folder, records, checkpoints, resume."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import segkit
from segkit.callbacks import Callback
from segkit.checkpoint import load_checkpoint
from segkit.cli import cli
from segkit.plugins import get_host

TINY = [
    "--model",
    "unet",
    "--loss",
    "bce_dice",
    "--model-option",
    "base_channels=4",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--dataset-option",
    "train_size=32",
    "--dataset-option",
    "valid_size=16",
    "--workers",
    "0",
    "--quiet",
]


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def only_run_dir(out):
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


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


def test_config_file_is_overridden_by_flags(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("epochs = 1\nlearning_rate = 0.01\n[model_options]\nbase_channels = 4\n")
    result = run_cli(
        "run", *TINY, "--config", str(config), "--learning-rate", "0.002", "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((only_run_dir(tmp_path / "o") / "config.json").read_text())
    assert recorded["config"]["epochs"] == 1 and recorded["sources"]["epochs"].startswith("config")
    assert recorded["config"]["learning_rate"] == 0.002 and recorded["sources"]["learning_rate"] == "flag"


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


def test_a_named_recipe_beats_dataset_defaults_and_loses_to_flags():
    from segkit.cli.run_cmd import resolve_run_config

    config = resolve_run_config({"epochs": 3}, None, "seed")
    assert config["image_size"] == 256 and config.sources["image_size"] == "recipe seed"
    assert config["batch_size"] == 32 and config.sources["batch_size"] == "recipe seed"
    assert config["epochs"] == 3 and config.sources["epochs"] == "flag"
    plain = resolve_run_config({}, None, None)
    assert plain["image_size"] == 64 and plain.sources["image_size"] == "dataset synthetic default"


def test_every_registered_recipe_resolves_to_valid_settings():
    """A recipe is checked like a config file: known settings, valid values (third-party ones too)."""
    from segkit.cli.run_cmd import resolve_run_config

    names = [component.name for component in segkit.list_components("recipe")]
    assert {"seed", "budget"} <= set(names)
    for name in names:
        config = resolve_run_config({"dataset": "oxford_pet"}, None, name)
        recipe = segkit.get_component("recipe", name).factory
        assert all(config.sources[key] == f"recipe {name}" for key in recipe), name


def test_the_budget_recipe_plans_for_fifteen_minutes_unless_told_otherwise():
    from segkit.cli.run_cmd import resolve_run_config

    config = resolve_run_config({}, None, "budget")
    assert config["time_budget"] == 900 and config.sources["time_budget"] == "recipe budget"
    assert config["progressive_sizes"][-1] == config["image_size"]
    assert resolve_run_config({"time_budget": "1h"}, None, "budget")["time_budget"] == 3600
    # seed stays the report's recipe: none of the budget's levers
    seed = resolve_run_config({}, None, "seed")
    assert seed["time_budget"] is None and seed["progressive_sizes"] == [] and not seed["tta"]


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
