"""``segkit plan``: what ``segkit run --recipe auto`` (or another planner) would train, without training."""

from __future__ import annotations

import json
from pathlib import Path

import click

from segkit.config.resolve import is_planner, to_toml
from segkit.config.settings import click_options, flag_layer
from segkit.errors import UsageError


@click.command("plan")
@click.option(
    "--recipe",
    default="auto",
    show_default=True,
    help="The planner to ask (`segkit plugins --kind planner` lists them).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML file of settings, as for `segkit run`; the planner plans around them. [default: none]",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print every resolved setting, the plan's included, as a TOML config file for "
    "`segkit run --config`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan (choices, reasons, facts) as JSON.")
@click_options
def plan(recipe, config_file, print_config, as_json, **flags):
    """Plan a run from the data, this machine and the time budget, and print the plan; train nothing.

    Takes `segkit run`'s flags: give the dataset (--dataset folder --data-path DIR) and optionally
    --time-budget (default 15m) and any setting you want fixed; the planner chooses the rest, with a
    reason for each. It reads the training split (its fingerprint is cached beside the data) and times
    a few training steps on the device, as `segkit run --recipe auto` does before training, within 3% of
    the budget (at least 3 s, at most 30 s); a budget too short for one epoch is refused, with the
    shortest that would do. `--print-config > plan.toml` freezes the plan: `segkit run --config
    plan.toml` trains exactly it, without planning (or timing) again.
    """
    from segkit.planning import describe_plan, resolve_planned_config

    if not is_planner(recipe):
        raise UsageError(f"--recipe {recipe!r} is not a planner; `segkit plugins --kind planner` lists them")
    config = resolve_planned_config(flag_layer(flags), config_file, recipe)
    if print_config:
        from segkit.engine.preflight import check_before_training

        check_before_training(config)  # what the run would refuse, refused before it is frozen
        click.echo(to_toml(config), nl=False)
    elif as_json:
        click.echo(json.dumps(config.plan.to_dict(), indent=2, default=str))
    else:
        for line in describe_plan(config.plan, config.sources):
            click.echo(line)
        click.echo(
            f"Train with it: segkit run --recipe {recipe} with the same flags "
            "(or --config from --print-config)"
        )
