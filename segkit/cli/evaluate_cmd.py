"""``segkit evaluate``: Dice and IoU of a trained model on a split, per image and dataset-wide."""

from __future__ import annotations

from pathlib import Path

import click

from segkit.cli.inference_choices import (
    device_option,
    inference_choice_options,
    tiling_options,
)


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--split", default="test", show_default=True, help="Dataset split to evaluate: train, valid or test."
)
@click.option("--dataset", help="Registered dataset name. [default: the one the run trained on]")
@click.option("--data-path", type=click.Path(path_type=Path), help="Dataset folder. [default: the run's]")
@click.option(
    "--dataset-option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Dataset option, repeatable (`segkit plugins --kind dataset --options` lists them); root, split "
    "and image_size come from --data-path, --split and the checkpoint. [default: the run's]",
)
@click.option(
    "--threshold", type=float, help="Probability threshold. [default: the checkpoint's, usually 0.5]"
)
@inference_choice_options
@tiling_options
@click.option(
    "--resolution",
    type=click.Choice(["original", "network", "both"]),
    default="both",
    show_default=True,
    help="Score at each image's original mask size (predictions resized back), at the network input "
    "size, or both. Original needs a dataset that can read its masks from disk.",
)
@click.option(
    "--no-boundary", is_flag=True, help="Skip the boundary metrics (HD95, boundary F1), which cost time."
)
@click.option(
    "--worst", type=click.IntRange(min=0), default=5, show_default=True, help="List this many worst images."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Images per batch."
)
@click.option(
    "--report",
    "report_page",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write this HTML page: the scores, the distribution of per-image scores and the --worst N "
    "worst images as photo / truth / prediction, all inlined in one file that opens offline "
    "(`segkit report RUN` makes the whole run's page). [default: none]",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for summary JSON and per-image CSV. [default: <run folder>/eval-<split>]",
)
@device_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def evaluate(
    checkpoint,
    split,
    dataset,
    data_path,
    dataset_option,
    threshold,
    tta,
    fill_holes,
    keep_largest,
    tile,
    no_tile,
    overlap,
    blend,
    resolution,
    no_boundary,
    worst,
    batch_size,
    report_page,
    out,
    device,
    quiet,
):
    """Evaluate CHECKPOINT (a run folder or a .pt file) on a dataset split.

    Prints Dice and IoU with their reduction (per-image mean, and pooled over the split), threshold
    and resolution; writes summary.json and per_image.csv, and lists the worst images. For a
    multi-class model: the mean over classes (foreground classes where one is the background), a
    per-class table, and confusion_matrix.png.
    """
    from segkit.errors import UsageError
    from segkit.execution.device import resolve_device
    from segkit.inference.predictor import load_trained_model
    from segkit.reporting.run_evaluation import epoch_text, evaluate_run

    if report_page is not None and not report_page.parent.is_dir():
        raise UsageError(f"--report {report_page}: the folder {report_page.parent} does not exist")
    trained = load_trained_model(checkpoint, device=resolve_device(device))
    if "ensemble" in trained.checkpoint and _print_folds(trained, split):
        return
    evaluation = evaluate_run(
        trained,
        split=split,
        dataset=dataset,
        data_path=data_path,
        dataset_options=dataset_option,
        threshold=threshold,
        tta=tta,
        fill_holes=fill_holes,
        keep_largest=keep_largest,
        tile=tile,
        no_tile=no_tile,
        overlap=overlap,
        blend=blend,
        resolution=resolution,
        boundary=not no_boundary,
        batch_size=batch_size,
        out=out,
        quiet=quiet,
        note=lambda text: click.echo(f"note: {text}", err=True),
    )
    name, written = evaluation.dataset_name, evaluation.written
    if report_page is not None:
        written.append(
            _write_report_page(report_page, trained, name, evaluation.data, evaluation.result, worst)
        )
    click.echo(f"Scored {trained.path} ({epoch_text(trained)})")
    _print_report(f"{name} {split} split", evaluation.summary, evaluation.rows, worst)
    click.echo("Wrote " + " and ".join(str(path) for path in written))


def _print_folds(trained, split: str) -> bool:
    """A --folds parent: its folds' out-of-fold scores and the choices made on them; True when the
    ensemble is not to be scored on ``split`` (its photos trained the folds' models)."""
    from segkit.reporting.out_of_fold import describe_out_of_fold, read_out_of_fold

    summary = read_out_of_fold(trained.path)
    folds = trained.checkpoint["ensemble"]["folds"]
    if summary is None:
        click.echo(
            f"{trained.path}: the out-of-fold choices are not made yet (segkit run --resume finishes them)"
        )
    else:
        for line in describe_out_of_fold(summary):
            click.echo(line)
    if split in ("train", "valid"):
        click.echo(
            f"The ensemble of the {folds} folds is not scored on the {split} split: each of its photos "
            f"trained {folds - 1} of the {folds} models (the out-of-fold scores above are the honest ones); "
            "--split test scores it"
        )
        return True
    click.echo(f"The ensemble of the {folds} folds (probabilities averaged, then the choices above):")
    return False


def _print_report(what: str, summary: dict, rows: list[dict], worst: int) -> None:
    """The figures of ``summary`` as a reader wants them, and the ``worst`` images by Dice."""
    click.echo(
        f"{what}, {summary['images']} images, threshold {summary['threshold']}, "
        f"test-time augmentation {summary['test_time_augmentation']}, "
        f"post-processing {summary['postprocess']}"
    )
    for key in ("original_resolution", "network_resolution"):
        if key in summary:
            _print_scores(summary[key], summary.get("classes"))
    if "boundary" in summary:
        b = summary["boundary"]
        hd95 = "n/a" if b["hd95_pixels_mean"] is None else f"{b['hd95_pixels_mean']:.2f} px"
        bf1 = "n/a" if b["boundary_f1_mean"] is None else f"{b['boundary_f1_mean']:.4f}"
        click.echo(
            f"  boundary ({b['resolution']} resolution, per-image mean): HD95 {hd95}, boundary F1 {bf1}"
        )
    if worst:
        click.echo(f"  worst {min(worst, len(rows))} images by Dice:")
        for row in sorted(rows, key=lambda r: r["dice"])[:worst]:
            click.echo(f"    {row['name']:<32} Dice {row['dice']:.4f}  IoU {row['iou']:.4f}")


def _write_report_page(page: Path, trained, name: str, data, result, worst: int) -> Path:
    """The worst-cases gallery of this evaluation as one self-contained HTML page
    (segkit.reporting.report)."""
    from segkit.errors import UsageError
    from segkit.reporting.report import evaluation_content, write_page
    from segkit.reporting.run_evaluation import epoch_text

    content = evaluation_content(
        trained,
        data,
        result,
        dataset_name=name,
        worst=worst,
        best=0,
        title=f"Evaluation of {trained.path}",
        subtitle=f"{trained.model_name} ({epoch_text(trained)}) on the {name} {result.split} split",
    )
    try:
        write_page(page, content)
    except OSError as error:
        raise UsageError(f"cannot write --report {page}: {error.strerror or error}") from None
    return page


def _print_scores(scores: dict, classes: list[str] | None) -> None:
    click.echo(f"  at {scores['resolution']}:")
    if classes is None:  # binary
        click.echo(
            f"    Dice  per-image mean {scores['dice_per_image']:.4f}"
            f"   dataset-pooled {scores['dice_dataset']:.4f}"
        )
        click.echo(
            f"    IoU   per-image mean {scores['iou_per_image']:.4f}"
            f"   dataset-pooled {scores['iou_dataset']:.4f}"
        )
        return
    click.echo(
        f"    mean IoU  dataset-pooled {scores['iou_macro_dataset']:.4f}"
        f"   per-image mean {scores['iou_macro_per_image']:.4f}"
    )
    click.echo(
        f"    mean Dice dataset-pooled {scores['dice_macro_dataset']:.4f}"
        f"   per-image mean {scores['dice_macro_per_image']:.4f}"
    )
    click.echo(f"    {'class':<24} {'IoU':>8} {'Dice':>8}   (pooled over the split)")
    for name in classes:
        iou, dice = scores[f"iou_{name}"], scores[f"dice_{name}"]
        click.echo(f"    {name:<24} {_score(iou):>8} {_score(dice):>8}")


def _score(value: float) -> str:
    return "absent" if value != value else f"{value:.4f}"  # NaN: neither truth nor prediction has it
