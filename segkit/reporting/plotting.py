"""Training curves and summary tables of run folders: what ``segkit plot`` draws and prints.

A run folder holds ``metrics.csv`` (one row per epoch, written by the csv recorder) and
``config.json`` (the resolved settings, and under ``"metrics"`` the full label of each figure).
``read_run`` loads both; ``summarize_runs`` gives, per run and numeric column, the min, max, first,
last and percent change; ``plot_runs`` draws loss and Dice curves as PNG files, one pair per run and,
for several runs, a pair with every run on the same axes.

Every axis says what its numbers are ("Dice (per-image mean, threshold 0.5, 64x64 network input)"),
taken from config.json when it records the label and rebuilt from the recorded settings otherwise.
Figures are drawn on ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, so plotting
needs no display and never changes pyplot's global backend.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segkit.config.run_folder import read_run_config
from segkit.errors import DataError, SegkitError, UsageError

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("run", "model", "metric", "min", "max", "first", "last", "change_percent", "description")

#: Curves drawn per run: the PNG's name stem, the columns on its axes, and the column whose label
#: names the y axis (the validation figure, the one runs are compared on).
FAMILIES = {
    "loss": (("train_loss", "valid_loss"), "valid_loss"),
    "dice": (("train_dice", "valid_dice"), "valid_dice"),
}
SPLIT_STYLES = {"train": "--", "valid": "-"}

# Columns the engine writes besides the scores, and what they mean.
_PLAIN_LABELS = {
    "epoch": "epoch",
    "lr": "learning rate (at the end of the epoch)",
    "epoch_time_s": "epoch wall time in seconds (training and validation)",
    "train_images_per_s": "training throughput (images per second)",
    "skipped_steps": "training steps skipped (non-finite loss)",
}
# Score columns: (metric, reduction, split) for segkit.metrics.binary.describe_metric.
_SCORE_COLUMNS = {
    "train_dice": ("dice", "per_image", "train"),
    "valid_dice": ("dice", "per_image", "valid"),
    "valid_dice_dataset": ("dice", "dataset", "valid"),
    "valid_iou": ("iou", "per_image", "valid"),
    "valid_iou_dataset": ("iou", "dataset", "valid"),
}


# Words for score labels when config.json lacks the settings describe_metric needs.
_SCORE_WORDS = {
    "dice": "Dice",
    "iou": "IoU",
    "per_image": "per-image mean",
    "dataset": "pooled over the dataset",
}


@dataclass
class RunMetrics:
    """One run folder's per-epoch numbers and what they mean.

    ``columns`` maps each numeric column of metrics.csv (in file order, ``epoch`` excluded) to its
    values, one per row, NaN where the cell was blank. ``epochs`` is the x axis: the ``epoch``
    column, or 1, 2, ... when the file has none. ``labels`` maps columns to their full description.
    """

    path: Path
    model: str
    epochs: np.ndarray
    columns: dict[str, np.ndarray]
    labels: dict[str, str] = field(default_factory=dict)
    skipped_columns: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """How the run is named in legends and tables: folder name and model."""
        return f"{self.name} ({self.model})"

    def describe(self, column: str) -> str:
        return self.labels.get(column, column)


# -- reading ----------------------------------------------------------------------------------------


def read_run(run_dir: Path) -> RunMetrics:
    """Load ``run_dir``'s metrics.csv and config.json (which may be absent: labels are then plainer).

    Raises ``UsageError`` when ``run_dir`` is not a folder, ``DataError`` when metrics.csv is missing,
    empty or malformed, or config.json cannot be read or is not a JSON object; each message names the file.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"run folder {run_dir} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder; segkit plot takes run folders (made by segkit run)")
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise DataError(
            f"{metrics_path} is missing: {run_dir} has no per-epoch records (was the csv recorder disabled, "
            f"or did the run stop before its first epoch ended?)"
        )
    config = read_run_config(run_dir, missing_ok=True)
    header, table = read_metrics_csv(metrics_path)
    columns, skipped = numeric_columns(metrics_path, header, table)
    if "epoch" in columns:
        epochs = columns.pop("epoch")
        if not np.isfinite(epochs).all():
            raise DataError(f"{metrics_path}: the epoch column has blank or non-finite cells")
    else:
        epochs = np.arange(1, len(table) + 1, dtype=float)
    if not columns:
        raise DataError(f"{metrics_path} has no numeric metric column (columns: {', '.join(header)})")
    recorded = config.get("config")
    settings = recorded if isinstance(recorded, dict) else {}
    model = str(settings.get("model", "model unknown"))
    labels = {column: describe_column(column, config) for column in columns}
    return RunMetrics(run_dir.resolve(), model, epochs, columns, labels, skipped)


def read_metrics_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a CSV file, every row as long as the header."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV file: {error}") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read: {error.strerror or error}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path} is empty")
    header = [name.strip() for name in rows[0]]
    if not all(header):
        raise DataError(f"{path}: the header has an unnamed column: {rows[0]}")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: the header names these columns twice: {', '.join(duplicates)}")
    table = rows[1:]
    if not table:
        raise DataError(f"{path} has a header but no rows: no epoch was recorded")
    for number, row in enumerate(table, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {number} has {len(row)} fields but the header has {len(header)} "
                f"(a truncated or hand-edited file?)"
            )
    return header, table


def numeric_columns(
    path: Path, header: list[str], table: list[list[str]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Parse every column as numbers (blank cells become NaN).

    A column with no number at all (notes, names) is set aside and returned in the second value; a
    column mixing numbers with text is corruption and raises ``DataError`` naming row and column.
    """
    columns: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for index, name in enumerate(header):
        cells = [row[index].strip() for row in table]
        values, bad = [], []
        for number, cell in enumerate(cells, start=2):
            if not cell:
                values.append(math.nan)
                continue
            try:
                values.append(float(cell))
            except ValueError:
                bad.append((number, cell))
        filled = sum(1 for cell in cells if cell)
        if bad and len(bad) == filled:
            skipped.append(name)
        elif bad:
            number, cell = bad[0]
            raise DataError(f"{path}: row {number}, column {name!r}: {cell!r} is not a number")
        else:
            columns[name] = np.asarray(values, dtype=float)
    return columns, skipped


def describe_column(column: str, config: dict[str, Any]) -> str:
    """The full label of a metrics.csv column: config.json's own when recorded, else rebuilt."""
    recorded = config.get("metrics")
    if isinstance(recorded, dict) and isinstance(recorded.get(column), str):
        return recorded[column]
    recorded_config = config.get("config")
    settings = recorded_config if isinstance(recorded_config, dict) else {}
    if column in _SCORE_COLUMNS:
        metric, reduction, split = _SCORE_COLUMNS[column]
        try:
            from segkit.metrics.binary import describe_metric

            text = describe_metric(metric, reduction, settings["threshold"], settings["image_size"], split)
        except (KeyError, TypeError, ValueError, SegkitError):
            text = (
                f"{split} {_SCORE_WORDS[metric]} ({_SCORE_WORDS[reduction]}; "
                f"threshold and resolution not recorded)"
            )
        return text + (", running mean over the epoch's training batches" if split == "train" else "")
    if column in ("train_loss", "valid_loss"):
        split = column.split("_")[0]
        loss = settings.get("loss")
        where = "mean per image over the epoch's training batches" if split == "train" else "mean per image"
        return f"{split} loss ({loss + ', ' if loss else ''}{where})"
    return _PLAIN_LABELS.get(column, column)


# -- summary ----------------------------------------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, float] | None:
    """Min, max, first, last and percent change of the finite values, in order; None if none is finite.

    ``change_percent`` is ``(last - first) / |first| * 100``: NaN when ``first`` is 0.
    """
    finite = [float(value) for value in values if math.isfinite(value)]
    if not finite:
        return None
    first, last = finite[0], finite[-1]
    change = (last - first) / abs(first) * 100 if first != 0 else math.nan
    return {"min": min(finite), "max": max(finite), "first": first, "last": last, "change_percent": change}


def summarize_runs(runs: Sequence[RunMetrics]) -> list[dict[str, Any]]:
    """One row per run and numeric column (blank or non-finite cells left out), keys ``SUMMARY_COLUMNS``."""
    rows = []
    for run in runs:
        for column, values in run.columns.items():
            stats = summarize(values)
            if stats is not None:
                rows.append(
                    {
                        "run": run.name,
                        "model": run.model,
                        "metric": column,
                        **stats,
                        "description": run.describe(column),
                    }
                )
    return rows


def write_summary_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write the summary rows; numbers at full precision (``repr``), undefined changes as blank cells."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for row in rows:
            writer.writerow([_csv_cell(row[column]) for column in SUMMARY_COLUMNS])
    return Path(path)


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def format_summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as an aligned text table, followed by what each metric column means."""
    header = ("run", "metric", "min", "max", "first", "last", "change")
    lines = [header]
    for row in rows:
        change = row["change_percent"]
        lines.append(
            (
                f"{row['run']} ({row['model']})",
                row["metric"],
                *(f"{row[key]:.4g}" for key in ("min", "max", "first", "last")),
                "n/a" if math.isnan(change) else f"{change:+.1f}%",
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    meanings: dict[str, str] = {}
    for row in rows:
        if row["description"] != row["metric"]:
            meanings.setdefault(row["metric"], row["description"])
    if meanings:
        text.append("")
        text.extend(f"{metric}: {description}" for metric, description in meanings.items())
    text.append("change: (last - first) / |first|, in percent; min, max, first and last skip blank cells.")
    return "\n".join(text)


# -- plotting ---------------------------------------------------------------------------------------


def plot_runs(runs: Sequence[RunMetrics], out_dir: Path) -> list[Path]:
    """Draw the loss and Dice PNGs into ``out_dir`` and return their paths.

    One run: ``loss.png`` and ``dice.png``. Several runs: ``<run>-loss.png`` and ``<run>-dice.png``
    per run, and ``compare-loss.png`` and ``compare-dice.png`` with every run on the same axes. A
    family whose columns a run lacks is not drawn for it.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    prefixes = [""] if len(runs) == 1 else [f"{name}-" for name in unique_names(runs)]
    for run, prefix in zip(runs, prefixes, strict=True):
        for family, (columns, _) in FAMILIES.items():
            if any(column in run.columns for column in columns):
                written.append(_save(run_figure(run, family), out_dir / f"{prefix}{family}.png"))
        if class_columns(run):
            written.append(_save(class_figure(run), out_dir / f"{prefix}classes.png"))
    if len(runs) > 1:
        for family, (columns, _) in FAMILIES.items():
            if any(column in run.columns for run in runs for column in columns):
                written.append(_save(comparison_figure(runs, family), out_dir / f"compare-{family}.png"))
    return written


def plot_folds(folds: Sequence[RunMetrics], out_dir: Path) -> list[Path]:
    """A ``--folds`` parent's ``folds-loss.png`` and ``folds-dice.png``: each fold's curve and their band."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [
        _save(folds_figure(folds, family), Path(out_dir) / f"folds-{family}.png")
        for family, (_, main) in FAMILIES.items()
        if any(main in run.columns for run in folds)
    ]


def folds_figure(folds: Sequence[RunMetrics], family: str):
    """The folds' validation curves of ``family`` (each fold on its own held-out photos), their mean
    over the folds that reached each epoch, and a band of one standard deviation about it (drawn
    where at least two folds reached the epoch)."""
    _, main = FAMILIES[family]
    present = [run for run in folds if main in run.columns]
    title = "Loss" if family == "loss" else "Dice"
    figure, axes = _figure(f"{title} of {len(present)} folds")
    for index, run in enumerate(present):
        axes.plot(
            run.epochs,
            run.columns[main],
            "-",
            color=f"C{index % 10}",
            alpha=0.45,
            linewidth=1,
            label=run.name,
        )
    epochs = sorted({float(epoch) for run in present for epoch in run.epochs})
    per_epoch = [
        [float(run.columns[main][list(run.epochs).index(epoch)]) for run in present if epoch in run.epochs]
        for epoch in epochs
    ]
    means = np.array([np.nanmean(values) for values in per_epoch])
    spreads = np.array([np.nanstd(values, ddof=1) if len(values) > 1 else np.nan for values in per_epoch])
    axes.plot(epochs, means, "-", color="black", linewidth=2, label="mean over the folds")
    axes.fill_between(
        epochs, means - spreads, means + spreads, color="grey", alpha=0.3, label="+- 1 std over the folds"
    )
    axes.set_ylabel(_wrap(axis_label(present[0], family)))
    _legend_below(figure, axes, note=_wrap("valid: each fold's held-out photos after the epoch.", 120))
    return figure


def unique_names(runs: Sequence[RunMetrics]) -> list[str]:
    """Run folder names, with ``-2``, ``-3``, ... added where two runs share a folder name."""
    seen: dict[str, int] = {}
    names = []
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
        names.append(run.name if seen[run.name] == 1 else f"{run.name}-{seen[run.name]}")
    return names


def axis_label(run: RunMetrics, family: str) -> str:
    """The y-axis label of a family: its validation column's description without the split word."""
    columns, main = FAMILIES[family]
    column = main if main in run.columns else next(c for c in columns if c in run.columns)
    description = run.describe(column)
    for split in SPLIT_STYLES:
        if description.startswith(split + " "):
            description = description[len(split) + 1 :]
            break
    description = description.split("), ")[0] + ")" if "), " in description else description
    return description[:1].upper() + description[1:]


def _figure(title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    return figure, axes


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _split_note(family: str) -> str:
    better = "Lower" if family == "loss" else "Higher"
    return (
        f"train: running mean over each epoch's training batches (augmented, weights still changing); "
        f"valid: the validation split after the epoch. {better} is better."
    )


def run_figure(run: RunMetrics, family: str):
    """One run's train and valid curves of ``family`` ("loss" or "dice"), best valid Dice starred."""
    columns, _ = FAMILIES[family]
    figure, axes = _figure(f"{run.label}: {family if family == 'loss' else 'Dice'}")
    for column in columns:
        if column in run.columns:
            split = column.split("_")[0]
            axes.plot(run.epochs, run.columns[column], SPLIT_STYLES[split], marker=".", label=split)
    if family == "dice" and "valid_dice" in run.columns and np.isfinite(run.columns["valid_dice"]).any():
        best = int(np.nanargmax(run.columns["valid_dice"]))
        epoch, score = run.epochs[best], run.columns["valid_dice"][best]
        axes.plot(
            [epoch],
            [score],
            "*",
            markersize=14,
            color="black",
            label=f"best valid {score:.4f} (epoch {epoch:g})",
        )
    axes.set_ylabel(_wrap(axis_label(run, family)))
    axes.legend()
    figure.text(0.01, 0.0, _wrap(_split_note(family), 130), fontsize=8, va="bottom")
    figure.get_layout_engine().set(rect=(0, 0.06, 1, 0.94))
    return figure


def comparison_figure(runs: Sequence[RunMetrics], family: str):
    """Every run's curves of ``family`` on one axes: a colour per run, dashed train, solid valid."""
    columns, _ = FAMILIES[family]
    present = [run for run in runs if any(column in run.columns for column in columns)]
    labels = {axis_label(run, family) for run in present}
    same_meaning = len(labels) == 1
    title = "Loss" if family == "loss" else "Dice"
    figure, axes = _figure(f"{title} of {len(present)} runs")
    colors = [f"C{index % 10}" for index in range(len(present))]
    for run, name, color in zip(present, unique_names(present), colors, strict=True):
        suffix = "" if same_meaning else f"; {axis_label(run, family)}"
        for column in columns:
            if column in run.columns:
                split = column.split("_")[0]
                axes.plot(
                    run.epochs,
                    run.columns[column],
                    SPLIT_STYLES[split],
                    color=color,
                    marker=".",
                    label=f"{name} ({run.model}) {split}{suffix}",
                )
    ylabel = labels.pop() if same_meaning else f"{title} (runs differ in what it measures: see legend)"
    axes.set_ylabel(_wrap(ylabel))
    _legend_below(figure, axes, note=_wrap(_split_note(family), 120))
    return figure


#: Characters a legend entry below the axes keeps on one line (two columns fit an 8-inch figure).
_LEGEND_LINE = 56


def _legend_below(figure, axes, note: str | None = None) -> None:
    """The legend below the axes, outside them: long entries (run folders, what each run measures, class
    names) then neither run off the figure nor cover the axes' labels or curves. The figure grows
    taller with the entries, so that the axes keep their height. ``note`` heads the legend."""
    handles, labels = axes.get_legend_handles_labels()
    if not handles:
        return
    wrapped = [_wrap(label, _LEGEND_LINE) for label in labels]
    columns = 1 if len(wrapped) == 1 else 2
    lines_per_row = [
        max(label.count("\n") + 1 for label in wrapped[start : start + columns])
        for start in range(0, len(wrapped), columns)
    ]
    figure.legend(
        handles,
        wrapped,
        loc="outside lower center",
        ncols=columns,
        fontsize=8,
        title=note,
        title_fontsize=8,
        alignment="left",
    )
    lines = sum(lines_per_row) + (note.count("\n") + 1 if note else 0)
    figure.set_figheight(figure.get_figheight() + 0.17 * lines + 0.1 * len(lines_per_row))


#: Columns of valid_iou_* that are means over classes, not one class's figure.
_MEAN_IOU_COLUMNS = ("valid_iou_per_image", "valid_iou_all_classes", "valid_iou_dataset")


def class_columns(run: RunMetrics) -> dict[str, str]:
    """A multi-class run's per-class validation IoU columns, by class name (empty for binary runs)."""
    return {
        column.removeprefix("valid_iou_"): column
        for column in run.columns
        if column.startswith("valid_iou_") and column not in _MEAN_IOU_COLUMNS
    }


def class_figure(run: RunMetrics):
    """One curve per class: each class's pooled validation IoU by epoch, and the mean over classes."""
    figure, axes = _figure(f"{run.label}: IoU per class")
    for index, (name, column) in enumerate(class_columns(run).items()):
        axes.plot(run.epochs, run.columns[column], "-", marker=".", color=f"C{index % 10}", label=name)
    if "valid_iou" in run.columns:
        axes.plot(run.epochs, run.columns["valid_iou"], "-", color="black", linewidth=2.5, label="mean")
    axes.set_ylabel(_wrap("valid IoU per class (pooled over the split); mean: " + run.describe("valid_iou")))
    _legend_below(figure, axes)
    return figure


def plot_confusion_matrix(confusion: dict[str, Any], path: Path) -> Path:
    """``confusion_figure`` written to ``path`` as a PNG."""
    return _save(confusion_figure(confusion), Path(path))


def confusion_figure(confusion: dict[str, Any]):
    """The confusion matrix of ``segkit evaluate``'s summary as a picture: each truth row normalised
    to fractions of its pixels (the diagonal is each class's recall), with the pixel counts noted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(confusion["classes"])
    pixels = np.asarray(confusion["pixels"], dtype=float)
    fractions = pixels / np.maximum(pixels.sum(axis=1, keepdims=True), 1)
    side = max(4.5, 0.6 * len(names) + 2)
    figure = Figure(figsize=(side + 1, side), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # aspect "auto": with square cells forced, the layout's room for long class names went to the
    # shrunk axes' sides, and the y label fell off the figure; the figure is near square anyway.
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    # A figure title (centred on the figure, room made by the layout), on two lines: a narrow figure
    # (few classes) cut the one-line axes title at both ends.
    figure.suptitle("Confusion matrix\n(each row: fractions of that class's pixels)")
    if len(names) <= 20:
        for row in range(len(names)):
            for column in range(len(names)):
                value = fractions[row, column]
                colour = "white" if value > 0.5 else "black"
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046)
    return figure


def _save(figure, path: Path) -> Path:
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    return path
