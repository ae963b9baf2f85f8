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

    A --folds parent's page shows its folds (each fold's out-of-fold score, mean and standard deviation,
    the choices made out of fold, the folds' curves) and the ensemble on the test split, where the
    dataset has one (every train and valid photo trained all but one of its models).
    """
    from segkit.execution.device import resolve_device
    from segkit.reporting.run_report import write_run_report

    written = write_run_report(
        run,
        split=split,
        worst=worst,
        best=best,
        data_path=data_path,
        out=out,
        batch_size=batch_size,
        device=resolve_device(device),
        quiet=quiet,
    )
    click.echo(
        f"Wrote {written.path} ({written.worst} worst and {written.best} best of {written.images} "
        f"{written.split} images; open it in any browser, offline)"
    )
