"""Callbacks "csv" and "excel": write each epoch's metrics to disk as training goes.

- ``csv`` writes ``metrics.csv`` in the run directory: one row per epoch, every key of the engine's
  epoch record a column. The file is flushed and fsync'ed after every epoch, so a crash loses nothing
  already recorded. Resuming a run appends to it; rows of epochs that are trained again after a resume
  are replaced, never duplicated.
- ``excel`` writes ``model_performance.xlsx`` in the layout of the course report this project grew
  from: ``Epoch`` then ``<Model> Train Loss``, ``<Model> Train Dice``, ``<Model> Val Loss``,
  ``<Model> Val Dice``. Several runs may share one workbook (option ``path``): each model's columns sit
  beside the others'. A workbook that cannot be read or written is reported as a warning and training
  goes on.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

import segkit
from segkit.atomic_files import atomic_write, atomic_write_text
from segkit.callbacks import Callback, RunContext
from segkit.component_options import Option, Parser, parse_component_options
from segkit.component_options import path as path_parser
from segkit.component_options import text as text_parser
from segkit_builtin.tracking import WarnOnce

CSV_NAME = "metrics.csv"
EXCEL_NAME = "model_performance.xlsx"
EXCEL_SHEET = "performance"

# How the report named the models; other models appear under their registered name.
MODEL_DISPLAY_NAMES = {"unet": "UNet", "resnet34_unet": "ResNet34_UNet"}

# Report column suffix -> key of the engine's epoch record.
EXCEL_COLUMNS = (
    ("Train Loss", "train_loss"),
    ("Train Dice", "train_dice"),
    ("Val Loss", "valid_loss"),
    ("Val Dice", "valid_dice"),
)


#: Columns of a run with several classes that are means over classes, not one class's figure.
_MEAN_IOU_KEYS = ("valid_iou_per_image", "valid_iou_all_classes")


def excel_columns(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's columns, and for a run with several classes its mean IoU and one IoU column
    per class (``Val IoU <class>``), all pooled over the valid split."""
    columns = list(EXCEL_COLUMNS)
    if "valid_iou_per_image" in record:  # the engine writes it for multiclass and multilabel runs
        columns.append(("Val mIoU", "valid_iou"))
        columns += [
            (f"Val IoU {key.removeprefix('valid_iou_')}", key)
            for key in record
            if key.startswith("valid_iou_") and key not in _MEAN_IOU_KEYS
        ]
    return columns


class RecorderWarning(UserWarning):
    """A metrics file could not be written; training continues without it."""


def _epoch_of(record: dict[str, Any]) -> int | None:
    try:
        return int(float(record["epoch"]))
    except (KeyError, TypeError, ValueError):
        return None


# -- CSV ---------------------------------------------------------------------------------------
def _csv_cell(value: Any) -> Any:
    """None becomes an empty cell; numbers keep full precision (``repr`` of a float round-trips)."""
    if value is None:
        return ""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a 0-d tensor or numpy scalar
        value = value.item()
    if isinstance(value, float):
        return repr(value)
    return value


class CsvRecorder(Callback):
    """Appends one row per epoch to ``metrics.csv``.

    Columns: the keys of the first epoch's record, in order. A key that first appears in a later
    epoch is added as a new column on the right and the file is rewritten (atomically) with the wider
    header, earlier rows leaving that cell empty; a key missing from a later epoch leaves its cell
    empty. ``None`` is written as an empty cell.
    """

    def __init__(self, run_dir: Path, filename: str = CSV_NAME) -> None:
        self.path = Path(run_dir) / filename
        self._columns: list[str] | None = None
        self._rows: list[dict[str, str]] | None = None

    def _load(self) -> None:
        """Read what an earlier (interrupted or resumed) session of this run already recorded.

        An unreadable file is moved aside (``metrics.csv.unreadable``) with a warning, never overwritten.
        """
        self._columns, self._rows = [], []
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        try:
            with open(self.path, newline="", encoding="utf-8") as stream:
                reader = csv.DictReader(stream)
                self._columns = [str(name) for name in reader.fieldnames or [] if name]
                # A longer row files its surplus under None: dropped, like cells of unnamed columns.
                self._rows = [{k: v for k, v in row.items() if k in self._columns} for row in reader]
        except (UnicodeDecodeError, csv.Error) as error:
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            warnings.warn(
                f"segkit csv recorder: could not read {self.path} ({type(error).__name__}: {error}); "
                f"moved it to {aside} and started a new one",
                RecorderWarning,
                stacklevel=4,
            )
            self._columns, self._rows = [], []

    def _rewrite(self) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self._columns, restval="")
        writer.writeheader()
        writer.writerows(self._rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, text.getvalue())

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        first_write = self._rows is None
        if first_write:
            self._load()
        row = {str(key): _csv_cell(value) for key, value in metrics.items()}
        epoch = _epoch_of(metrics)
        if first_write:
            self._backfill(context.history, epoch)
        # After a resume, epochs from the checkpoint onwards are trained again: their new rows replace
        # the old ones instead of repeating them.
        kept = [old for old in self._rows if epoch is None or not _epoch_at_or_after(old, epoch)]
        stale = len(kept) < len(self._rows)
        new_columns = [key for key in row if key not in self._columns]
        self._rows = kept + [{key: str(value) for key, value in row.items()}]
        self._columns.extend(new_columns)
        # Rewrite the whole file when the header or earlier rows change, and on a session's first write
        # (a crash may have left a half-written last line that an append would continue).
        if first_write or stale or new_columns or not self.path.exists():
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            csv.DictWriter(stream, fieldnames=self._columns, restval="").writerow(row)
            stream.flush()
            os.fsync(stream.fileno())

    def _backfill(self, history: list[dict[str, Any]], epoch: int | None) -> None:
        """Restore rows of earlier epochs the checkpoint remembers but the file lacks (a crash between
        writing a checkpoint and this file loses nothing)."""
        recorded = {_epoch_of(old) for old in self._rows}
        missing = [
            {str(key): _csv_cell(value) for key, value in record.items()}
            for record in history
            if _epoch_of(record) not in recorded and (epoch is None or (_epoch_of(record) or 0) < epoch)
        ]
        if not missing:
            return
        for record in missing:
            self._columns.extend(key for key in record if key not in self._columns)
        self._rows = sorted([*self._rows, *missing], key=lambda row: _epoch_of(row) or 0)


def _epoch_at_or_after(row: dict[str, Any], epoch: int) -> bool:
    recorded = _epoch_of(row)
    return recorded is not None and recorded >= epoch


def _file_name(value: Any) -> str:
    return str(path_parser(value))


CSV_OPTIONS = {
    "filename": Option(
        CSV_NAME, Parser(_file_name, "a file name"), help="name of the file in the run folder"
    ),
}


def build_csv_recorder(run_dir: Path, **options: Any) -> CsvRecorder:
    """Write every epoch's metrics to metrics.csv in the run directory (flushed each epoch)."""
    parsed = parse_component_options("callback", "csv", options, CSV_OPTIONS)
    return CsvRecorder(Path(run_dir), filename=parsed["filename"])


# -- Excel -------------------------------------------------------------------------------------
def display_name(model_name: str) -> str:
    """The model's name as the report wrote it (``unet`` -> ``UNet``), else the registered name."""
    return MODEL_DISPLAY_NAMES.get(model_name, model_name)


def _number(value: Any) -> float | int | None:
    """A cell value: numbers stay numbers; None, NaN and anything non-numeric become an empty cell."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def read_performance_table(path: Path) -> tuple[list[str], dict[str, dict[int, Any]]]:
    """The columns of a performance workbook, in order, and each column's values by epoch.

    Raises whatever openpyxl raises for a file that is not a readable workbook.
    """
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        if len(workbook.sheetnames) != 1:
            # Rewriting would drop the other sheets: this is someone's own workbook, not ours.
            raise ValueError(f"it has {len(workbook.sheetnames)} sheets; segkit writes one-sheet workbooks")
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = list(next(rows, ()))
        if not header or header[0] != "Epoch":
            raise ValueError(f"its first column is headed {header[0] if header else None!r}, not 'Epoch'")
        named = {position: str(name) for position, name in enumerate(header) if position and name is not None}
        table: dict[str, dict[int, Any]] = {name: {} for name in named.values()}
        for row in rows:
            if not row or row[0] is None:
                continue
            epoch = int(row[0])
            for position, name in named.items():
                if position < len(row) and row[position] is not None:
                    table[name][epoch] = row[position]
    finally:
        workbook.close()
    return list(table), table


def write_performance_table(path: Path, columns: list[str], table: dict[str, dict[int, Any]]) -> None:
    """Write ``Epoch`` and ``columns`` (values by epoch) as a new workbook, atomically."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = EXCEL_SHEET
    sheet.append(["Epoch", *columns])
    epochs = sorted({epoch for column in columns for epoch in table[column]})
    for epoch in epochs:
        sheet.append([epoch, *(table[column].get(epoch) for column in columns)])
    sheet.freeze_panes = "B2"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, workbook.save)


class ExcelRecorder(Callback):
    """Keeps this run's four report columns in ``model_performance.xlsx`` up to date after each epoch.

    Other models' columns in the workbook are kept where they are; this model's columns are replaced:
    rows of epochs before the first epoch of this session are kept (a resumed run continues its own
    columns), the rest come from this session (a fresh run of the same model starts them over).
    The workbook is rewritten whole (one sheet, "performance") after each epoch; a file that is not
    such a workbook (unreadable, several sheets, first column not "Epoch") is left untouched with a
    warning. Concurrent runs writing one shared workbook at the same moment may lose each other's
    update.
    """

    def __init__(self, run_dir: Path, path: Path | None = None, label: str | None = None) -> None:
        target = Path(path) if path is not None else Path(run_dir)
        self.path = target if target.suffix.lower() == ".xlsx" else target / EXCEL_NAME
        self.label = label
        self._records: dict[int, dict[str, Any]] = {}
        self._first_epoch: int | None = None
        self._warn = WarnOnce(
            "segkit excel recorder",
            RecorderWarning,
            then=". Training continues; metrics.csv still records every epoch.",
        )

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        epoch = _epoch_of(metrics)
        if epoch is None:
            epoch = (max(self._records) + 1) if self._records else int(getattr(context, "epoch", 0) or 0)
        if self._first_epoch is None:
            self._first_epoch = epoch
        self._records[epoch] = dict(metrics)
        model = self.label or display_name(context.model_name)
        spec = excel_columns(metrics)
        names = [f"{model} {suffix}" for suffix, _ in spec]

        columns: list[str] = []
        table: dict[str, dict[int, Any]] = {}
        if self.path.exists():
            try:
                columns, table = read_performance_table(self.path)
            except Exception as error:  # noqa: BLE001 - a bad workbook must never stop training
                self._warn(
                    f"read the workbook (corrupt, locked or not a segkit performance sheet) {self.path}",
                    error,
                )
                return  # leave the user's file untouched
        for name, (_, key) in zip(names, spec, strict=True):
            kept = {e: v for e, v in table.get(name, {}).items() if e < self._first_epoch}
            kept.update({e: _number(record.get(key)) for e, record in self._records.items()})
            table[name] = {e: v for e, v in kept.items() if v is not None}
            if name not in columns:
                columns.append(name)
        try:
            write_performance_table(self.path, columns, table)
        except Exception as error:  # noqa: BLE001 - e.g. PermissionError while Excel holds the file
            self._warn(f"write the workbook {self.path}", error)


def _unless_none(parser: Parser) -> Parser:
    # Not ``optional(...)``: "none" is a fine label, and "" is a mistake rather than "unset".
    return Parser(lambda value: None if value is None else parser(value), parser.allowed)


EXCEL_OPTIONS = {
    "path": Option(
        None,
        _unless_none(path_parser),
        help=f"the workbook, or a folder for {EXCEL_NAME} (default: the run folder); runs may share one",
    ),
    "label": Option(
        None, _unless_none(text_parser), help="the model's name in column headers (default: UNet, ...)"
    ),
}


def build_excel_recorder(run_dir: Path, **options: Any) -> ExcelRecorder:
    """Write the report's loss/Dice columns per epoch to model_performance.xlsx (shareable across runs)."""
    parsed = parse_component_options("callback", "excel", options, EXCEL_OPTIONS)
    return ExcelRecorder(Path(run_dir), path=parsed["path"], label=parsed["label"])


@segkit.hookimpl
def register_callbacks(register):
    register(
        "csv",
        build_csv_recorder,
        description="Write each epoch's metrics to metrics.csv",
        default=True,
        options=CSV_OPTIONS,
    )
    register(
        "excel",
        build_excel_recorder,
        description="Write loss/Dice per epoch to model_performance.xlsx, models side by side",
        default=True,
        options=EXCEL_OPTIONS,
    )
