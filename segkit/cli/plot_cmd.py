"""``segkit plot``: loss and Dice curves of one or more run folders, and a summary table."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the PNGs and summary.csv. [default: the run folder for one run, ./plots for several]",
)
def plot(run_dirs: tuple[Path, ...], out_dir: Path | None) -> None:
    """Plot loss and Dice curves (train and valid) of each run folder, and of several runs together.

    Writes loss.png and dice.png (for several runs: <run>-loss.png, <run>-dice.png and
    compare-loss.png, compare-dice.png with every run on the same axes), and summary.csv: the
    min, max, first, last and percent change of every metrics.csv column per run, also printed here.
    Axis labels say what the numbers are (split, reduction, threshold, resolution).

    A --folds parent folder stands for its fold runs: folds-loss.png and folds-dice.png draw each
    fold's validation curve (on its held-out photos), their mean and a band of one standard deviation.
    """
    from segkit.config.run_folder import FOLDS_FILE, fold_folder, is_fold_parent, read_json_object
    from segkit.errors import UsageError
    from segkit.reporting.plotting import (
        SUMMARY_FILE,
        format_summary_table,
        plot_folds,
        plot_runs,
        read_run,
        summarize_runs,
        write_summary_csv,
    )

    parents = {
        run_dir: int(read_json_object(run_dir / FOLDS_FILE)["folds"])
        for run_dir in run_dirs
        if is_fold_parent(run_dir)
    }
    fold_runs = {
        parent: [
            read_run(fold_folder(parent, index))
            for index in range(folds)
            if (fold_folder(parent, index) / "metrics.csv").is_file()
        ]
        for parent, folds in parents.items()
    }
    for parent, folds in fold_runs.items():
        if not folds:
            raise UsageError(f"{parent}: none of its folds has finished an epoch yet (no fold-*/metrics.csv)")
    runs = [
        run
        for run_dir in run_dirs
        for run in (fold_runs[run_dir] if run_dir in parents else [read_run(run_dir)])
    ]
    if out_dir is None:
        out_dir = run_dirs[0] if len(run_dirs) == 1 else Path("plots")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"--out {out_dir} exists and is not a folder") from None
    except OSError as error:
        raise UsageError(f"--out {out_dir} cannot be created: {error.strerror or error}") from None
    for run in runs:
        if run.skipped_columns:
            skipped = ", ".join(run.skipped_columns)
            click.echo(f"{run.path / 'metrics.csv'}: text columns not summarised: {skipped}", err=True)
    rows = summarize_runs(runs)
    click.echo(format_summary_table(rows))
    click.echo("")
    written = [] if len(run_dirs) == 1 and parents else plot_runs(runs, out_dir)
    for parent, folds in fold_runs.items():
        written += plot_folds(folds, out_dir if len(run_dirs) == 1 else out_dir / parent.name)
    for path in [*written, write_summary_csv(rows, out_dir / SUMMARY_FILE)]:
        click.echo(f"wrote {path}")
