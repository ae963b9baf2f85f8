"""``segkit report``: one self-contained HTML page of a run, with the model's worst and best images."""

from __future__ import annotations

from pathlib import Path

import click

from segkit.cli.inference_choices import device_option


@click.command("report")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--split",
    default="valid",
    show_default=True,
    help="Dataset split whose images are scored and shown: train, valid or test.",
)
@click.option(
    "--worst", type=click.IntRange(min=0), default=6, show_default=True, help="Show this many worst images."
)
@click.option(
    "--best", type=click.IntRange(min=0), default=6, show_default=True, help="Show this many best images."
)
@click.option("--data-path", type=click.Path(path_type=Path), help="Dataset folder. [default: the run's]")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="The HTML file to write. [default: <run folder>/report.html]",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Images per batch."
)
@device_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def report(run, split, worst, best, data_path, out, batch_size, device, quiet):
    """Write one HTML page about RUN (a run folder) that opens offline in any browser.

    The page shows the run's settings and where each came from, its training curves, the scores of
    the model (best.pt, else last.pt) on a split, the distribution of per-image scores, and the
    worst and best images as photo / truth / prediction (and, for a binary task, errors) with their
    scores; for a run with several classes, the per-class table and the confusion matrix. Every
    picture is inlined: the single file can be mailed or archived as it is. The inference choices
    (threshold, test-time augmentation, clean-up) are the run's own, as `segkit evaluate` uses them.
    """
    from segkit.cli.inference_choices import resolve_inference_choices
    from segkit.config.run_folder import read_run_config
    from segkit.data.splits import evaluation_split
    from segkit.errors import UsageError
    from segkit.execution.device import resolve_device
    from segkit.inference.predictor import load_trained_model
    from segkit.reporting.evaluation import evaluate_dataset
    from segkit.reporting.report import curve_pngs, evaluation_content, run_facts, settings_rows, write_page

    if not run.is_dir():
        raise UsageError(f"{run} is not a run folder (segkit report takes the folder segkit run made)")
    recorded = read_run_config(run)
    trained = load_trained_model(run, device=resolve_device(device))
    tta, postprocess = resolve_inference_choices(trained, None, None, None)
    name, data = evaluation_split(trained, split, None, data_path, ())
    out = out if out is not None else run / "report.html"
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
    try:
        write_page(out, content)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    click.echo(
        f"Wrote {out} ({len(content.worst)} worst and {len(content.best)} best of {len(evaluation.network)} "
        f"{split} images; open it in any browser, offline)"
    )
