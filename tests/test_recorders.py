"""Callbacks "csv" and "excel": what they write after each epoch, on resume, and when the file is bad."""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path

import pytest
from fixtures import only_run_dir, run_cli, tiny_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

import segkit
from segkit.callbacks import Callback, RunContext
from segkit.errors import UsageError
from segkit_builtin import recorders
from segkit_builtin.recorders import (
    CSV_NAME,
    EXCEL_NAME,
    CsvRecorder,
    ExcelRecorder,
    RecorderWarning,
    build_csv_recorder,
    build_excel_recorder,
)

REQUIRED_KEYS = (
    "epoch",
    "train_loss",
    "train_dice",
    "valid_loss",
    "valid_dice",
    "lr",
    "epoch_time_s",
    "train_images_per_s",
)


def record(epoch: int, **extra) -> dict:
    """An epoch record like the engine's, with values derived from the epoch so rows are distinct."""
    values = {
        "epoch": epoch,
        "train_loss": 1 / (epoch + 1),
        "train_dice": 1 - 1 / (epoch + 2),
        "valid_loss": 1.5 / (epoch + 1),
        "valid_dice": 1 - 1.5 / (epoch + 3),
        "lr": 1e-3 * 0.9**epoch,
        "epoch_time_s": 10.0 + epoch,
        "train_images_per_s": 50.0 + epoch / 3,
    }
    values.update(extra)
    return values


def context_for(run_dir: Path, model: str = "unet") -> RunContext:
    return RunContext(run_dir=run_dir, config={"model": model}, model_name=model)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames or []), list(reader)


def read_sheet(path: Path) -> list[list]:
    workbook = load_workbook(path)
    try:
        return [list(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]
    finally:
        workbook.close()


def column(rows: list[list], name: str) -> dict[int, float]:
    index = rows[0].index(name)
    return {row[0]: row[index] for row in rows[1:] if row[index] is not None}


# -- registration --------------------------------------------------------------------------------
def test_both_recorders_are_default_callbacks():
    for name, cls in (("csv", CsvRecorder), ("excel", ExcelRecorder)):
        component = segkit.get_component("callback", name)
        assert component.metadata.get("default") is True
        assert isinstance(segkit.create_callback(name, run_dir=Path(".")), (cls, Callback))


@pytest.mark.parametrize("name", ["csv", "excel"])
def test_unknown_options_are_usage_errors(tmp_path, name):
    with pytest.raises(UsageError, match="flush_every"):
        segkit.create_callback(name, run_dir=tmp_path, flush_every=3)


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_row_is_on_disk_after_every_epoch(tmp_path):
    recorder = build_csv_recorder(tmp_path)
    context = context_for(tmp_path)
    for epoch in range(1, 5):
        metrics = record(epoch, valid_iou=0.5 + epoch / 100)
        recorder.on_epoch_end(context, metrics)
        # Read with a fresh handle, as another process would after a crash.
        header, rows = read_csv(tmp_path / CSV_NAME)
        assert header == list(metrics)
        assert [int(row["epoch"]) for row in rows] == list(range(1, epoch + 1))
        assert {key: float(value) for key, value in rows[-1].items()} == metrics  # full precision


def test_csv_writes_none_as_empty_and_widens_the_header_for_late_keys(tmp_path):
    recorder = build_csv_recorder(tmp_path)
    context = context_for(tmp_path)
    recorder.on_epoch_end(context, record(1, train_dice=None))
    recorder.on_epoch_end(context, record(2, valid_iou=0.7))
    recorder.on_epoch_end(context, {key: value for key, value in record(3).items() if key != "lr"})
    header, rows = read_csv(tmp_path / CSV_NAME)
    assert header == [*REQUIRED_KEYS, "valid_iou"]
    assert rows[0]["train_dice"] == "" and rows[0]["valid_iou"] == ""
    assert float(rows[1]["valid_iou"]) == 0.7
    assert rows[2]["lr"] == "" and rows[2]["valid_iou"] == ""
    assert len(rows) == 3


def test_resuming_appends_without_a_second_header(tmp_path):
    context = context_for(tmp_path)
    first = build_csv_recorder(tmp_path)
    for epoch in (1, 2, 3):
        first.on_epoch_end(context, record(epoch))
    resumed = build_csv_recorder(tmp_path)  # a new process after --resume
    for epoch in (4, 5):
        resumed.on_epoch_end(context, record(epoch))
    text = (tmp_path / CSV_NAME).read_text()
    assert text.count("train_loss") == 1
    _, rows = read_csv(tmp_path / CSV_NAME)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5]


def test_epochs_trained_again_after_a_resume_replace_their_rows(tmp_path):
    context = context_for(tmp_path)
    first = build_csv_recorder(tmp_path)
    for epoch in (1, 2, 3, 4):
        first.on_epoch_end(context, record(epoch))
    # The checkpoint was from epoch 2: epochs 3 and 4 run again, with different numbers.
    resumed = build_csv_recorder(tmp_path)
    for epoch in (3, 4, 5):
        resumed.on_epoch_end(context, record(epoch, valid_dice=0.25))
        _, rows = read_csv(tmp_path / CSV_NAME)
        epochs = [int(row["epoch"]) for row in rows]
        assert epochs == sorted(set(epochs)), "an epoch appears twice"
    assert epochs == [1, 2, 3, 4, 5]
    expected = [record(1)["valid_dice"], record(2)["valid_dice"], 0.25, 0.25, 0.25]
    assert [float(row["valid_dice"]) for row in rows] == expected


def test_a_half_written_last_line_is_repaired_on_resume(tmp_path):
    context = context_for(tmp_path)
    first = build_csv_recorder(tmp_path)
    for epoch in (1, 2):
        first.on_epoch_end(context, record(epoch))
    with open(tmp_path / CSV_NAME, "a", encoding="utf-8") as stream:
        stream.write("3,0.25,0.7")  # the process died while appending epoch 3; no newline
    resumed = build_csv_recorder(tmp_path)
    resumed.on_epoch_end(context, record(3))
    resumed.on_epoch_end(context, record(4))
    header, rows = read_csv(tmp_path / CSV_NAME)
    assert header == list(REQUIRED_KEYS)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert float(rows[2]["train_loss"]) == record(3)["train_loss"]


def test_an_unreadable_csv_is_moved_aside_with_a_warning(tmp_path):
    (tmp_path / CSV_NAME).write_bytes(b"\xff\xfe\x00garbage\x00")
    recorder = build_csv_recorder(tmp_path)
    with pytest.warns(RecorderWarning, match=CSV_NAME):
        recorder.on_epoch_end(context_for(tmp_path), record(1))
    assert (tmp_path / (CSV_NAME + ".unreadable")).read_bytes() == b"\xff\xfe\x00garbage\x00"
    assert [int(row["epoch"]) for row in read_csv(tmp_path / CSV_NAME)[1]] == [1]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.fixed_dictionaries({key: st.one_of(st.none(), finite) for key in REQUIRED_KEYS[1:]}),
        min_size=1,
        max_size=8,
    ),
    start=st.integers(0, 50),
)
def test_csv_round_trips_any_sequence_of_records(tmp_path_factory, values, start):
    run_dir = tmp_path_factory.mktemp("run")
    recorder = build_csv_recorder(run_dir)
    context = context_for(run_dir)
    records = [
        {"epoch": start + offset, **{key: metrics[key] for key in REQUIRED_KEYS[1:]}}
        for offset, metrics in enumerate(values)
    ]
    for metrics in records:
        recorder.on_epoch_end(context, metrics)
    header, rows = read_csv(run_dir / CSV_NAME)
    assert header == list(REQUIRED_KEYS)
    assert len(rows) == len(records)
    for row, metrics in zip(rows, records, strict=True):
        for key, value in metrics.items():
            assert (row[key] == "") if value is None else (float(row[key]) == value), key


def test_csv_rows_survive_a_crash_mid_run(tmp_path):
    """Everything recorded before an exception is on disk; nothing needs a clean shutdown."""
    recorder = build_csv_recorder(tmp_path)
    context = context_for(tmp_path)
    recorder.on_epoch_end(context, record(1))
    recorder.on_epoch_end(context, record(2))
    recorder.on_exception(context, RuntimeError("boom"))
    del recorder  # no on_fit_end
    assert [int(row["epoch"]) for row in read_csv(tmp_path / CSV_NAME)[1]] == [1, 2]


# -- Excel ---------------------------------------------------------------------------------------
def test_excel_has_the_report_columns(tmp_path):
    recorder = build_excel_recorder(tmp_path)
    context = context_for(tmp_path, "resnet34_unet")
    for epoch in (1, 2, 3):
        recorder.on_epoch_end(context, record(epoch, valid_iou=0.4))
        rows = read_sheet(tmp_path / EXCEL_NAME)
        assert len(rows) == 1 + epoch  # written after every epoch
    assert rows[0] == [
        "Epoch",
        "ResNet34_UNet Train Loss",
        "ResNet34_UNet Train Dice",
        "ResNet34_UNet Val Loss",
        "ResNet34_UNet Val Dice",
    ]
    assert [row[0] for row in rows[1:]] == [1, 2, 3]
    assert rows[2][1:] == [record(2)[key] for key in ("train_loss", "train_dice", "valid_loss", "valid_dice")]


def test_unknown_models_use_their_registered_name_and_label_overrides(tmp_path):
    build_excel_recorder(tmp_path).on_epoch_end(context_for(tmp_path, "attention_unet"), record(1))
    assert read_sheet(tmp_path / EXCEL_NAME)[0][1] == "attention_unet Train Loss"
    other = tmp_path / "labelled"
    build_excel_recorder(other, label="UNet-tversky").on_epoch_end(context_for(other), record(1))
    assert read_sheet(other / EXCEL_NAME)[0][1] == "UNet-tversky Train Loss"


def test_two_models_share_a_workbook_side_by_side(tmp_path):
    shared = tmp_path / "report"
    unet = build_excel_recorder(tmp_path / "run-a", path=str(shared))
    for epoch in (1, 2, 3):
        unet.on_epoch_end(context_for(tmp_path / "run-a", "unet"), record(epoch))
    resnet = build_excel_recorder(tmp_path / "run-b", path=str(shared / EXCEL_NAME))
    for epoch in (1, 2):
        resnet.on_epoch_end(context_for(tmp_path / "run-b", "resnet34_unet"), record(epoch, valid_dice=0.5))
    rows = read_sheet(shared / EXCEL_NAME)
    assert rows[0] == [
        "Epoch",
        "UNet Train Loss",
        "UNet Train Dice",
        "UNet Val Loss",
        "UNet Val Dice",
        "ResNet34_UNet Train Loss",
        "ResNet34_UNet Train Dice",
        "ResNet34_UNet Val Loss",
        "ResNet34_UNet Val Dice",
    ]
    assert column(rows, "UNet Val Dice") == {epoch: record(epoch)["valid_dice"] for epoch in (1, 2, 3)}
    assert column(rows, "ResNet34_UNet Val Dice") == {1: 0.5, 2: 0.5}
    assert not (tmp_path / "run-a" / EXCEL_NAME).exists()  # `path` replaced the run dir

    # Running UNet again replaces UNet's columns (all of them: the new run is shorter) and keeps ResNet's.
    again = build_excel_recorder(tmp_path / "run-c", path=str(shared))
    again.on_epoch_end(context_for(tmp_path / "run-c", "unet"), record(1, train_loss=9.0))
    rows = read_sheet(shared / EXCEL_NAME)
    assert rows[0][1:5] == ["UNet Train Loss", "UNet Train Dice", "UNet Val Loss", "UNet Val Dice"]
    assert column(rows, "UNet Train Loss") == {1: 9.0}
    assert column(rows, "ResNet34_UNet Val Dice") == {1: 0.5, 2: 0.5}
    assert [row[0] for row in rows[1:]] == [1, 2]


def test_a_resumed_run_continues_its_own_columns(tmp_path):
    first = build_excel_recorder(tmp_path)
    for epoch in (1, 2, 3):
        first.on_epoch_end(context_for(tmp_path), record(epoch))
    resumed = build_excel_recorder(tmp_path)
    for epoch in (3, 4):  # the checkpoint was from epoch 2
        resumed.on_epoch_end(context_for(tmp_path), record(epoch, valid_dice=0.125))
    rows = read_sheet(tmp_path / EXCEL_NAME)
    assert column(rows, "UNet Val Dice") == {
        1: record(1)["valid_dice"],
        2: record(2)["valid_dice"],
        3: 0.125,
        4: 0.125,
    }


def test_missing_and_nan_values_leave_cells_empty(tmp_path):
    metrics = record(1, train_dice=None, valid_loss=math.nan)
    build_excel_recorder(tmp_path).on_epoch_end(context_for(tmp_path), metrics)
    rows = read_sheet(tmp_path / EXCEL_NAME)
    assert rows[1][2] is None and rows[1][3] is None and rows[1][4] == record(1)["valid_dice"]


@pytest.mark.parametrize(
    "content",
    [b"this is not a zip file", b"PK\x03\x04 truncated zip", "foreign", "two-sheets"],
    ids=["garbage", "truncated", "foreign-sheet", "two-sheets"],
)
def test_a_corrupt_workbook_warns_names_the_file_and_training_goes_on(tmp_path, content):
    path = tmp_path / EXCEL_NAME
    if isinstance(content, str):  # a real workbook, but not one of ours
        workbook = Workbook()
        workbook.active.append(["Name", "Score"] if content == "foreign" else ["Epoch", "UNet Train Loss"])
        if content == "two-sheets":
            workbook.create_sheet("my notes").append(["keep me"])
        workbook.save(path)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    excel, csv_recorder = build_excel_recorder(tmp_path), build_csv_recorder(tmp_path)
    context = context_for(tmp_path)
    with pytest.warns(RecorderWarning, match=str(path)):
        for epoch in (1, 2):
            excel.on_epoch_end(context, record(epoch))  # must not raise
            csv_recorder.on_epoch_end(context, record(epoch))
    assert path.read_bytes() == before, "the user's file must be left as it was"
    assert [int(row["epoch"]) for row in read_csv(tmp_path / CSV_NAME)[1]] == [1, 2]


def test_a_locked_workbook_warns_once_and_later_epochs_retry(tmp_path, monkeypatch):
    """On Windows, replacing a workbook that Excel holds open fails with PermissionError."""
    real_replace = os.replace
    locked = {"on": True}

    def replace(source, destination):
        if locked["on"] and str(destination).endswith(".xlsx"):
            raise PermissionError(13, "The process cannot access the file", str(destination))
        return real_replace(source, destination)

    monkeypatch.setattr(recorders.os, "replace", replace)
    excel = build_excel_recorder(tmp_path)
    context = context_for(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (1, 2, 3):
            excel.on_epoch_end(context, record(epoch))
    messages = [str(w.message) for w in caught if issubclass(w.category, RecorderWarning)]
    assert len(messages) == 1 and str(tmp_path / EXCEL_NAME) in messages[0]
    assert not (tmp_path / EXCEL_NAME).exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".xlsx"], "temporary files left behind"
    locked["on"] = False  # the user closed Excel
    excel.on_epoch_end(context, record(4))
    assert [row[0] for row in read_sheet(tmp_path / EXCEL_NAME)[1:]] == [1, 2, 3, 4]


# -- through the engine ---------------------------------------------------------------------------
def test_a_tiny_run_writes_both_records(tmp_path):
    args = tiny_run(base_channels=2, image_size=16, epochs=2, batch_size=4, train_size=8, valid_size=4)
    result = run_cli("run", *args, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    header, rows = read_csv(run_dir / CSV_NAME)
    assert set(REQUIRED_KEYS) <= set(header) and [int(row["epoch"]) for row in rows] == [1, 2]
    sheet = read_sheet(run_dir / EXCEL_NAME)
    assert sheet[0][:2] == ["Epoch", "UNet Train Loss"] and [row[0] for row in sheet[1:]] == [1, 2]
    from_csv = {epoch: float(rows[epoch - 1]["valid_dice"]) for epoch in (1, 2)}
    assert column(sheet, "UNet Val Dice") == pytest.approx(from_csv)
