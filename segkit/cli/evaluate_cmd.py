"""``segkit evaluate``: Dice and IoU of a trained model on a split, per image and dataset-wide."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from segkit.cli.inference_choices import (
    device_option,
    inference_choice_options,
    resolve_inference_choices,
    resolve_tiling,
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
    from segkit.data.splits import evaluation_split
    from segkit.errors import UsageError
    from segkit.execution.device import resolve_device
    from segkit.inference.predictor import load_trained_model
    from segkit.inference.tiling import Tiles
    from segkit.reporting.evaluation import evaluate_dataset

    trained = load_trained_model(checkpoint, device=resolve_device(device))
    threshold = trained.threshold if threshold is None else threshold
    tta, postprocess = resolve_inference_choices(trained, tta, fill_holes, keep_largest)
    _check_choices(trained, checkpoint, threshold, postprocess)
    tiling = resolve_tiling(trained, tile, no_tile, overlap, blend)
    name, data = evaluation_split(trained, split, dataset, data_path, dataset_option, tiling)
    choices = {"threshold": threshold, "tta": tta, "postprocess": postprocess, "tiling": tiling}
    choices.update(resolution=resolution, boundary=not no_boundary)
    settings = _settings_of_this_evaluation(trained, name, split, data_path, dataset_option, choices)
    out = _output_folder(checkpoint, split, out, settings)
    if report_page is not None and not report_page.parent.is_dir():
        raise UsageError(f"--report {report_page}: the folder {report_page.parent} does not exist")
    result = evaluate_dataset(
        trained,
        data,
        split=split,
        threshold=threshold,
        tta=tta,
        postprocess=postprocess,
        batch_size=batch_size,
        original_resolution=resolution != "network",
        boundary=not no_boundary,
        quiet=quiet,
        tiles=None if tiling is None else Tiles(tiling["tile"], tiling["overlap"], tiling["blend"]),
    )
    if resolution == "original" and result.original is None:
        click.echo(
            f"note: dataset {name!r} cannot read original masks; scores are at network resolution", err=True
        )
    summary = result.summary()
    if resolution == "original" and result.original is not None:
        summary.pop("network_resolution")
    rows = result.per_image_rows()
    written = _write_results(out, trained, name, {"evaluated": settings, **summary}, rows)
    if report_page is not None:
        written.append(_write_report_page(report_page, trained, name, data, result, worst))
    click.echo(f"Scored {trained.path} ({_epoch_text(trained)})")
    _print_report(f"{name} {split} split", summary, rows, worst)
    click.echo("Wrote " + " and ".join(str(path) for path in written))


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

    content = evaluation_content(
        trained,
        data,
        result,
        dataset_name=name,
        worst=worst,
        best=0,
        title=f"Evaluation of {trained.path}",
        subtitle=f"{trained.model_name} ({_epoch_text(trained)}) on the {name} {result.split} split",
    )
    try:
        write_page(page, content)
    except OSError as error:
        raise UsageError(f"cannot write --report {page}: {error.strerror or error}") from None
    return page


def _check_choices(trained, checkpoint, threshold: float, postprocess: dict) -> None:
    """A threshold outside (0, 1), or clean-up asked of a model that is not binary: usage errors."""
    from segkit.errors import UsageError

    if not 0 < threshold < 1:
        raise UsageError(f"--threshold must lie strictly between 0 and 1, got {threshold}")
    if any(postprocess.values()) and not trained.task.supports_postprocess:
        raise UsageError(
            f"--fill-holes and --keep-largest work on binary masks; {checkpoint} is {trained.task.kind}"
        )


def _settings_of_this_evaluation(trained, name, split, data_path, dataset_option, choices: dict) -> dict:
    """What makes two evaluations the same one: checkpoint, data and settings (as JSON reads back)."""
    import json

    recorded = trained.checkpoint.get("config") or {}
    settings = {
        "checkpoint": str(Path(trained.path).resolve()),
        "epoch": trained.checkpoint.get("epoch"),
        "dataset": name,
        "data_path": str(data_path if data_path is not None else recorded.get("data_path")),
        "dataset_options": sorted(dataset_option),
        "split": split,
        **choices,
    }
    return json.loads(json.dumps(settings, default=str))


def _epoch_text(trained) -> str:
    epoch = trained.checkpoint.get("epoch")
    best = ", the best so far" if Path(trained.path).name == "best.pt" else ""
    return f"epoch {epoch}{best}" if epoch is not None else "epoch not recorded"


def _earlier_settings(folder: Path) -> dict | None:
    """The settings of the evaluation already in ``folder``: None when there is none, ``{}`` when its
    summary.json records none (written by an older segkit, or not segkit's)."""
    import json

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


def _output_folder(checkpoint, split: str, out: Path | None, settings: dict | None = None) -> Path:
    """Where to write. An earlier evaluation with other settings (another checkpoint, dataset, split,
    threshold, ...) is never overwritten: the default folder becomes ``eval-<split>-2`` (and so on),
    with a note; an explicit ``--out`` holding one is a usage error."""
    from segkit.errors import UsageError

    explicit = out is not None
    if out is None:
        base = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        out = base / f"eval-{split}"
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
        click.echo(
            f"note: {out} holds an earlier evaluation with other settings ({first_difference}); "
            f"writing to {chosen} instead",
            err=True,
        )
    out = chosen
    try:  # before evaluating, so that an unusable --out costs no evaluation time
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out} cannot be created: {error.strerror or error}") from None
    return out


def _write_results(out: Path, trained, name: str, summary: dict, rows: list[dict]) -> list[Path]:
    """summary.json, per_image.csv and, for a multiclass model, the confusion matrix as a picture."""
    from segkit.config.run_folder import write_json
    from segkit.errors import UsageError

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
