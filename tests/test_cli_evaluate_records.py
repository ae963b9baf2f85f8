"""``segkit evaluate``'s records: which checkpoint and epoch it scored, earlier evaluations never
silently overwritten, dataset options it sets itself refused, and a missing split or data folder
explained. (Scores, post-processing and bad data files: test_cli_evaluate.py.)"""

from __future__ import annotations

import json

import pytest
from data_fixtures import write_folder_layout
from fixtures import error_line, expect_named_failure, invoke, only_run_dir, tiny_run

from segkit.checkpoint_files import load_checkpoint, save_checkpoint

EVALUATE = ("--split", "valid", "--no-boundary", "-q", "--device", "cpu")


def evaluate(run_dir, *extra):
    return invoke("evaluate", run_dir, *EVALUATE, *extra)


def test_evaluate_names_the_checkpoint_and_epoch_it_scored(copy_of_run):
    result = evaluate(copy_of_run)
    assert result.exit_code == 0, result.output
    assert f"Scored {copy_of_run / 'best.pt'} (epoch 1, the best so far)" in result.output
    summary = json.loads((copy_of_run / "eval-valid" / "summary.json").read_text())
    assert summary["evaluated"]["epoch"] == 1
    assert summary["evaluated"]["checkpoint"] == str((copy_of_run / "best.pt").resolve())


def test_an_earlier_evaluation_with_other_settings_is_never_overwritten(copy_of_run):
    assert evaluate(copy_of_run).exit_code == 0
    first = (copy_of_run / "eval-valid" / "summary.json").read_text()
    # the same evaluation again: the same folder
    assert evaluate(copy_of_run).exit_code == 0
    assert not (copy_of_run / "eval-valid-2").exists()
    # another threshold: a new folder, said so on stderr; the first evaluation is left as it was
    result = evaluate(copy_of_run, "--threshold", "0.3")
    assert result.exit_code == 0, result.output
    assert "holds an earlier evaluation with other settings (threshold 0.5 there, 0.3 now)" in result.stderr
    assert (copy_of_run / "eval-valid" / "summary.json").read_text() == first
    second = json.loads((copy_of_run / "eval-valid-2" / "summary.json").read_text())
    assert second["threshold"] == 0.3


def test_an_explicit_out_holding_another_evaluation_is_refused(copy_of_run, tmp_path):
    assert evaluate(copy_of_run, "-o", tmp_path).exit_code == 0
    before = (tmp_path / "summary.json").read_text()
    result = evaluate(copy_of_run, "-o", tmp_path, "--threshold", "0.3")
    expect_named_failure(result, tmp_path, "holds an earlier evaluation with other settings", exit_code=2)
    assert (tmp_path / "summary.json").read_text() == before


@pytest.mark.parametrize("option, flag", [("split=test", "--split"), ("image_size=64", "checkpoint")])
def test_dataset_options_evaluate_sets_itself_are_refused(copy_of_run, option, flag):
    result = evaluate(copy_of_run, "--dataset-option", option)
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: --dataset-option {option.split('=')[0]}: ")
    assert flag in error_line(result)


def test_a_run_that_recorded_an_engine_option_still_evaluates(copy_of_run):
    """Runs trained before such options were refused recorded them; evaluate leaves them out."""
    payload = load_checkpoint(copy_of_run / "best.pt")
    payload["config"]["dataset_options"] = {**payload["config"]["dataset_options"], "image_size": 64}
    save_checkpoint(copy_of_run / "best.pt", payload)
    result = evaluate(copy_of_run)
    assert result.exit_code == 0, result.output


def test_no_test_split_points_to_split_valid(tmp_path):
    for split in ("train", "valid"):
        write_folder_layout(tmp_path / "data" / split, [f"{split}{i}" for i in range(4)])
    args = tiny_run(batch_size=2, epochs=1, callbacks=("csv",))
    result = invoke(
        "run", *args, "--dataset", "folder", "--data-path", tmp_path / "data", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", only_run_dir(tmp_path / "r"), "--device", "cpu", "-q")
    assert result.exit_code == 1, result.output
    assert "no test/" in error_line(result) and "--split valid" in error_line(result)


def test_a_dataset_without_its_folder_asks_for_data_path(tmp_path):
    result = invoke("run", *tiny_run(epochs=1), "--dataset", "folder", "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert "dataset 'folder' needs --data-path DIR" in error_line(result)
    assert "root=DIR" not in result.output
    assert not any(tmp_path.iterdir())
