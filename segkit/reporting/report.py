"""A run's report page: one self-contained HTML file that shows what a model gets wrong.

``segkit report RUN`` and ``segkit evaluate --report PAGE.html`` build it. The page holds:

- the run's settings, each with where it came from (config.json's ``config`` and ``sources``);
- its training curves (``segkit.reporting.plotting``) and the scores of the evaluated split;
- the distribution of per-image scores (a histogram);
- the k worst and k best images: the photo, the truth and the prediction tinted over it and, for a
  binary task, where they disagree (missed pixels blue, false alarms orange), with each image's scores;
- for a task with several classes, the per-class table and the confusion matrix (multi-class).

Self-contained means it opens offline and anywhere: every picture is a PNG inlined as a base64
``data:`` URI, the style is inline, there is no script, and a Content-Security-Policy forbids the page
from loading anything that is not inlined. Pictures of cases are at the network input size (what the
model saw); scores are those of ``segkit evaluate``, at each image's original size where the dataset
can read its masks.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from segkit.atomic_files import atomic_write_text
from segkit.config.settings import format_value
from segkit.inference.predictor import predict_logits
from segkit.reporting.evaluation import cleaned_logits
from segkit.reporting.overlays import binary_overlay, class_overlay, whole_rows
from segkit.reporting.plotting import (
    FAMILIES,
    class_columns,
    class_figure,
    plot_confusion_matrix,
    read_run,
    run_figure,
)

#: Colours of the pictures: truth green, prediction red, missed pixels blue, false alarms orange.
TRUTH_COLOUR = (40, 200, 60)
PREDICTION_COLOUR = (230, 40, 40)
MISSED_COLOUR = (40, 110, 255)
FALSE_ALARM_COLOUR = (255, 150, 0)

#: The policy that keeps the page from fetching anything: pictures are data URIs, style is inline.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# -- pictures of one case -------------------------------------------------------------------------------


def photo_of(image: torch.Tensor, normalization: dict[str, list[float]]) -> Image.Image:
    """The photo a normalised ``(C, H, W)`` network input was made from, as an RGB image."""
    pixels = image.detach().float().cpu()
    channels = pixels.shape[0]
    mean = torch.tensor(normalization["mean"], dtype=torch.float32)
    std = torch.tensor(normalization["std"], dtype=torch.float32)
    if channels == len(mean):
        pixels = pixels * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
    if channels == 1:
        pixels = pixels.repeat(3, 1, 1)
    rgb = (pixels[:3].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def mask_overlay(
    photo: Image.Image, mask: np.ndarray, task: Any, colour=PREDICTION_COLOUR, legend: bool = False
) -> Image.Image:
    """``mask`` tinted over ``photo``: binary in ``colour``, classes in the task's palette (with a
    legend drawn in a corner if asked: the page has its own). A multi-class mask may hold the ignore
    value, left untinted."""
    if task.kind == "binary":
        return binary_overlay(photo, np.asarray(mask, dtype=bool), color=colour)
    if task.kind == "multiclass":
        ignored = mask == task.ignore_index
        ids = np.where(ignored, 0, mask).astype(np.int64)
        colours, tinted = task.colour_mask(ids)
        labels = ids
        tinted = tinted & ~ignored
    else:
        mask = np.asarray(mask, dtype=bool)
        colours, tinted = task.colour_mask(mask)
        labels = np.argmax(mask, axis=0) + mask.any(axis=0)
    names = list(zip(task.class_names, task.palette, strict=True)) if legend else []
    return class_overlay(photo, whole_rows(colours, tinted, labels), names)


def error_overlay(photo: Image.Image, truth: np.ndarray, predicted: np.ndarray) -> Image.Image:
    """Where a binary prediction is wrong: missed truth pixels blue, false alarms orange, on a dimmed
    photo."""
    pixels = np.asarray(photo, dtype=np.float32) * 0.45 + 255 * 0.2
    pixels[truth & ~predicted] = MISSED_COLOUR
    pixels[predicted & ~truth] = FALSE_ALARM_COLOUR
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def case_pictures(
    photo: Image.Image, truth: np.ndarray, predicted: np.ndarray, task: Any
) -> list[tuple[str, Image.Image]]:
    """(caption, picture) of one image: photo, truth, prediction and, for a binary task, the errors."""
    pictures = [
        ("image", photo),
        ("truth", mask_overlay(photo, truth, task, TRUTH_COLOUR)),
        ("prediction", mask_overlay(photo, predicted, task, PREDICTION_COLOUR)),
    ]
    if task.kind == "binary":
        pictures.append(("errors", error_overlay(photo, truth, predicted)))
    return pictures


def truth_of(item: dict[str, Any], task: Any) -> np.ndarray:
    """A dataset item's mask as the pictures take it: bool ``(H, W)``, ids ``(H, W)`` or bool
    ``(K, H, W)``."""
    mask = torch.as_tensor(item["mask"])
    if task.kind == "binary":
        return (mask[0] > 0.5).numpy()
    if task.kind == "multiclass":
        ids = mask[0].long()
        ignore = item.get("ignore")
        if ignore is not None:
            ids = torch.where(torch.as_tensor(ignore)[0].bool(), task.ignore_index, ids)
        return ids.numpy()
    return (mask > 0.5).numpy()


def predicted_of(logits: torch.Tensor, task: Any) -> np.ndarray:
    """The mask of one image's ``(1, K, H, W)`` logits, shaped as ``truth_of`` shapes the truth."""
    return task.predict_mask(logits)[0].cpu().numpy()


def pictures_of_item(trained: Any, item: dict[str, Any], *, tta: bool = False, postprocess=None):
    """Predict one dataset item with ``trained`` as evaluate does; its ``case_pictures``."""

    task = trained.task
    logits = predict_logits(trained, item["image"][None], tta=tta).cpu()
    steps = {key: on for key, on in (postprocess or {}).items() if on}
    predicted = predicted_of(cleaned_logits(logits, task, steps), task)
    photo = photo_of(item["image"], trained.normalization)
    return case_pictures(photo, truth_of(item, task), predicted, task)


def side_by_side(pictures: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """The pictures in a row, 2 pixels apart (for TensorBoard, which shows one picture per tag)."""
    height = max(picture.height for _, picture in pictures)
    width = sum(picture.width for _, picture in pictures) + 2 * (len(pictures) - 1)
    row = Image.new("RGB", (width, height), (255, 255, 255))
    left = 0
    for _, picture in pictures:
        row.paste(picture.convert("RGB"), (left, 0))
        left += picture.width + 2
    return row


# -- the page -------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One image of the gallery: its name, its scores and its pictures."""

    name: str
    scores: dict[str, float]
    pictures: list[tuple[str, Image.Image]]


@dataclass
class ReportContent:
    """Everything a page shows; sections without content are left out."""

    title: str
    subtitle: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    settings: list[tuple[str, str, str]] = field(default_factory=list)
    curves: list[tuple[str, bytes]] = field(default_factory=list)
    scores: list[tuple[str, str]] = field(default_factory=list)
    histogram: bytes | None = None
    score_words: str = ""
    worst: list[Case] = field(default_factory=list)
    best: list[Case] = field(default_factory=list)
    class_table: list[dict[str, Any]] = field(default_factory=list)
    #: (class name, colour) of the pictures of a task with several classes.
    class_colours: list[tuple[str, Sequence[int]]] = field(default_factory=list)
    confusion: bytes | None = None
    notes: list[str] = field(default_factory=list)
    #: ``--recipe auto``'s race (plan.json's ``facts.race``): a sentence, then one row per candidate.
    race_words: str = ""
    race: list[tuple[str, ...]] = field(default_factory=list)
    #: A ``--folds`` parent's page: how each number was computed, the per-fold table, the choices.
    folds_words: list[str] = field(default_factory=list)
    folds: list[tuple[str, ...]] = field(default_factory=list)
    choices: list[tuple[str, ...]] = field(default_factory=list)


def png_bytes(picture: Any) -> bytes:
    """A PIL image or a matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    if isinstance(picture, Image.Image):
        picture.save(buffer, format="PNG", optimize=True)
    else:
        picture.savefig(buffer, format="png")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def order_by_score(rows: Sequence[dict[str, Any]], key: str) -> list[int]:
    """Indices of ``rows`` from the lowest ``key`` to the highest (NaN first: nothing to show is worst),
    ties broken by name so the gallery is the same every time."""

    def rank(index: int) -> tuple[float, str]:
        value = rows[index].get(key)
        number = float(value) if value is not None else math.nan
        return (-math.inf if math.isnan(number) else number, str(rows[index].get("name", "")))

    return sorted(range(len(rows)), key=rank)


def worst_and_best(rows: Sequence[dict[str, Any]], key: str, worst: int, best: int) -> tuple[list, list]:
    """The ``worst`` lowest-scoring indices, then the ``best`` highest among the others (no image twice)."""
    order = order_by_score(rows, key)
    low = order[: max(worst, 0)]
    rest = [index for index in reversed(order) if index not in set(low)]
    return low, rest[: max(best, 0)]


def histogram_png(values: Sequence[float], label: str, marks: dict[str, float] | None = None) -> bytes:
    """``histogram_figure`` as PNG bytes."""
    return png_bytes(histogram_figure(values, label, marks))


def histogram_figure(values: Sequence[float], label: str, marks: dict[str, float] | None = None):
    """A histogram of per-image scores in [0, 1] (20 bins), with the mean and median marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    figure = Figure(figsize=(7, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(finite, bins=20, range=(0, 1), color="#4c72b0", edgecolor="white")
    lines = {"mean": float(finite.mean()), "median": float(np.median(finite))} if len(finite) else {}
    lines.update(marks or {})
    for (name, value), style in zip(lines.items(), ("-", "--", ":", "-."), strict=False):
        axes.axvline(value, color="black", linestyle=style, label=f"{name} {value:.3f}")
    axes.set_xlim(0, 1)
    axes.set_xlabel(label)
    axes.set_ylabel("images")
    axes.set_title(f"{len(finite)} images")
    if lines:
        axes.legend(loc="upper left")
    return figure


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.source { color: #666; } .flag { color: #a33; font-weight: 600; }
.figures img { max-width: 48%; margin: 0 1% 1em 0; border: 1px solid #eee; }
.cases { display: flex; flex-wrap: wrap; gap: 14px; }
.case { border: 1px solid #ddd; border-radius: 6px; padding: 6px; background: #fafafa; }
.case .row { display: flex; gap: 4px; }
.case figure { margin: 0; text-align: center; font-size: 0.75em; color: #555; }
.case figure img { width: 138px; height: 138px; object-fit: contain; image-rendering: pixelated;
                   background: #fff; display: block; }
.case .name { font-weight: 600; font-size: 0.9em; } .case .scores { font-size: 0.85em; color: #333; }
.legend span { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle;
               margin: 0 0.3em 0 0.8em; border: 1px solid #999; }
.notes { color: #555; font-size: 0.9em; }
"""


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_escape(name)}</th>" for name in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_escape(cell)}</td>' if index in numeric else f"<td>{_escape(cell)}</td>"
            for index, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{_escape(alt)}">'


def _score_text(value: Any) -> str:
    if isinstance(value, float):
        return "absent" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _cases_html(cases: Sequence[Case]) -> str:
    cards = []
    for case in cases:
        figures = "".join(
            f"<figure>{_image(png_bytes(picture), f'{case.name}: {caption}')}"
            f"<figcaption>{_escape(caption)}</figcaption></figure>"
            for caption, picture in case.pictures
        )
        scores = ", ".join(f"{name} {_score_text(value)}" for name, value in case.scores.items())
        cards.append(
            f'<div class="case"><div class="name">{_escape(case.name)}</div>'
            f'<div class="scores">{_escape(scores)}</div><div class="row">{figures}</div></div>'
        )
    return f'<div class="cases">{"".join(cards)}</div>'


def _legend(binary: bool, class_colours: Sequence[tuple[str, Sequence[int]]] = ()) -> str:
    entries: list[tuple[str, Sequence[int]]] = list(class_colours)
    if binary:
        entries = [("truth", TRUTH_COLOUR), ("prediction", PREDICTION_COLOUR)]
        entries += [("missed (truth, not predicted)", MISSED_COLOUR), ("false alarm", FALSE_ALARM_COLOUR)]
    spans = "".join(
        f'<span style="background: rgb{tuple(int(v) for v in colour)}"></span>{_escape(name)}'
        for name, colour in entries
    )
    return f'<p class="legend">{spans}</p>' if spans else ""


def _folds_html(content: ReportContent) -> list[str]:
    """A ``--folds`` parent's section: how each number was computed, the per-fold table, the choices."""
    if not (content.folds_words or content.folds):
        return []
    parts = ['<h2 id="folds">Folds</h2>', *(f"<p>{_escape(words)}</p>" for words in content.folds_words)]
    if content.folds:
        fold_header = ("fold", "held-out photos", "score before the choices", "score with the choices")
        parts.append(_table(fold_header, content.folds, numeric=(1, 2, 3)))
    if content.choices:
        choice_header = (
            "step",
            "for",
            "value",
            "without",
            "with",
            "gain",
            "standard error",
            "photos",
            "kept",
        )
        parts += ['<h3 id="choices">Choices made out of fold</h3>', _table(choice_header, content.choices)]
    return parts


def render_html(content: ReportContent) -> str:
    """The page: plain HTML with inline style and pictures, no script, nothing fetched."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(content.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_escape(content.title)}</h1>",
    ]
    if content.subtitle:
        parts.append(f'<p class="subtitle">{_escape(content.subtitle)}</p>')
    if content.facts:
        rows = "".join(
            f"<tr><th>{_escape(key)}</th><td>{_escape(value)}</td></tr>" for key, value in content.facts
        )
        parts.append(f"<table>{rows}</table>")
    if content.scores:
        parts += ['<h2 id="scores">Scores</h2>', _table(("figure", "value"), content.scores, numeric=(1,))]
    parts += _folds_html(content)
    if content.histogram is not None:
        parts += [
            '<h2 id="distribution">Distribution of per-image scores</h2>',
            f"<p>{_escape(content.score_words)}</p>",
            f'<div class="figures">{_image(content.histogram, "histogram of per-image scores")}</div>',
        ]
    binary = any(caption == "errors" for case in content.worst + content.best for caption, _ in case.pictures)
    for title, anchor, cases in (
        (f"The {len(content.worst)} worst images", "worst", content.worst),
        (f"The {len(content.best)} best images", "best", content.best),
    ):
        if cases:
            legend = _legend(binary, content.class_colours)
            parts += [f'<h2 id="{anchor}">{_escape(title)}</h2>', legend, _cases_html(cases)]
    if content.class_table:
        header = list(content.class_table[0])
        cells = [[_score_text(row[key]) for key in header] for row in content.class_table]
        parts += ['<h2 id="classes">Per class</h2>', _table(header, cells, numeric=range(1, len(header)))]
    if content.confusion is not None:
        parts += [
            '<h2 id="confusion">Confusion matrix</h2>',
            f'<div class="figures">{_image(content.confusion, "confusion matrix")}</div>',
        ]
    if content.curves:
        figures = "".join(_image(png, name) for name, png in content.curves)
        parts += ['<h2 id="curves">Training curves</h2>', f'<div class="figures">{figures}</div>']
    if content.race_words:
        parts += ['<h2 id="race">The plan\'s race</h2>', f"<p>{_escape(content.race_words)}</p>"]
        if content.race:
            columns = ("candidate", "settings it changed", "score after each round", "seconds", "result")
            parts.append(_table(columns, content.race))
    if content.settings:
        parts += [
            '<h2 id="settings">Settings, and where each came from</h2>',
            _table(("setting", "value", "source"), content.settings),
        ]
    if content.notes:
        items = "".join(f"<li>{_escape(note)}</li>" for note in content.notes)
        parts += ['<h2 id="notes">Notes</h2>', f'<ul class="notes">{items}</ul>']
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- what a page says about an evaluation and a run -----------------------------------------------------


def race_content(race: dict[str, Any] | None) -> tuple[str, list[tuple[str, ...]]]:
    """The race section of a run planned by ``--recipe auto``: a sentence (how the candidates were
    scored, what the race cost; or why there was none) and one row per candidate."""
    if not race:
        return "", []
    if "off" in race:
        return f"No race: {race['off']}.", []
    if "winner" not in race:
        return "The plan held a race that did not finish (interrupted, or an older segkit).", []
    words = (
        f"{len(race['candidates'])} candidate plans trained in turn for "
        f"{race['share']:.0%} of the budget after planning (successive halving), each scored by "
        f"{race['metric']}; the best went on with its weights. The race cost {race['cost_s']:.0f} s of "
        f"the losers' training, and {race['overrun_s']:.0f} s of set-up and scoring beyond its share."
    )
    rows: list[tuple[str, ...]] = []
    for number, candidate in enumerate(race["candidates"], 1):
        changed = ", ".join(f"{key}={value}" for key, value in candidate["settings"].items()) or "none"
        scores = ", ".join(f"{entry['score']:.4f}" for entry in candidate.get("rounds", []))
        result = "won: this run" if number == race["winner"] else "lost: in race/ (checkpoints deleted)"
        rows.append(
            (f"{number}. {candidate['name']}", changed, scores, f"{candidate.get('seconds', 0):.0f}", result)
        )
    return words, rows


def folds_content(summary: dict[str, Any] | None, folds: int) -> tuple[list[str], list, list]:
    """The folds section of a ``--folds`` parent's page (its ``folds.json``'s ``out_of_fold``): one
    sentence per number on how it was computed, a row per fold, a row per choice tried."""
    if summary is None:
        return [f"The {folds} folds are not all trained yet: no out-of-fold scores or choices."], [], []
    words = [
        "Each fold's score is taken on the photos it held out (out of fold), never trained on: "
        f"{summary['metric']}.",
        f"Mean and standard deviation: over the {len(summary['folds'])} fold scores (the standard deviation "
        "with n - 1, the spread one run's score can have).",
        f"All photos together: the same figure over all {summary['photos']} pooled photos at once, each "
        "predicted by the fold that held it out.",
        "Before the choices: threshold 0.5 (argmax for a multiclass task), no flip TTA, no clean-up; "
        "with the choices: those kept below.",
        "A choice is kept only when its gain (the mean over the photos of the per-photo difference, with it "
        "minus without it) exceeds its standard error (the differences' standard deviation over the square "
        "root of the number of photos); choices are tried in the order listed, each on top of those kept.",
        f"The ensemble (the Scores above, where a test split was scored): the {folds} folds' probabilities "
        "averaged, each fold's after its flip TTA when TTA was kept, then the choices.",
    ]
    rows: list[tuple[str, ...]] = [
        (str(row["fold"]), str(row["photos"]), f"{row['score_without_choices']:.4f}", f"{row['score']:.4f}")
        for row in summary["folds"]
    ]
    rows.append(("mean +- std", str(summary["photos"]), "", f"{summary['mean']:.4f} +- {summary['std']:.4f}"))
    rows.append(
        (
            "all photos together",
            str(summary["photos"]),
            f"{summary['pooled_without_choices']:.4f}",
            f"{summary['pooled']:.4f}",
        )
    )
    choices = [
        (
            choice["step"],
            choice["target"],
            str(choice["value"]),
            f"{choice['without']:.4f}",
            f"{choice['with']:.4f}",
            f"{choice['gain']:+.4f}",
            f"{choice['standard_error']:.4f}",
            str(choice["photos"]),
            "kept" if choice["kept"] else "not kept",
        )
        for choice in summary["choices"]
    ]
    return words, rows, choices


def _resolution_words(summary: dict[str, Any]) -> str:
    for key in ("original_resolution", "network_resolution"):
        if key in summary:
            return str(summary[key]["resolution"])
    return "resolution not recorded"


def score_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The evaluation's figures, each saying its reduction and resolution."""
    rows: list[tuple[str, str]] = [
        ("split", str(summary["split"])),
        ("images", str(summary["images"])),
        ("threshold", str(summary["threshold"])),
        ("test-time augmentation", str(summary["test_time_augmentation"])),
        ("post-processing", str(summary["postprocess"])),
    ]
    several = "classes" in summary
    for key in ("original_resolution", "network_resolution"):
        if key not in summary:
            continue
        scores = summary[key]
        for name, value in scores.items():
            if name in ("resolution", "images") or not isinstance(value, (int, float)):
                continue
            if several and "_macro_" not in name:
                continue  # one class's figures are in the per-class table
            words = name.replace("_macro_all_", " mean over all classes, ").replace("_macro_", " mean, ")
            words = words.replace("per_image", "per-image mean").replace("dataset", "pooled over the split")
            words = words.replace("_", " ", 1).replace("dice", "Dice").replace("iou", "IoU")
            rows.append((f"{words} ({scores['resolution']})", _score_text(float(value))))
    return rows


def class_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per class: IoU and Dice pooled over the split, at the primary resolution."""
    if "classes" not in summary:
        return []
    key = "original_resolution" if "original_resolution" in summary else "network_resolution"
    scores = summary[key]
    return [
        {
            "class": name,
            f"IoU (pooled, {scores['resolution']})": scores.get(f"iou_{name}", math.nan),
            f"Dice (pooled, {scores['resolution']})": scores.get(f"dice_{name}", math.nan),
        }
        for name in summary["classes"]
    ]


def evaluation_content(
    trained: Any,
    dataset: Any,
    evaluation: Any,
    *,
    dataset_name: str,
    worst: int,
    best: int,
    title: str,
    subtitle: str = "",
) -> ReportContent:
    """The page of one evaluation (``segkit.reporting.evaluation.Evaluation``): scores, histogram, worst and
    best images (pictures made by predicting them again, as evaluate did) and per-class figures."""
    summary = evaluation.summary()
    rows = evaluation.per_image_rows()
    task = trained.task
    metric = "mean Dice over classes" if task.kind != "binary" else "Dice"
    mask_words = "argmax" if task.kind == "multiclass" else f"threshold {evaluation.threshold:g}"
    where = _resolution_words(summary)
    low, high = worst_and_best(rows, "dice", worst, best)

    def cases(indices: list[int]) -> list[Case]:
        chosen = []
        for index in indices:
            row = rows[index]
            item = dataset[index]
            pictures = pictures_of_item(trained, item, tta=evaluation.tta, postprocess=evaluation.postprocess)
            scores = {"Dice": row["dice"], "IoU": row["iou"]}
            if "foreground_fraction" in row:
                scores["foreground"] = row["foreground_fraction"]
            chosen.append(Case(str(row["name"]), scores, pictures))
        return chosen

    content = ReportContent(title=title, subtitle=subtitle)
    content.scores = score_rows(summary)
    content.histogram = histogram_png(
        [row["dice"] for row in rows], f"{metric} per image ({mask_words}, {where})"
    )
    content.score_words = (
        f"{metric} of each of the {len(rows)} images of the {dataset_name} {evaluation.split} split, "
        f"{mask_words}, at {where}; an image whose truth and prediction are both empty scores 1."
    )
    content.worst, content.best = cases(low), cases(high)
    content.class_table = class_rows(summary)
    if task.kind != "binary":
        content.class_colours = list(zip(task.class_names, task.palette, strict=True))
    if "confusion_matrix" in summary:
        content.confusion = _confusion_png(summary["confusion_matrix"])
    content.notes.append(
        f"Pictures are at the {trained.image_size}x{trained.image_size} network input (what the model "
        f"saw); the scores beside them are at {where}. Images are ranked by {metric} per image."
    )
    return content


def _confusion_png(confusion: dict[str, Any]) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = plot_confusion_matrix(confusion, Path(folder) / "confusion.png")
        return path.read_bytes()


def curve_pngs(run_dir: Any) -> list[tuple[str, bytes]]:
    """The run's loss and Dice curves (and IoU per class) as ``segkit plot`` draws them."""

    run = read_run(run_dir)
    curves = [
        (f"{family} curves", png_bytes(run_figure(run, family)))
        for family, (columns, _) in FAMILIES.items()
        if any(column in run.columns for column in columns)
    ]
    if class_columns(run):
        curves.append(("IoU per class", png_bytes(class_figure(run))))
    return curves


def settings_rows(recorded: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(setting, value, where it came from) of a run's config.json, as ``segkit run`` prints them."""

    values = recorded.get("config") if isinstance(recorded.get("config"), dict) else {}
    sources = recorded.get("sources") if isinstance(recorded.get("sources"), dict) else {}
    return [
        (str(key), format_value(value), str((sources or {}).get(key, "not recorded")))
        for key, value in (values or {}).items()
    ]


def run_facts(recorded: dict[str, Any], trained: Any) -> list[tuple[str, str]]:
    values = recorded.get("config") if isinstance(recorded.get("config"), dict) else {}
    resolved = recorded.get("resolved") if isinstance(recorded.get("resolved"), dict) else {}
    facts = [
        ("model", str((values or {}).get("model", trained.model_name))),
        ("dataset", str((values or {}).get("dataset", "not recorded"))),
        ("task", trained.task.kind),
        ("checkpoint", f"{trained.path} (epoch {trained.epoch})"),
        (
            "trained on",
            f"{(resolved or {}).get('device', '?')}, {(resolved or {}).get('processes', 1)} process(es)",
        ),
        ("segkit", str(recorded.get("segkit_version", "?"))),
    ]
    return facts


def write_page(path: Any, content: ReportContent) -> None:
    from pathlib import Path

    atomic_write_text(Path(path), render_html(content))
