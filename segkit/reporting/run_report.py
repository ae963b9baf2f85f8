"""A run's page: settings, curves, scores and the worst and best images, in one HTML file that opens
offline. What ``segkit report`` writes and ``segkit.Run.report`` writes and shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.config.run_folder import read_run_config
from segkit.data.splits import evaluation_split
from segkit.errors import UsageError
from segkit.inference.choices import resolve_inference_choices
from segkit.inference.predictor import load_trained_model
from segkit.reporting.evaluation import evaluate_dataset
from segkit.reporting.report import (
    curve_pngs,
    evaluation_content,
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
    recorded = read_run_config(run)
    trained = load_trained_model(run, device=device)
    tta, postprocess = resolve_inference_choices(trained, None, None, None)
    name, data = evaluation_split(trained, split, None, data_path, ())
    out = Path(out) if out is not None else run / "report.html"
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
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
    content = evaluation_content(
        trained,
        data,
        evaluation,
        dataset_name=name,
        worst=worst,
        best=best,
        title=f"Run {run.resolve().name}",
        subtitle=f"{trained.model_name} on {name}, scored on its {split} split",
    )
    content.facts = run_facts(recorded, trained)
    try:
        content.curves = curve_pngs(run)
    except Exception as error:  # noqa: BLE001 - a run without metrics.csv still gets its page
        content.notes.append(f"No training curves: {error}")
    content.settings = settings_rows(recorded)
    content.race_words, content.race = race_content(_planned_race(run))
    try:
        write_page(out, content)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    return WrittenReport(out, split, len(evaluation.network), len(content.worst), len(content.best))


def _planned_race(run: Path) -> dict[str, Any] | None:
    """The race recorded in the run's plan.json (``--recipe auto``), or None."""
    try:
        plan = json.loads((run / "plan.json").read_text())
    except (OSError, ValueError):
        return None
    race = plan.get("facts", {}).get("race") if isinstance(plan, dict) else None
    return race if isinstance(race, dict) else None
