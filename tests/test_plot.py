"""``segkit plot``: curves as valid PNGs, summaries that agree with the numbers, clear errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segkit.cli.plot_cmd import plot
from segkit.errors import DataError, UsageError
from segkit.reporting.plotting import (
    axis_label,
    comparison_figure,
    read_run,
    run_figure,
    summarize_runs,
    write_summary_csv,
)

ENGINE_COLUMNS = [
    "epoch",
    "train_loss",
    "train_dice",
    "valid_loss",
    "valid_dice",
    "valid_dice_dataset",
    "valid_iou",
    "lr",
    "epoch_time_s",
    "train_images_per_s",
]
VALID_DICE_LABEL = "valid Dice (per-image mean, threshold 0.5, 64x64 network input)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(
    folder: Path,
    rows: list[dict],
    model: str = "unet",
    metrics: dict | None = None,
    settings_: dict | None = None,
) -> Path:
    """A run folder as `segkit run` leaves it: config.json and metrics.csv (cells written with repr)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "config": {
            "model": model,
            "loss": "bce_dice",
            "dataset": "synthetic",
            "image_size": 64,
            "threshold": 0.5,
            **(settings_ or {}),
        },
        "metrics": {"valid_dice": VALID_DICE_LABEL} if metrics is None else metrics,
    }
    (folder / "config.json").write_text(json.dumps(config))
    columns = list(rows[0])
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else repr(row[c]) for c in columns])
    return folder


def training_rows(epochs: int = 6, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for epoch in range(1, epochs + 1):
        loss = 1.0 / epoch + float(rng.uniform(0, 0.05))
        rows.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "train_dice": 1 - loss / 2,
                "valid_loss": loss + 0.1,
                "valid_dice": 0.9 - loss / 2,
                "valid_dice_dataset": 0.91 - loss / 2,
                "valid_iou": 0.8 - loss / 2,
                "lr": 1e-3,
                "epoch_time_s": 2.0 + float(rng.uniform()),
                "train_images_per_s": 100.0 + float(rng.uniform()),
            }
        )
    return rows


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 200 and image.height > 200
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path} looks blank"


# -- the command ------------------------------------------------------------------------------------


def test_one_run_writes_curves_and_summary_into_its_folder(tmp_path):
    run = write_run(tmp_path / "20260101-000000-unet-bce_dice", training_rows())
    result = CliRunner().invoke(plot, [str(run)])
    assert result.exit_code == 0, result.output
    for name in ("loss.png", "dice.png"):
        assert_png(run / name)
    with open(run / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["metric"] for row in rows} == set(ENGINE_COLUMNS) - {"epoch"}
    assert all(row["run"] == run.name and row["model"] == "unet" for row in rows)
    assert "valid_dice" in result.output and VALID_DICE_LABEL in result.output


def test_a_run_folder_the_engine_wrote(pets_run, tmp_path):
    """Not a hand-written CSV: the files `segkit run` left (two epochs on the tiny Pet layout)."""
    run = Path(shutil.copytree(pets_run[1], tmp_path / pets_run[1].name))
    written = list(csv.DictReader((run / "metrics.csv").open()))
    config = json.loads((run / "config.json").read_text())
    result = CliRunner().invoke(plot, [str(run)])
    assert result.exit_code == 0, result.output
    for name in ("loss.png", "dice.png"):
        assert_png(run / name)
    with open(run / "summary.csv", newline="") as handle:
        summary = {row["metric"]: row for row in csv.DictReader(handle)}
    for column in ("train_loss", "valid_loss", "train_dice", "valid_dice"):
        values = [float(row[column]) for row in written]
        assert float(summary[column]["first"]) == pytest.approx(values[0], rel=1e-12), column
        assert float(summary[column]["last"]) == pytest.approx(values[-1], rel=1e-12), column
        assert float(summary[column]["max"]) == pytest.approx(max(values), rel=1e-12), column
    assert all(row["model"] == config["config"]["model"] for row in summary.values())
    # The axis says what the run measured, as the engine described it in config.json.
    label = config["metrics"]["valid_dice"]
    assert label in result.output
    assert axis_label(read_run(run), "dice") == label.removeprefix("valid ")


def test_several_runs_are_compared_in_plots_by_default(tmp_path, monkeypatch):
    first = write_run(tmp_path / "runs" / "a", training_rows(seed=1), model="unet")
    second = write_run(tmp_path / "runs" / "b", training_rows(epochs=4, seed=2), model="resnet34_unet")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(plot, [str(first), str(second)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "plots"
    for stem in ("a-loss", "a-dice", "b-loss", "b-dice", "compare-loss", "compare-dice"):
        assert_png(out / f"{stem}.png")
    with open(out / "summary.csv", newline="") as handle:
        assert {(row["run"], row["model"]) for row in csv.DictReader(handle)} == {
            ("a", "unet"),
            ("b", "resnet34_unet"),
        }
    assert not any(path.suffix == ".png" for path in first.iterdir())


def test_out_option_and_runs_sharing_a_folder_name(tmp_path):
    first = write_run(tmp_path / "x" / "run", training_rows(seed=3))
    second = write_run(tmp_path / "y" / "run", training_rows(seed=4))
    result = CliRunner().invoke(plot, [str(first), str(second), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    names = {path.name for path in (tmp_path / "cmp").iterdir()}
    assert {"run-loss.png", "run-2-loss.png", "compare-dice.png", "summary.csv"} <= names


def test_comparison_legend_names_run_folder_and_model(tmp_path):
    runs = [
        read_run(write_run(tmp_path / "a", training_rows(), model="unet")),
        read_run(write_run(tmp_path / "b", training_rows(), model="resnet34_unet")),
    ]
    legend = [text.get_text() for text in comparison_figure(runs, "dice").legends[0].get_texts()]
    assert "a (unet) valid" in legend and "b (resnet34_unet) train" in legend


# -- what the axes say ------------------------------------------------------------------------------


def test_axis_label_is_config_json_description(tmp_path):
    run = read_run(write_run(tmp_path / "r", training_rows()))
    assert axis_label(run, "dice") == "Dice (per-image mean, threshold 0.5, 64x64 network input)"
    ylabel = run_figure(run, "dice").axes[0].get_ylabel().replace("\n", " ")
    assert ylabel == "Dice (per-image mean, threshold 0.5, 64x64 network input)"
    assert axis_label(run, "loss") == "Loss (bce_dice, mean per image)"


def test_labels_are_rebuilt_from_settings_when_config_json_has_none(tmp_path):
    run = read_run(
        write_run(
            tmp_path / "r",
            training_rows(),
            metrics={},
            settings_={"threshold": 0.3, "image_size": 96, "loss": "bce_tversky"},
        )
    )
    assert axis_label(run, "dice") == "Dice (per-image mean, threshold 0.3, 96x96 network input)"
    assert run.describe("valid_dice_dataset") == (
        "valid Dice (pooled over the dataset, threshold 0.3, 96x96 network input)"
    )
    assert "bce_tversky" in axis_label(run, "loss")


def test_runs_measured_differently_say_so_in_the_legend(tmp_path):
    small = read_run(write_run(tmp_path / "s", training_rows(), metrics={}, settings_={"image_size": 64}))
    large = read_run(write_run(tmp_path / "l", training_rows(), metrics={}, settings_={"image_size": 256}))
    figure = comparison_figure([small, large], "dice")
    axes = figure.axes[0]
    legend = " | ".join(text.get_text().replace("\n", " ") for text in figure.legends[0].get_texts())
    assert "64x64" in legend and "256x256" in legend and "see legend" in axes.get_ylabel().replace("\n", " ")


def test_run_without_config_json_still_plots(tmp_path):
    run = write_run(tmp_path / "bare", training_rows())
    (run / "config.json").unlink()
    loaded = read_run(run)
    assert loaded.model == "model unknown"
    assert axis_label(loaded, "dice") == "Dice (per-image mean; threshold and resolution not recorded)"
    assert axis_label(loaded, "loss") == "Loss (mean per image)"
    assert CliRunner().invoke(plot, [str(run)]).exit_code == 0
    assert_png(run / "dice.png")


# -- summaries agree with an independent computation ------------------------------------------------

cell = st.one_of(
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
)


def expected_summary(values: list) -> dict | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    first, last = finite[0], finite[-1]
    change = math.nan if first == 0 else 100.0 * (last - first) / abs(first)
    return {"min": min(finite), "max": max(finite), "first": first, "last": last, "change_percent": change}


def same_number(text: str, expected: float) -> bool:
    if math.isnan(expected):
        return text == ""
    return math.isclose(float(text), expected, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    tables=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=8),
            st.lists(st.sampled_from(ENGINE_COLUMNS[1:] + ["extra"]), min_size=1, max_size=5, unique=True),
        ),
        min_size=1,
        max_size=3,
    ),
    data=st.data(),
)
def test_summary_csv_agrees_with_independent_computation(tables, data):
    with tempfile.TemporaryDirectory() as folder:
        runs, generated = [], {}
        for index, (epochs, columns) in enumerate(tables):
            values = {
                c: data.draw(st.lists(cell, min_size=epochs, max_size=epochs), label=c) for c in columns
            }
            rows = [{"epoch": e + 1, **{c: values[c][e] for c in columns}} for e in range(epochs)]
            name = f"run{index}"
            runs.append(read_run(write_run(Path(folder) / name, rows)))
            generated[name] = values
        path = write_summary_csv(summarize_runs(runs), Path(folder) / "summary.csv")
        with open(path, newline="") as handle:
            written = {(row["run"], row["metric"]): row for row in csv.DictReader(handle)}
    for name, values in generated.items():
        for column, cells in values.items():
            expected = expected_summary(cells)
            if expected is None:
                assert (name, column) not in written
                continue
            row = written[(name, column)]
            for key, number in expected.items():
                assert same_number(row[key], number), (name, column, key, row[key], number)
    every_column = [cells for values in generated.values() for cells in values.values()]
    assert len(written) == sum(expected_summary(cells) is not None for cells in every_column)


# -- errors ---------------------------------------------------------------------------------------


def invoke_error(args: list[str]):
    result = CliRunner().invoke(plot, args)
    assert result.exit_code != 0
    return result.exception


def test_missing_folder_and_file_instead_of_folder_are_usage_errors(tmp_path):
    error = invoke_error([str(tmp_path / "nowhere")])
    assert isinstance(error, UsageError) and "nowhere" in str(error)
    afile = tmp_path / "metrics.csv"
    afile.write_text("epoch,valid_dice\n1,0.5\n")
    error = invoke_error([str(afile)])
    assert isinstance(error, UsageError) and str(afile) in str(error) and "not a folder" in str(error)


def test_run_without_metrics_csv_names_the_file(tmp_path):
    run = write_run(tmp_path / "r", training_rows())
    (run / "metrics.csv").unlink()
    error = invoke_error([str(run)])
    assert isinstance(error, DataError) and str(run / "metrics.csv") in str(error)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"epoch,train_loss,valid_dice\n", "no rows"),
        (b"epoch,train_loss,valid_dice\n1,0.5,0.3\n2,0.4\n", "row 3 has 2 fields"),
        (b"epoch,train_loss,valid_dice\n1,0.5,0.3\n2,0.4x,0.35\n", "'0.4x' is not a number"),
        (b"epoch,valid_dice,valid_dice\n1,0.5,0.3\n", "twice"),
        (b"\xff\xfe\x00\x01garbage\x00\x00", "not a readable CSV"),
        (b"epoch,note\n1,hello\n", "no numeric metric column"),
        (b"epoch,valid_dice\n,0.5\n", "epoch column"),
    ],
)
def test_corrupt_metrics_csv_is_a_data_error_naming_the_file(tmp_path, content, words):
    run = write_run(tmp_path / "r", training_rows())
    (run / "metrics.csv").write_bytes(content)
    error = invoke_error([str(run)])
    assert isinstance(error, DataError), error
    assert str(run / "metrics.csv") in str(error) and words in str(error)
    assert not (run / "loss.png").exists()


def test_corrupt_config_json_is_a_data_error(tmp_path):
    run = write_run(tmp_path / "r", training_rows())
    (run / "config.json").write_text("{not json")
    error = invoke_error([str(run)])
    assert isinstance(error, DataError) and str(run / "config.json") in str(error)


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"[1, 2]", "does not hold a JSON object"), (b'{"config": "\xff"}', "is not valid JSON")],
)
def test_a_config_json_that_is_not_an_object_or_not_utf8_is_a_data_error_naming_it(tmp_path, content, words):
    run = write_run(tmp_path / "r", training_rows())
    (run / "config.json").write_bytes(content)
    error = invoke_error([str(run)])
    assert isinstance(error, DataError) and str(run / "config.json") in str(error) and words in str(error)


def test_an_unreadable_config_json_is_a_data_error_naming_it(tmp_path, monkeypatch):
    run = write_run(tmp_path / "r", training_rows())
    real_read_text = Path.read_text

    def read_text(path, *args, **kwargs):
        if path.name == "config.json":  # as for a file another user's umask left unreadable
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    error = invoke_error([str(run)])
    assert isinstance(error, DataError), error
    assert f"{run / 'config.json'} cannot be read: Permission denied" == str(error)


def test_text_columns_are_set_aside_and_blank_cells_skipped(tmp_path):
    run = write_run(tmp_path / "r", training_rows(3))
    (run / "metrics.csv").write_text("epoch,valid_dice,note\n1,0.5,start\n2,,\n3,0.7,end\n")
    loaded = read_run(run)
    assert loaded.skipped_columns == ["note"] and list(loaded.columns) == ["valid_dice"]
    (row,) = summarize_runs([loaded])
    assert (row["first"], row["last"], row["min"], row["max"]) == (0.5, 0.7, 0.5, 0.7)
    assert row["change_percent"] == pytest.approx(40.0)


def test_out_that_is_or_is_under_a_file_is_refused(tmp_path):
    run = write_run(tmp_path / "r", training_rows())
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = CliRunner().invoke(plot, [str(run), "-o", str(blocker)])
    assert result.exit_code == 2 and "blocker" in result.output  # click's own check of the option
    error = invoke_error([str(run), "-o", str(blocker / "inside")])
    assert isinstance(error, UsageError) and str(blocker / "inside") in str(error)
