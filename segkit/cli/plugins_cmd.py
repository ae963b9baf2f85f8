"""``segkit plugins``: every registered component and where it came from."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of objects) for scripts.")
@click.option(
    "--kind",
    type=click.Choice(["model", "loss", "dataset", "callback", "augmentation", "recipe"]),
    help="Only list components of this kind.",
)
def plugins(as_json: bool, kind: str | None) -> None:
    """List every registered model, loss, dataset, callback, augmentation and recipe: name, kind,
    distribution and version, and a one-line description. Plugins that failed to load are listed
    on stderr. For parameter counts and FLOPs of the models, see `segkit models`."""
    import segkit
    from segkit.plugins import get_host

    components = segkit.list_components(kind)
    rows = [
        {
            "name": c.name,
            "kind": c.kind,
            "distribution": c.distribution,
            "version": c.version,
            "plugin": c.plugin,
            "description": c.description,
        }
        for c in components
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("kind", "name", "distribution", "description")
    table = [
        (r["kind"], r["name"], f"{r['distribution']} {r['version']}".strip(), r["description"]) for r in rows
    ]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers[:-1])]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths + [0], strict=True)).rstrip())
    for row in table:
        click.echo("  ".join(value.ljust(w) for value, w in zip(row, widths + [0], strict=True)).rstrip())
    failures = get_host().failures
    if failures:
        click.echo(f"{len(failures)} plugin(s) failed to load; see the warnings above.", err=True)
