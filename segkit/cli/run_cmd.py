"""``segkit run``: train a model.

The settings' flags come from the table in ``segkit.config.settings``; resolving them (with the dataset's
defaults, a recipe, a config file, or a resumed run's record) is ``segkit.config.resolve``'s job.
"""

from __future__ import annotations

from pathlib import Path

import click

from segkit.config.resolve import (
    RESUME_OVERRIDES,
    resolve_resumed_config,
    to_toml,
)
from segkit.config.settings import BY_NAME, click_options, flag_layer
from segkit.errors import UsageError
from segkit.planning import describe_settings, resolve_planned_config

__all__ = ["run"]

_RESUME_FLAGS = [BY_NAME[name].flag or name for name in RESUME_OVERRIDES]


@click.command("run")
@click.option(
    "--recipe",
    help="Named preset of settings, or a planner that computes them; flags and --config override it. "
    "Built in: seed (the report's recipe), budget (most Dice from --time-budget, default 15m) and auto "
    "(planned from the data, this machine and --time-budget; `segkit plan` shows the plan). `segkit "
    "plugins --kind recipe` and `--kind planner` list all. [default: none: the dataset's defaults, else "
    "the seed report's]",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML file of settings, keys as config.json records them (the settings' names: "
    "learning_rate = 0.01), or a run's config.json to start from its settings; flags override it. "
    "--print-config writes one. [default: none]",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, file_okay=False),
    help="Continue the run in this folder from its last.pt with its recorded settings; only "
    f"{', '.join(_RESUME_FLAGS[:-1])} and {_RESUME_FLAGS[-1]} may change (--epochs N extends a "
    "finished run). [default: none, a new run]",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the resolved settings as a TOML config file (for --config) and exit without training.",
)
@click_options
def run(config_file, recipe, resume, print_config, **flags):
    """Train a segmentation model and write a run folder (config, metrics, checkpoints).

    Settings resolve in layers, each overriding the one before: the seed report's defaults (Adam 1e-3,
    batch 32, 200 epochs, 256x256), the dataset's own defaults, --recipe, --config, then flags. The
    resolved settings are printed with where each came from, and saved in the run folder.

    Validation Dice is the mean of per-image Dice at the network input size, threshold 0.5 unless
    --threshold says otherwise.

    Output: the settings and one line per epoch on stdout, progress bars on stderr (on a terminal
    only), so `segkit run ... > train.log` keeps a clean log; --quiet prints only the result.
    """
    values = flag_layer(flags)
    if resume is not None:
        given = [flag for flag, value in (("--config", config_file), ("--recipe", recipe)) if value]
        if given:
            raise UsageError(
                f"{' and '.join(given)} cannot be combined with --resume: a resumed run keeps the settings "
                f"it recorded (to start a new run from them: segkit run --config {resume / 'config.json'})"
            )
        config = resolve_resumed_config(resume, values)
    else:
        config = resolve_planned_config(values, config_file, recipe)
    echo = click.echo
    if print_config:
        from segkit.engine.preflight import check_before_training

        check_before_training(config, resume)
        echo(to_toml(config), nl=False)
        return
    if not config["quiet"]:
        for line in describe_settings(config):
            echo(line)
    if resume is not None:
        from segkit.engine.trainer import fit

        result = fit(config, echo=echo, resume_dir=resume)
    else:
        from segkit.racing import train

        result = train(config, echo=echo)
    if result.best_epoch:
        echo(f"Best {result.metric_description}: {result.best_dice:.4f} at epoch {result.best_epoch}")
    if result.stop_reason:
        echo(f"Stopped early: {result.stop_reason}")
    echo(f"Run saved to {result.run_dir}")
