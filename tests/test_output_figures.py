"""The layout of every figure segkit draws, at the size it draws it: each title, axis label, tick label,
legend and note lies inside the figure, and no legend covers a title, an axis label or tick labels;
with short and long run and class names, few and many classes (measured with matplotlib's renderer)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segkit.reporting.plotting import class_figure, comparison_figure, confusion_figure, read_run, run_figure
from segkit.reporting.report import histogram_figure

TOLERANCE = 1.0  # pixels: antialiasing


TILES = "valid Dice (per-image mean, threshold 0.5, native resolution, 256x256 tiles)"
RESIZED = "valid Dice (per-image mean, threshold 0.5, 128x128 network input)"


def write_run(folder: Path, classes: list[str], model: str = "unet", label: str = TILES) -> Path:
    """A run folder as ``segkit run`` leaves it: config.json and a metrics.csv of six epochs."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"config": {"model": model, "loss": "bce_dice"}, "metrics": {"valid_dice": label}})
    )
    columns = ["epoch", "train_loss", "valid_loss", "train_dice", "valid_dice", "valid_iou"]
    columns += [f"valid_iou_{name}" for name in classes]
    rng = np.random.default_rng(len(folder.name))
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for epoch in range(1, 7):
            writer.writerow([epoch, *(round(float(v), 4) for v in rng.uniform(0.1, 0.9, len(columns) - 1))])
    return folder


def drawn_ticks(axis) -> list:
    """The tick labels drawn: those of ticks within the view (matplotlib keeps others, undrawn)."""
    low, high = sorted(axis.get_view_interval())
    return [tick.label1 for tick in axis.get_major_ticks() if low - 1e-9 <= tick.get_loc() <= high + 1e-9]


def boxes(figure) -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
    """``(texts, legends)``: the drawn extent of every piece of text and of every legend, by name."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    texts = []
    for index, axes in enumerate(figure.axes):
        pieces = [("title", axes.title), ("x label", axes.xaxis.label), ("y label", axes.yaxis.label)]
        pieces += [("tick label", label) for axis in (axes.xaxis, axes.yaxis) for label in drawn_ticks(axis)]
        for name, text in pieces:
            if text.get_visible() and text.get_text():
                texts.append((f"axes {index} {name} {text.get_text()!r}", text.get_window_extent(renderer)))
    for text in figure.texts:
        texts.append((f"figure text {text.get_text()[:30]!r}", text.get_window_extent(renderer)))
    legends = [axes.get_legend() for axes in figure.axes if axes.get_legend() is not None] + figure.legends
    return texts, [
        (f"legend {index}", legend.get_window_extent(renderer)) for index, legend in enumerate(legends)
    ]


def assert_laid_out(figure) -> None:
    texts, legends = boxes(figure)
    bounds = figure.bbox
    for name, box in texts + legends:
        inside = (
            box.x0 >= bounds.x0 - TOLERANCE
            and box.y0 >= bounds.y0 - TOLERANCE
            and box.x1 <= bounds.x1 + TOLERANCE
            and box.y1 <= bounds.y1 + TOLERANCE
        )
        assert inside, f"{name} {box.bounds} runs off the figure {bounds.bounds}"
    for legend_name, legend in legends:
        for name, box in texts:
            assert not legend.overlaps(box), f"{legend_name} {legend.bounds} covers {name} {box.bounds}"


SHORT = ["background", "cat", "dog"]
LONG = [f"class with a long descriptive name {index}" for index in range(30)]
LONG_RUN = "20261207-151354-resnet34_unet-bce_dice-with-a-long-suffix"


@pytest.mark.parametrize("family", ["loss", "dice"])
@pytest.mark.parametrize("name", ["a", LONG_RUN])
def test_one_runs_curves(tmp_path, family, name):
    assert_laid_out(run_figure(read_run(write_run(tmp_path / name, [])), family))


@pytest.mark.parametrize("family", ["loss", "dice"])
@pytest.mark.parametrize(
    "names", [["runA", "runB"], [LONG_RUN, LONG_RUN + "-2"], [f"{LONG_RUN}-{i}" for i in range(8)]]
)
@pytest.mark.parametrize("measured", ["alike", "differently"])
def test_compared_runs(tmp_path, family, names, measured):
    """Runs measured differently (tiles, resized) name what each measures in the legend: long entries."""
    runs = []
    for index, name in enumerate(names):
        label = RESIZED if measured == "differently" and index % 2 else TILES
        model = "resnet34_unet" if index % 2 else "unet"
        runs.append(read_run(write_run(tmp_path / name, [], model=model, label=label)))
    assert_laid_out(comparison_figure(runs, family))


@pytest.mark.parametrize("classes", [SHORT, LONG], ids=["3 classes", "30 long names"])
def test_per_class_curves(tmp_path, classes):
    assert_laid_out(class_figure(read_run(write_run(tmp_path / "run", classes))))


@pytest.mark.parametrize("classes", [SHORT, SHORT[:2], LONG[:12], LONG], ids=["3", "2", "12 long", "30 long"])
def test_the_confusion_matrix(classes):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 1000, (len(classes), len(classes))).tolist()
    assert_laid_out(confusion_figure({"classes": classes, "pixels": pixels}))


@pytest.mark.parametrize("marks", [None, {"calibrated threshold 0.45 (valid split)": 0.45}])
def test_the_reports_histogram(marks):
    values = np.random.default_rng(0).uniform(0, 1, 50).tolist()
    assert_laid_out(histogram_figure(values, "Dice per image (original resolution, threshold 0.5)", marks))
