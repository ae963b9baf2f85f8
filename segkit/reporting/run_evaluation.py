"""A trained model scored on a dataset split, with its files: what ``segkit evaluate`` prints and
``segkit.Run.evaluate`` returns. Both call ``evaluate_run``; this module decides what is scored, where
the results go (``eval-<split>`` beside the checkpoint, never over an evaluation with other settings)
and what is written there (``summary.json``, ``per_image.csv``, the confusion matrix)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.config.run_folder import write_json
from segkit.data.splits import evaluation_split
from segkit.errors import UsageError
from segkit.inference.choices import resolve_inference_choices, resolve_tiling
from segkit.inference.predictor import TrainedModel
from segkit.inference.tiling import Tiles
from segkit.reporting.evaluation import Evaluation, evaluate_dataset
from segkit.reporting.out_of_fold import read_out_of_fold

Note = Callable[[str], None]


def _note_on_stderr(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


@dataclass
class RunEvaluation:
    """One evaluation: the model, the data, the figures and the files written."""

    trained: TrainedModel
    dataset_name: str
    data: Any
    result: Evaluation
    #: The pooled figures and the settings they were made with (``summary.json``).
    summary: dict[str, Any]
    #: One row per image (``per_image.csv``).
    rows: list[dict[str, Any]]
    out: Path
    written: list[Path] = field(default_factory=list)


def evaluate_run(
    trained: TrainedModel,
    *,
    split: str = "test",
    dataset: str | None = None,
    data_path: Any = None,
    dataset_options: tuple[str, ...] | list[str] = (),
    threshold: float | None = None,
    tta: bool | None = None,
    fill_holes: bool | None = None,
    keep_largest: bool | None = None,
    tile: int | None = None,
    no_tile: bool = False,
    overlap: float | None = None,
    blend: str | None = None,
    resolution: str = "both",
    boundary: bool = True,
    batch_size: int = 8,
    out: Path | None = None,
    quiet: bool = False,
    note: Note = _note_on_stderr,
) -> RunEvaluation:
    """Score ``trained`` on ``split``: every choice left None is the run's own (threshold, flip TTA,
    clean-up, tiling, dataset and its folder). Bad choices and data that do not fit the model are
    one-line errors raised before any folder is made."""
    if "ensemble" in trained.checkpoint and split in ("train", "valid"):
        folds = trained.checkpoint["ensemble"]["folds"]
        raise UsageError(
            f"{trained.path} is the ensemble of {folds} folds: each photo of the {split} split trained "
            f"{folds - 1} of its {folds} models, so it is scored on the test split only (the folds' own "
            "scores, out of fold, are in its folds.json and segkit evaluate's first lines)"
        )
    threshold = trained.threshold if threshold is None else threshold
    tta, postprocess = resolve_inference_choices(trained, tta, fill_holes, keep_largest)
    check_choices(trained, threshold, postprocess)
    tiling = resolve_tiling(trained, tile, no_tile, overlap, blend)
    name, data = evaluation_split(trained, split, dataset, data_path, dataset_options, tiling)
    check_task_fits(trained, name, split, data)
    choices = {"threshold": threshold, "tta": tta, "postprocess": postprocess, "tiling": tiling}
    choices.update(resolution=resolution, boundary=boundary)
    settings = _settings_of_this_evaluation(trained, name, split, data_path, dataset_options, choices)
    out, made = output_folder(trained.path, split, out, settings, note)
    try:
        result = evaluate_dataset(
            trained,
            data,
            split=split,
            threshold=threshold,
            tta=tta,
            postprocess=postprocess,
            batch_size=batch_size,
            original_resolution=resolution != "network",
            boundary=boundary,
            quiet=quiet,
            tiles=None if tiling is None else Tiles(tiling["tile"], tiling["overlap"], tiling["blend"]),
        )
    except BaseException:
        if made and not any(out.iterdir()):  # a failed evaluation leaves no empty folder behind
            out.rmdir()
        raise
    if resolution == "original" and result.original is None:
        note(f"dataset {name!r} cannot read original masks; scores are at network resolution")
    summary = result.summary()
    if resolution == "original" and result.original is not None:
        summary.pop("network_resolution")
    rows = result.per_image_rows()
    summary = {"evaluated": settings, **summary}
    if "ensemble" in trained.checkpoint:  # a --folds parent: its folds' spread beside the ensemble's score
        summary["folds"] = read_out_of_fold(trained.path)
    written = write_results(out, trained, name, summary, rows)
    return RunEvaluation(trained, name, data, result, summary, rows, out, written)


def check_choices(trained: TrainedModel, threshold: float, postprocess: dict) -> None:
    """A threshold outside (0, 1), or clean-up asked of a model that is not binary: usage errors."""
    if not 0 < threshold < 1:
        raise UsageError(f"--threshold must lie strictly between 0 and 1, got {threshold}")
    if any(postprocess.values()) and not trained.task.supports_postprocess:
        raise UsageError(
            f"--fill-holes and --keep-largest work on binary masks; {trained.path} is {trained.task.kind}"
        )


def check_task_fits(trained: TrainedModel, name: str, split: str, data: Any) -> None:
    """Data of another task than the model's (a binary model on multi-class masks) is a usage error
    naming both, before anything is scored: the masks would otherwise fail deep in the metrics."""
    kind = getattr(data, "task", "binary") or "binary"
    if kind == trained.task.kind:
        return
    classes = list(getattr(data, "class_names", None) or [])
    holds = f"{kind}, {len(classes)} classes ({', '.join(classes)})" if classes else kind
    model = trained.task.kind
    if model != "binary":
        model += f", {len(trained.task.class_names)} classes ({', '.join(trained.task.class_names)})"
    raise UsageError(
        f"{trained.path} is a {model} model; the {split} split of {name!r} is {holds}: "
        "evaluate it with a model trained on data like it"
    )


def _settings_of_this_evaluation(trained, name, split, data_path, dataset_options, choices: dict) -> dict:
    """What makes two evaluations the same one: checkpoint, data and settings (as JSON reads back)."""
    recorded = trained.checkpoint.get("config") or {}
    settings = {
        "checkpoint": str(Path(trained.path).resolve()),
        "epoch": trained.checkpoint.get("epoch"),
        "dataset": name,
        "data_path": str(data_path if data_path is not None else recorded.get("data_path")),
        "dataset_options": sorted(dataset_options),
        "split": split,
        **choices,
    }
    return json.loads(json.dumps(settings, default=str))


def epoch_text(trained: TrainedModel) -> str:
    """Which weights these are, for a reader: "epoch 12, the best so far"."""
    epoch = trained.checkpoint.get("epoch")
    if trained.checkpoint.get("imported"):
        return "imported weights, not trained by segkit"
    best = ", the best so far" if Path(trained.path).name == "best.pt" else ""
    return f"epoch {epoch}{best}" if epoch is not None else "epoch not recorded"


def _earlier_settings(folder: Path) -> dict | None:
    """The settings of the evaluation already in ``folder``: None when there is none, ``{}`` when its
    summary.json records none (written by an older segkit, or not segkit's)."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    try:
        earlier = json.loads(path.read_text()).get("evaluated")
    except (OSError, ValueError, AttributeError):
        return {}
    return earlier if isinstance(earlier, dict) else {}


def _differences(earlier: dict, settings: dict) -> str:
    if not earlier:
        return "its summary.json records no settings"
    changed = [key for key in settings if earlier.get(key) != settings[key]]
    return ", ".join(f"{key} {earlier.get(key)!r} there, {settings[key]!r} now" for key in changed[:3])


def output_folder(
    checkpoint: Path, split: str, out: Path | None, settings: dict | None = None, note: Note = _note_on_stderr
) -> tuple[Path, bool]:
    """Where to write, and whether the folder was made now. An earlier evaluation with other settings
    (another checkpoint, dataset, split, threshold, ...) is never overwritten: the default folder
    becomes ``eval-<split>-2`` (and so on), with a note; an explicit ``out`` holding one is a usage
    error."""
    explicit = out is not None
    if out is None:
        base = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        out = base / f"eval-{split}"
    out = Path(out)
    chosen, number = out, 1
    while settings is not None:
        earlier = _earlier_settings(chosen)
        if earlier is None or earlier == settings:
            break
        if explicit:
            raise UsageError(
                f"--out {out} holds an earlier evaluation with other settings "
                f"({_differences(earlier, settings)}); choose another --out, or delete "
                f"{out / 'summary.json'} to replace it"
            )
        if chosen == out:
            first_difference = _differences(earlier, settings)
        number += 1
        chosen = out.with_name(f"{out.name}-{number}")
    if chosen != out:
        note(
            f"{out} holds an earlier evaluation with other settings ({first_difference}); "
            f"writing to {chosen} instead"
        )
    made = not chosen.exists()
    try:  # before evaluating, so that an unusable --out costs no evaluation time
        chosen.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {chosen} cannot be created: {error.strerror or error}") from None
    return chosen, made


def write_results(out: Path, trained: TrainedModel, name: str, summary: dict, rows: list[dict]) -> list[Path]:
    """summary.json, per_image.csv and, for a multiclass model, the confusion matrix as a picture."""
    written = [out / "summary.json", out / "per_image.csv"]
    try:
        write_json(written[0], {"checkpoint": str(trained.path), "dataset": name, **summary})
        with written[1].open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if "confusion_matrix" in summary:
            from segkit.reporting.plotting import plot_confusion_matrix

            written.append(plot_confusion_matrix(summary["confusion_matrix"], out / "confusion_matrix.png"))
    except OSError as error:
        raise UsageError(f"cannot write into --out {out}: {error.strerror or error}") from None
    return written
