"""A run nobody chose a loss for gets one that serves its task: a multi-class folder trains with ce_dice
instead of being refused for the seed report's binary bce_dice; a loss anyone chose is never replaced."""

from __future__ import annotations

import json

from data_fixtures import write_multiclass_folder
from fixtures import error_line, invoke, only_run_dir, run_cli, tiny_run

NAMES = [f"p{index}" for index in range(6)]


def test_a_multiclass_folder_without_a_loss_trains_with_the_tasks_default(tmp_path):
    write_multiclass_folder(tmp_path / "data", NAMES)
    args = [
        *tiny_run(epochs=1, batch_size=2, quiet=False),
        "--dataset",
        "folder",
        "--data-path",
        tmp_path / "data",
    ]
    result = invoke("run", *args, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "Loss: ce_dice, the default for a multiclass task (the seed report's bce_dice" in result.output
    recorded = json.loads((only_run_dir(tmp_path / "runs") / "config.json").read_text())
    assert recorded["config"]["loss"] == "ce_dice"
    assert recorded["sources"]["loss"] == "default for a multiclass task"


def test_print_config_prints_the_loss_the_run_trains_with_and_it_trains_as_printed(tmp_path):
    write_multiclass_folder(tmp_path / "data", NAMES)
    args = [*tiny_run(epochs=1, batch_size=2), "--dataset", "folder", "--data-path", tmp_path / "data"]
    printed = invoke("run", *args, "--print-config")
    assert printed.exit_code == 0, printed.output
    assert 'loss = "ce_dice"' in printed.stdout and "default for a multiclass task" in printed.stdout
    (tmp_path / "run.toml").write_text(printed.stdout)
    trained = invoke("run", "--config", tmp_path / "run.toml", "--out", tmp_path / "runs")
    assert trained.exit_code == 0, trained.output
    assert (
        json.loads((only_run_dir(tmp_path / "runs") / "config.json").read_text())["config"]["loss"]
        == "ce_dice"
    )


def test_a_loss_someone_chose_is_never_replaced(tmp_path):
    write_multiclass_folder(tmp_path / "data", NAMES)
    base = [*tiny_run(epochs=1, batch_size=2), "--dataset", "folder", "--data-path", tmp_path / "data"]
    for extra in (["--loss", "bce_dice"], ["--loss-option", "smooth=1"]):
        result = run_cli("run", *base, *extra, "--out", tmp_path / "runs")
        assert result.exit_code == 2, result.output
        assert "for a multiclass task use one of" in error_line(result)
    assert not (tmp_path / "runs").exists()
