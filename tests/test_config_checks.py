"""What a run checks before it trains (``segkit.config.checks``), for ``segkit run`` and its
``--print-config`` alike:

- ``--resume`` of a run with nothing left to train says how many epochs it trained (or how long it
  ran) and what ``--epochs`` (or ``--time-budget``) must exceed; following the advice trains;
- ``--image-size`` beside ``--crop-size``: with crops the network input is the crop, so the image size
  follows the crop size, and a different one given as explicitly as the crop size is refused;
- ``--print-config`` makes every check the run makes before training, with the same message and exit
  code, and prints no config when one fails.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from data_fixtures import write_folder_layout
from fixtures import QUICK, error_line, invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given
from hypothesis import strategies as st

from segkit.checkpoint_files import load_checkpoint
from segkit.config.checks import check_resumable
from segkit.config.resolve import resolve_resumed_config, resolve_run_config
from segkit.errors import UsageError

RUN = Path("runs/20250101-000000-unet-bce_dice")


def _advice(message: str) -> dict[str, object]:
    """The settings the message's ``segkit run --resume RUN ...`` command gives, as values."""
    command = message.split(f"segkit run --resume {RUN}", 1)[1]
    advice: dict[str, object] = {}
    epochs = re.search(r"--epochs (\d+)", command)
    if epochs:
        advice["epochs"] = int(epochs.group(1))
    minutes = re.search(r"--time-budget (\d+)m", command)
    if minutes:
        advice["time_budget"] = 60.0 * int(minutes.group(1))
    assert advice, message
    return advice


# -- nothing left to train: what to give instead -----------------------------------------------------


def test_a_run_asked_for_fewer_epochs_than_it_trained_says_what_epochs_must_exceed():
    with pytest.raises(UsageError) as refused:
        check_resumable(RUN, 30, 100.0, {"epochs": 5, "time_budget": None})
    message = str(refused.value)
    assert f"{RUN} trained 30 epochs" in message and "--epochs 5" in message
    assert "give --epochs above 30" in message
    assert message.endswith(f"segkit run --resume {RUN} --epochs 60")


def test_a_run_that_trained_all_its_epochs_says_so():
    with pytest.raises(UsageError, match=r"has finished: it trained all 2 of its epochs.*above 2"):
        check_resumable(RUN, 2, 10.0, {"epochs": 2, "time_budget": None})


def test_a_spent_time_budget_is_measured_against_the_time_spent_not_the_budget_given():
    """Resumed with --time-budget 1m after 10 minutes: more than 2 minutes is needed to go on."""
    with pytest.raises(UsageError) as refused:
        check_resumable(RUN, 3, 600.0, {"epochs": 10, "time_budget": 60.0})
    message = str(refused.value)
    assert "600 s" in message and "give --time-budget above 600 s" in message
    assert _advice(message) == {"time_budget": 1200.0}


def test_a_run_out_of_epochs_and_time_is_told_both_at_once():
    with pytest.raises(UsageError) as refused:
        check_resumable(RUN, 4, 90.0, {"epochs": 4, "time_budget": 60.0})
    assert _advice(str(refused.value)) == {"epochs": 8, "time_budget": 180.0}


@QUICK
@given(
    trained=st.integers(0, 400),
    epochs=st.integers(1, 400),
    budget=st.none() | st.floats(1, 1e5),
    elapsed=st.floats(0, 1e6),
)
def test_following_the_advice_always_trains(trained, epochs, budget, elapsed):
    """Refused exactly when nothing is left to train; the command it suggests is never refused again."""
    values = {"epochs": epochs, "time_budget": budget}
    out_of_time = budget is not None and elapsed >= budget
    try:
        check_resumable(RUN, trained, elapsed, values)
    except UsageError as refused:
        message = str(refused)
        assert "\n" not in message and (trained >= epochs or out_of_time)
        if trained >= epochs:
            assert re.search(rf"trained (all )?{trained} (of its )?epochs?\b", message), message
            assert f"--epochs above {trained}" in message
        check_resumable(RUN, trained, elapsed, {**values, **_advice(message)})
    else:
        assert trained < epochs and not out_of_time


# -- the same, end to end ------------------------------------------------------------------------------

RESUMABLE = tiny_run(batch_size=2, train_size=4, valid_size=2, callbacks=("csv",))


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("run", *RESUMABLE, "--epochs", "2", "--out", out)
    assert result.exit_code == 0, result.output
    return only_run_dir(out)


def test_resuming_with_fewer_epochs_than_trained_gives_advice_that_works(two_epoch_run, tmp_path):
    run_dir = Path(shutil.copytree(two_epoch_run, tmp_path / "run"))
    refused = invoke("run", "--resume", run_dir, "--epochs", "1")
    assert refused.exit_code == 2, refused.output
    line = error_line(refused)
    assert re.search(r"trained (all )?2 (of its )?epochs", line) and re.search(r"(above|exceed) 2\b", line)
    command = line.split("segkit run ", 1)[1].split()
    assert command[:2] == ["--resume", str(run_dir)] and command[2] == "--epochs"
    followed = invoke("run", *command)
    assert followed.exit_code == 0, followed.output
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == int(command[3]) > 2


def test_print_config_of_a_resume_with_nothing_to_train_fails_as_the_run_does(two_epoch_run):
    printed = run_cli("run", "--resume", two_epoch_run, "--epochs", "1", "--print-config")
    real = run_cli("run", "--resume", two_epoch_run, "--epochs", "1")
    assert printed.exit_code == real.exit_code == 2, printed.output
    assert error_line(printed) == error_line(real) and printed.stdout == ""
    assert load_checkpoint(two_epoch_run / "last.pt")["epoch"] == 2
    more = invoke("run", "--resume", two_epoch_run, "--epochs", "3", "--print-config")
    assert more.exit_code == 0 and "epochs = 3  # flag" in more.stdout


# -- --image-size with --crop-size -------------------------------------------------------------------


def _config(tmp_path: Path, flags: dict, file: dict | None = None, recipe: str | None = None):
    path = None
    if file is not None:
        path = tmp_path / "run.toml"
        path.write_text("".join(f"{key} = {value}\n" for key, value in file.items()))
    return resolve_run_config(flags, path, recipe)


def test_an_image_size_other_than_the_crop_size_given_beside_it_is_refused_naming_both(tmp_path):
    with pytest.raises(UsageError) as refused:
        _config(tmp_path, {"crop_size": 32, "image_size": 100})
    message = str(refused.value)
    assert "\n" not in message and "--image-size 100" in message and "--crop-size 32" in message
    assert "--scale" in message  # what to give to train at a lower resolution


@pytest.mark.parametrize(
    "flags, file",
    [
        ({}, {"crop_size": 32, "image_size": 100}),  # both in one file
        ({"image_size": 100}, {"crop_size": 32}),  # the image size asked for after the crop size
    ],
)
def test_the_refusal_names_where_each_value_came_from(tmp_path, flags, file):
    with pytest.raises(UsageError) as refused:
        _config(tmp_path, flags, file)
    message = str(refused.value)
    assert "100" in message and "32" in message and f"from config {tmp_path / 'run.toml'}" in message


@pytest.mark.parametrize(
    "flags, file, recipe",
    [
        ({"crop_size": 32}, None, None),  # the default image size, 256
        ({"crop_size": 32, "image_size": 32}, None, None),
        ({"crop_size": 32}, {"image_size": 100}, None),  # a file's image size under the crop flag
        ({"crop_size": 32}, None, "budget"),  # the recipe's 128
        ({}, {"crop_size": 32, "image_size": 32}, None),
    ],
)
def test_with_crops_the_image_size_is_the_crop_size(tmp_path, flags, file, recipe):
    config = _config(tmp_path, flags, file, recipe)
    assert config["crop_size"] == config["image_size"] == 32
    if "image_size" not in flags and "image_size" not in (file or {}):
        assert "crop size" in config.sources["image_size"], config.sources


def test_without_crops_the_image_size_is_left_as_given(tmp_path):
    config = _config(tmp_path, {"image_size": 100})
    assert config["image_size"] == 100 and config.sources["image_size"] == "flag"
    assert _config(tmp_path, {}).sources["image_size"] == "dataset synthetic default"


def test_a_resumed_run_keeps_the_sizes_it_recorded(tmp_path):
    """Runs recorded before the rule (crop 16, image 32) resume as they were."""
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    recorded = {"config": {"crop_size": 16, "image_size": 32}, "sources": {}}
    (run_dir / "config.json").write_text(json.dumps(recorded))
    config = resolve_resumed_config(run_dir, {})
    assert (config["crop_size"], config["image_size"]) == (16, 32)


def test_a_crop_run_records_the_crop_size_as_its_network_input(tmp_path):
    """What the checkpoint records is what predict --no-tile resizes to and export traces at."""
    write_folder_layout(tmp_path / "data", [f"p{i}" for i in range(6)], size=(40, 56))
    args = tiny_run(epochs=1, batch_size=4, crop_size=16, callbacks=("csv",))
    at = args.index("--image-size")
    del args[at : at + 2]  # the crop size alone
    folder = [
        "--dataset",
        "folder",
        "--data-path",
        tmp_path / "data",
        "--dataset-option",
        "valid_fraction=0.34",
    ]
    result = invoke("run", *args, *folder, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    assert load_checkpoint(run_dir / "best.pt")["image_size"] == 16
    assert "crop size" in json.loads((run_dir / "config.json").read_text())["sources"]["image_size"]
    refused = invoke("run", *args, *folder, "--image-size", "100", "--out", tmp_path / "refused")
    assert refused.exit_code == 2 and "--image-size 100" in error_line(refused)
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())


# -- --print-config checks what the run checks -------------------------------------------------------

SYNTHETIC = tiny_run(batch_size=2, epochs=1, train_size=4, valid_size=2, callbacks=("csv",))


def _folder(tmp_path: Path, with_masks: bool = True) -> list[object]:
    write_folder_layout(tmp_path / "data", [f"p{i}" for i in range(4)])
    if not with_masks:
        shutil.rmtree(tmp_path / "data" / "masks")
    args = tiny_run(batch_size=2, epochs=1, callbacks=("csv",))
    return [*args, "--dataset", "folder", "--data-path", tmp_path / "data"]


CASES = {
    "unknown augmentation": (
        ["--augment", "heavy"],
        2,
        "unknown augmentation 'heavy'. Available augmentations: default, none, strong",
    ),
    "misspelt augmentation": (["--augment", "strnog"], 2, "Did you mean 'strong'?"),
    "misspelt model option": (
        ["--model-option", "base_chanels=8"],
        2,
        "model 'unet' has no option 'base_chanels' (did you mean 'base_channels'?)",
    ),
    "model option segkit sets": (["--model-option", "in_channels=1"], 2, "in_channels"),
    "bad model option value": (["--model-option", "pad_mode=mirror"], 2, "option 'pad_mode' must be"),
    "multi-class loss on binary data": (
        ["--loss", "ce"],
        2,
        "loss 'ce' is for multiclass tasks; for a binary task use one of: bce, bce_dice",
    ),
    "misspelt loss option": (
        ["--loss", "bce_tversky", "--loss-option", "alhpa=0.3"],
        2,
        "did you mean 'alpha'?",
    ),
    "misspelt callback option": (
        ["--callback", "early_stopping", "--callback-option", "early_stopping.patiense=3"],
        2,
        "did you mean 'patience'?",
    ),
    "misspelt dataset option": (["--dataset-option", "valid_sise=3"], 2, "did you mean 'valid_size'?"),
    "no CUDA device": (["--device", "cuda"], 2, "no CUDA GPU is available"),
    "mixed precision on the CPU": (["--amp", "bf16"], 2, "--amp bf16 needs a CUDA device"),
}


@pytest.mark.parametrize("extra, exit_code, message", CASES.values(), ids=CASES.keys())
def test_print_config_refuses_what_the_run_refuses_with_the_same_message(tmp_path, extra, exit_code, message):
    printed = run_cli("run", *SYNTHETIC, *extra, "--print-config")
    real = run_cli("run", *SYNTHETIC, *extra, "--out", tmp_path / "runs")
    assert real.exit_code == exit_code and message in error_line(real), real.output
    assert printed.exit_code == exit_code, printed.output
    assert error_line(printed) == error_line(real)
    assert printed.stdout == "" and "Traceback" not in printed.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    "with_masks, extra, exit_code, message",
    [
        (False, [], 1, "mask"),  # photos without masks: bad data
        (True, ["--loss", "softmax_dice"], 2, "for a binary task use one of"),
    ],
    ids=["no masks", "multi-class loss on a binary folder"],
)
def test_print_config_reads_the_data_as_the_run_does(tmp_path, with_masks, extra, exit_code, message):
    args = _folder(tmp_path, with_masks)
    printed = run_cli("run", *args, *extra, "--print-config")
    real = run_cli("run", *args, *extra, "--out", tmp_path / "runs")
    assert real.exit_code == exit_code and message in error_line(real), real.output
    assert printed.exit_code == exit_code and error_line(printed) == error_line(real), printed.output
    assert printed.stdout == ""


def test_print_config_of_settings_that_pass_the_checks_prints_them_and_writes_nothing(tmp_path):
    printed = invoke("run", *_folder(tmp_path), "--out", tmp_path / "runs", "--print-config")
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith("# segkit run settings") and 'dataset = "folder"' in printed.stdout
    assert not (tmp_path / "runs").exists()


def test_plan_print_config_refuses_what_the_run_refuses(tmp_path):
    """A frozen plan is checked as the run checks it: a multi-class loss on a binary folder is refused
    by `segkit plan --print-config` with the run's message, and nothing is printed."""
    args = [*_folder(tmp_path), "--loss", "softmax_dice", "--time-budget", "2m"]
    printed = run_cli("plan", *args, "--print-config")
    real = run_cli("run", *args, "--out", tmp_path / "runs")
    assert real.exit_code == 2 and "for a binary task use one of" in error_line(real), real.output
    assert printed.exit_code == 2 and error_line(printed) == error_line(real), printed.output
    assert printed.stdout == ""
