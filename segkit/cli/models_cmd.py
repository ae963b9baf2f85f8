"""``segkit models``: every registered model with its size and cost."""

from __future__ import annotations

import json

import click

from segkit.errors import SegkitError


def parse_image_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``256`` means 256x256; ``HxW`` (e.g. ``384x512``) gives height and width."""
    parts = value.lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise click.BadParameter(f"expected a positive size like 256 or 384x512, got {value!r}")
    return (sizes[0], sizes[-1])


def format_count(count: int) -> str:
    """31037633 -> '31.04M'."""
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= divisor:
            return f"{count / divisor:.2f}{suffix}"
    return str(count)


@click.command("models")
@click.argument("names", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--model-option",
    "model_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Build the models with this option, repeatable (e.g. encoder=mobilenet_v2 for segkit-smp's "
    "models); give the MODEL names it applies to. [default: none, each model's own defaults]",
)
@click.option(
    "--image-size",
    default="256",
    show_default=True,
    callback=parse_image_size,
    help="Image size at which GFLOPs are counted: N for NxN, or HxW.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models(
    names: tuple[str, ...], model_options: tuple[str, ...], image_size: tuple[int, int], as_json: bool
) -> None:
    """List every registered model (or the MODELs named): name, distribution, parameters and GFLOPs
    per image.

    Models are built with their default options (or those --model-option gives), 3 input channels
    and 1 output channel. GFLOPs count convolutions and matrix products of one forward pass on one
    image, 2 FLOPs per multiply-add (torch.utils.flop_counter). To compare encoders:
    segkit models smp_unet smp_fpn --model-option encoder=mobilenet_v2
    """
    from segkit.api import get_component, list_components
    from segkit.config.options import parse_options
    from segkit.models import describe_model

    options = parse_options(model_options, "--model-option")
    if options and not names:
        raise click.UsageError("--model-option needs the MODEL names it applies to")
    components = [get_component("model", name) for name in names] if names else list_components("model")
    rows = []
    for component in components:
        try:
            row = describe_model(component.name, image_size, **options)
            if options:
                row["options"] = options
        except Exception as error:  # noqa: BLE001 - one broken model must not hide the others
            reason = str(error) if isinstance(error, SegkitError) else f"{type(error).__name__}: {error}"
            row = {
                "name": component.name,
                **({"options": options} if options else {}),
                "distribution": component.distribution,
                "version": component.version,
                "error": reason,
            }
        row["description"] = component.description
        rows.append(row)

    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    height, width = image_size
    header = ("name", "distribution", "parameters", f"GFLOPs@{height}x{width}", "description")
    table = [header]
    for row in rows:
        source = f"{row['distribution']} {row['version']}".strip()
        name = " ".join([row["name"], *(f"{k}={v}" for k, v in row.get("options", {}).items())])
        if "error" in row:
            table.append((name, source, "-", "-", f"cannot be built: {row['error']}"))
        else:
            parameters, gflops = format_count(row["parameters"]), f"{row['gflops']:.2f}"
            table.append((name, source, parameters, gflops, row["description"]))
    widths = [max(len(line[column]) for line in table) for column in range(len(header) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, line[-1]]).rstrip())
    if not rows:
        click.echo("(no model registered: is a plugin installed? see `segkit plugins`)")
