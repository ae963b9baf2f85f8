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
from segkit.config.run_folder import is_fold_parent
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
    "--folds",
    type=click.IntRange(1, 20),
    help="Train K runs, one per fold of the train and valid photos pooled (cut from --seed, stratified by "
    "foreground or the rarest class), under one parent folder (RUN/fold-0 ...); then predict every photo "
    "with the fold that held it out and choose TTA, the threshold and clean-up on those predictions. "
    "--time-budget is the whole run's, shared by the folds. Evaluate, predict, report, export and plot "
    "take the parent and use the folds' ensemble. --folds 1: one run. [default: one run; under --recipe "
    "auto, what the plan chose]",
)
@click.option(
    "--fold",
    "only_fold",
    type=int,
    help="With --folds K: train fold I alone (0 to K-1), for one job or GPU per fold: give every job the "
    "same --parent DIR; --resume DIR trains what is missing. [default: every fold]",
)
@click.option(
    "--parent",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --folds K: the parent folder, made if missing, joined if another job made it (with the "
    "same K and --seed). [default: a new folder under --out]",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the resolved settings as a TOML config file (for --config) and exit without training.",
)
@click_options
def run(config_file, recipe, resume, folds, only_fold, parent, print_config, **flags):
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
    if (only_fold is not None or parent is not None) and folds is None:
        raise UsageError(
            f"{'--fold' if only_fold is not None else '--parent'} belongs to --folds K: give --folds too"
        )
    if resume is not None and is_fold_parent(resume):
        if folds is not None or only_fold is not None or parent is not None:
            raise UsageError(
                f"--resume {resume} continues its own folds: leave out --folds, --fold and --parent"
            )
        from segkit.racing.folds import resume_folds

        _print_folds_result(resume_folds(resume, values, echo=click.echo), click.echo)
        return
    if resume is not None:
        given = [flag for flag, value in (("--config", config_file), ("--recipe", recipe)) if value]
        if given:
            raise UsageError(
                f"{' and '.join(given)} cannot be combined with --resume: a resumed run keeps the settings "
                f"it recorded (to start a new run from them: segkit run --config {resume / 'config.json'})"
            )
        config = resolve_resumed_config(resume, values)
    else:
        from segkit.racing.folds import one_fold_budget, planned_folds

        values, total_budget = one_fold_budget(values, folds if folds != 1 else None)
        config = resolve_planned_config(values, config_file, recipe)
        folds = planned_folds(config, folds)
        if only_fold is not None and folds is None:
            raise UsageError("--fold I trains one fold of --folds K (K of 2 or more)")
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
    elif folds is not None:
        from segkit.racing.folds import train_folds

        result = train_folds(config, folds, only_fold, echo=echo, total_budget_s=total_budget, parent=parent)
        _print_folds_result(result, echo)
        return
    else:
        from segkit.racing import train

        result = train(config, echo=echo)
    if result.best_epoch:
        echo(f"Best {result.metric_description}: {result.best_dice:.4f} at epoch {result.best_epoch}")
    if result.stop_reason:
        echo(f"Stopped early: {result.stop_reason}")
    echo(f"Run saved to {result.run_dir}")


def _print_folds_result(result, echo) -> None:
    for index, fold in sorted(result.results.items()):
        if fold.best_epoch:
            what = fold.metric_description or "validation score"
            echo(f"Fold {index}: best {what} {fold.best_dice:.4f} at epoch {fold.best_epoch}")
    echo(f"Run saved to {result.parent}")
