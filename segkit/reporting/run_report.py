"""A run's page: settings, curves, scores and the worst and best images, in one HTML file that opens
offline. What ``segkit report`` writes and ``segkit.Run.report`` writes and shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.config.run_folder import (
    FOLDS_FILE,
    fold_folder,
    is_fold_parent,
    read_json_object,
    read_run_config,
)
from segkit.data.splits import evaluation_split
from segkit.errors import SegkitError, UsageError
from segkit.inference.choices import resolve_inference_choices
from segkit.inference.predictor import load_trained_model
from segkit.reporting.evaluation import evaluate_dataset
from segkit.reporting.plotting import FAMILIES, folds_figure, read_run
from segkit.reporting.report import (
    ReportContent,
    curve_pngs,
    evaluation_content,
    folds_content,
    png_bytes,
    race_content,
    run_facts,
    settings_rows,
    write_page,
)


@dataclass
class WrittenReport:
    path: Path
    split: str
    images: int
    worst: int
    best: int


def write_run_report(
    run: Path,
    *,
    split: str = "valid",
    worst: int = 6,
    best: int = 6,
    data_path: Path | None = None,
    out: Path | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    quiet: bool = False,
) -> WrittenReport:
    """Score the run's model (best.pt, else last.pt) on ``split`` with the run's own inference choices
    and write the page to ``out`` (default ``RUN/report.html``)."""
    run = Path(run)
    if not run.is_dir():
        raise UsageError(f"{run} is not a run folder (segkit report takes the folder segkit run made)")
    if is_fold_parent(run):
        return write_folds_report(
            run,
            worst=worst,
            best=best,
            data_path=data_path,
            out=out,
            batch_size=batch_size,
            device=device,
            quiet=quiet,
        )
    recorded = read_run_config(run)
    trained = load_trained_model(run, device=device)
    name, data = evaluation_split(trained, split, None, data_path, ())
    out = _page_path(run, out)
    title, subtitle = (
        f"Run {run.resolve().name}",
        f"{trained.model_name} on {name}, scored on its {split} split",
    )
    content, images = _scored_page(
        trained, name, data, split, (worst, best), batch_size, quiet, title, subtitle
    )
    content.facts = run_facts(recorded, trained)
    try:
        content.curves = curve_pngs(run)
    except Exception as error:  # noqa: BLE001 - a run without metrics.csv still gets its page
        content.notes.append(f"No training curves: {error}")
    content.settings = settings_rows(recorded)
    content.race_words, content.race = race_content(_planned_race(run))
    _write(out, content)
    return WrittenReport(out, split, images, len(content.worst), len(content.best))


def _scored_page(
    trained: Any,
    name: str,
    data: Any,
    split: str,
    cases: tuple[int, int],
    batch_size: int,
    quiet: bool,
    title: str,
    subtitle: str,
) -> tuple[ReportContent, int]:
    """The page of the model scored on ``split`` with its own inference choices, and how many images."""
    tta, postprocess = resolve_inference_choices(trained, None, None, None)
    evaluation = evaluate_dataset(
        trained,
        data,
        split=split,
        threshold=trained.threshold,
        tta=tta,
        postprocess=postprocess,
        batch_size=batch_size,
        boundary=False,
        quiet=quiet,
    )
    worst, best = cases
    content = evaluation_content(
        trained, data, evaluation, dataset_name=name, worst=worst, best=best, title=title, subtitle=subtitle
    )
    return content, len(evaluation.network)


def _page_path(run: Path, out: Path | None) -> Path:
    out = Path(out) if out is not None else run / "report.html"
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    return out


def _write(out: Path, content: Any) -> None:
    try:
        write_page(out, content)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None


def write_folds_report(
    parent: Path,
    *,
    worst: int,
    best: int,
    data_path: Path | None,
    out: Path | None,
    batch_size: int,
    device: str,
    quiet: bool,
) -> WrittenReport:
    """A ``--folds`` parent's page: the folds (per-fold table, spread, choices, curves with their band)
    and the ensemble scored on the test split, where the dataset has one (every train and valid photo
    trained all but one of the folds' models, so the ensemble is never scored on them)."""
    record = read_json_object(parent / FOLDS_FILE)
    folds = int(record["folds"])
    out = _page_path(parent, out)
    trained = load_trained_model(parent, device=device)
    title, recorded = (
        f"Run {parent.resolve().name} ({folds} folds)",
        {"config": record.get("config"), "sources": record.get("sources")},
    )
    notes = []
    try:
        name, data = evaluation_split(trained, "test", None, data_path, ())
    except SegkitError as error:
        data, name = None, str((record.get("config") or {}).get("dataset"))
        notes.append(f"The ensemble is not scored: it is scored on the test split only, and {error}")
    images = 0
    if data is not None:
        subtitle = f"the ensemble of {folds} {trained.model_name} folds on {name}, scored on its test split"
        content, images = _scored_page(
            trained, name, data, "test", (worst, best), batch_size, quiet, title, subtitle
        )
    else:
        content = ReportContent(title=title, subtitle=f"{folds} {trained.model_name} folds on {name}")
    content.notes += notes
    content.facts = run_facts(recorded, trained) + [
        (
            "folds",
            f"{folds}, cut from --seed {record.get('seed')} over {record.get('photos')} photos "
            "(train and valid pooled)",
        ),
        (
            "strata",
            "; ".join(
                f"{stratum}: {'/'.join(map(str, counts))}"
                for stratum, counts in (record.get("strata") or {}).items()
            ),
        ),
    ]
    content.folds_words, content.folds, content.choices = folds_content(record.get("out_of_fold"), folds)
    runs = [
        read_run(fold_folder(parent, index))
        for index in range(folds)
        if (fold_folder(parent, index) / "metrics.csv").is_file()
    ]
    content.curves = [
        (f"{family} of the folds", png_bytes(folds_figure(runs, family)))
        for family, (_, main) in FAMILIES.items()
        if any(main in run.columns for run in runs)
    ]
    content.settings = settings_rows(recorded)
    _write(out, content)
    return WrittenReport(out, "test", images, len(content.worst), len(content.best))


def _planned_race(run: Path) -> dict[str, Any] | None:
    """The race recorded in the run's plan.json (``--recipe auto``), or None."""
    try:
        plan = json.loads((run / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    race = plan.get("facts", {}).get("race") if isinstance(plan, dict) else None
    return race if isinstance(race, dict) else None
