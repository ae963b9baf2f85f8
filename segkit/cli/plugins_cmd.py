"""``segkit plugins``: every registered component and where it came from, and with ``--options``
the options each one takes (what ``--model-option KEY=VALUE`` and its kin accept)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

KINDS = ("model", "loss", "dataset", "callback", "augmentation", "recipe", "planner")
#: Options segkit fills itself (from the data, --data-path, --image-size, --augment, ...): not listed.
_SET_BY_SEGKIT = {
    "model": ("in_channels", "out_channels"),
    "dataset": ("root", "split", "image_size", "augment", "sampling"),
}


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects) for scripts.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="Only list components of this kind. [default: every kind]",
)
@click.option(
    "--options",
    "with_options",
    is_flag=True,
    help="Also list each component's options: name, default, accepted values and meaning (what "
    "--model-option, --loss-option, --dataset-option and --callback-option take).",
)
def plugins(as_json: bool, kind: str | None, with_options: bool) -> None:
    """List every registered model, loss, dataset, callback, augmentation, recipe and planner: name, kind,
    distribution and version, and a one-line description. Plugins that failed to load are listed
    on stderr. `segkit plugins --kind model --options` lists what each model accepts as
    --model-option KEY=VALUE. For parameter counts and FLOPs of the models, see `segkit models`."""
    import segkit
    from segkit.plugins import get_host

    components = segkit.list_components(kind)
    rows: list[dict[str, Any]] = []
    for c in components:
        row: dict[str, Any] = {
            "name": c.name,
            "kind": c.kind,
            "distribution": c.distribution,
            "version": c.version,
            "plugin": c.plugin,
            "description": c.description,
        }
        if with_options:
            row["options"] = _options_of(c)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    headers = ("kind", "name", "distribution", "description")
    table = [
        (r["kind"], r["name"], f"{r['distribution']} {r['version']}".strip(), r["description"]) for r in rows
    ]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers[:-1])]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths + [0], strict=True)).rstrip())
    for cells, entry in zip(table, rows, strict=True):
        click.echo("  ".join(value.ljust(w) for value, w in zip(cells, widths + [0], strict=True)).rstrip())
        if with_options:
            _echo_options(entry["options"])
    failures = get_host().failures
    if failures:
        click.echo(f"{len(failures)} plugin(s) failed to load; see the warnings above.", err=True)


def _options_of(component: Any) -> list[dict[str, Any]] | None:
    """The component's declared options (``register(..., options=SPEC)``); None when it declares none.
    A recipe's "options" are its settings."""
    if component.kind == "recipe" and isinstance(component.factory, Mapping):
        return [
            {"name": key, "default": value, "allowed": "", "help": "setting"}
            for key, value in component.factory.items()
        ]
    spec = component.metadata.get("options")
    if not isinstance(spec, Mapping):
        return None
    options = []
    for name, option in spec.items():
        if name in _SET_BY_SEGKIT.get(component.kind, ()):
            continue
        options.append(
            {
                "name": name,
                "default": getattr(option, "default", None),
                "allowed": getattr(option, "allowed", ""),
                "help": getattr(option, "help", ""),
            }
        )
    return options


def _echo_options(options: list[dict[str, Any]] | None) -> None:
    if options is None:
        click.echo("    (declares no option list)")
        return
    if not options:
        click.echo("    (no options)")
        return
    width = max(len(option["name"]) for option in options)
    for option in options:
        default = _as_typed(option["default"])
        details = "; ".join(part for part in (option["allowed"], option["help"]) if part)
        click.echo(f"    {option['name']:<{width}} = {default!s:<10} {details}".rstrip())


def _as_typed(value: Any) -> str:
    """A default as a user types it after KEY=: true/false, none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)
