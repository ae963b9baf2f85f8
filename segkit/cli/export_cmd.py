"""``segkit export``: a trained model as ONNX or TorchScript, with the notes needed to deploy it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("source", type=click.Path(path_type=Path), metavar="CHECKPOINT_OR_RUN_DIR")
@click.option(
    "-o",
    "--out",
    metavar="PATH",
    help="File to write (model.onnx, model.pt), or a folder for the default name: an existing one, or "
    "one to create named with a trailing / (exports/). [default: beside the checkpoint: best.onnx or "
    "best.torchscript.pt]",
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["onnx", "torchscript"]),
    default=None,
    help="ONNX (needs `pip install segkit[export]`) or TorchScript; must agree with -o's extension. "
    "[default: from -o's extension (.onnx: onnx, .pt or .pth: torchscript), else onnx]",
)
@click.option(
    "--opset",
    type=click.IntRange(min=11),
    default=None,
    help="ONNX opset version (11 or more: the any-size padding needs it). [default: 17]",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Compare the export with PyTorch on two random inputs of other sizes; refuse on a mismatch.",
)
def export(source: Path, out: str | None, export_format: str | None, opset: int | None, check: bool) -> None:
    """Export a trained model (a run folder's best.pt, or a checkpoint file) to ONNX or TorchScript.

    The exported model takes float32 images (N, C, H, W) of any batch size, height and width,
    normalised as in training, and returns logits (N, K, H, W): for a binary model (K = 1) apply a
    sigmoid, then the threshold; for a multiclass one take the argmax over K classes; for a
    multilabel one a sigmoid and the threshold per channel.
    Beside it, <file>.json (unet.onnx.json for unet.onnx) records what the caller must do itself: RGB
    channel order, scaling to [0, 1], normalisation mean and std, the training input size, the
    threshold or argmax, the classes.
    """
    from segkit.errors import UsageError
    from segkit.inference.export import DEFAULT_OPSET, export_model, format_for_output

    export_format = format_for_output(out, export_format)
    if opset is not None and export_format != "onnx":
        raise UsageError("--opset applies to --format onnx only")
    result = export_model(source, out, export_format, opset or DEFAULT_OPSET, check)
    click.echo(f"wrote {result.path} ({export_format}, dynamic batch, height and width; outputs logits)")
    if result.checks:
        click.echo(f"checked against PyTorch with {result.runtime}:")
        for size_check in result.checks:
            click.echo(f"  input {size_check.describe()}")
    if result.note:
        click.echo(f"note: {result.note}")
    click.echo(
        f"wrote {result.notes_path} (preprocessing, normalisation, how logits become a mask: what a caller "
        "must do)"
    )
