"""``segkit run``: train a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from segkit.config import (
    REPORT_DEFAULTS,
    ResolvedConfig,
    dataset_defaults,
    parse_duration,
    read_config_file,
    validate,
)
from segkit.errors import UsageError
from segkit.options import parse_options, parse_value

# What --resume lets flags change; the rest is the run's recorded settings.
RESUME_OVERRIDES = ("epochs", "time_budget", "quiet", "device", "workers", "callbacks", "callback_options")


def _recipe_layer(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    import segkit

    return dict(segkit.get_component("recipe", name).factory)


def resolve_run_config(flags: dict[str, Any], config_file: Path | None, recipe: str | None) -> ResolvedConfig:
    import segkit

    config = ResolvedConfig()
    config.apply(REPORT_DEFAULTS, "seed report default")
    file_layer = read_config_file(config_file) if config_file else {}
    recipe = recipe or file_layer.pop("recipe", None)
    if recipe is not None and not isinstance(recipe, str):
        raise UsageError(f"recipe must be the name of a registered recipe, got {recipe!r}")
    user_layers = [
        (file_layer, f"config {config_file}"),
        ({k: v for k, v in flags.items() if v is not None}, "flag"),
    ]
    model = next(
        (layer["model"] for layer, _ in reversed(user_layers) if "model" in layer), REPORT_DEFAULTS["model"]
    )
    dataset = next(
        (layer["dataset"] for layer, _ in reversed(user_layers) if "dataset" in layer),
        REPORT_DEFAULTS["dataset"],
    )
    component = segkit.get_component("dataset", dataset)
    config.apply(dataset_defaults(component.metadata.get("defaults"), model), f"dataset {dataset} default")
    if recipe:
        config.apply(_recipe_layer(recipe), f"recipe {recipe}")
    for layer, source in user_layers:
        config.apply(layer, source)
    if isinstance(config.values["time_budget"], (str, int, float)):
        config.values["time_budget"] = parse_duration(config.values["time_budget"])
    validate(config)
    check_component_names(config)
    return config


def check_component_names(config: ResolvedConfig) -> None:
    """Fail fast, before any data is read, on a misspelled model, loss, dataset or callback."""
    import segkit

    for kind in ("model", "loss", "dataset"):
        segkit.get_component(kind, config[kind])
    for name in config["callbacks"] or []:
        segkit.get_component("callback", name)


def _sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--progressive-sizes expects positive sizes separated by commas, got {text!r}")
    return sizes


def _workers(value: str | None) -> Any:
    return None if value is None else parse_value(value)


@click.command("run")
@click.option("--model", help="Registered model name (see `segkit plugins`). [default: unet]")
@click.option("--loss", help="Registered loss name, e.g. bce_dice, bce_tversky. [default: bce_dice]")
@click.option(
    "--dataset",
    help="Registered dataset name: synthetic (built in, no download), oxford_pet, folder. "
    "[default: synthetic]",
)
@click.option(
    "--data-path", type=click.Path(path_type=Path), help="Folder of the dataset (not needed for synthetic)."
)
@click.option("--epochs", type=int, help="Number of epochs. [default: dataset's, else 200]")
@click.option("--batch-size", type=int, help="Images per training step. [default: dataset's, else 32]")
@click.option(
    "--learning-rate", "--lr", "learning_rate", type=float, help="Peak learning rate. [default: 1e-3]"
)
@click.option("--weight-decay", type=float, help="Weight decay. [default: 0]")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), help="Optimizer. [default: adam]")
@click.option(
    "--scheduler",
    type=click.Choice(["none", "cosine", "onecycle"]),
    help="Learning-rate schedule, planned over the epochs or the --time-budget. [default: none]",
)
@click.option(
    "--warmup-fraction",
    type=float,
    help="Fraction of the run (of its steps, or of --time-budget) spent warming the learning rate up "
    "linearly. [default: 0]",
)
@click.option(
    "--image-size", type=int, help="Training/validation side length in pixels. [default: dataset's, else 256]"
)
@click.option(
    "--progressive-sizes",
    metavar="SIZES",
    help="Progressive resizing: train at these comma-separated sizes in turn (e.g. 96,128,160), "
    "each for an equal share of the run or of --time-budget; validation, checkpoints and inference "
    "use --image-size. [default: none, train at --image-size throughout]",
)
@click.option(
    "--augment", help="Training augmentation pipeline: none, default (the report's), strong, or a plugin's."
)
@click.option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps. [default: auto]")
@click.option(
    "--amp",
    type=click.Choice(["auto", "off", "bf16", "fp16"]),
    help="Mixed precision on CUDA (auto: bf16, else fp16 with a grad scaler; off on CPU).",
)
@click.option("--seed", type=int, help="Random seed for data order, augmentation and weights. [default: 0]")
@click.option("--workers", help="DataLoader worker processes, or auto. [default: auto]")
@click.option(
    "--time-budget", help="Stop cleanly after this wall-clock time (90s, 15m, 1.5h); schedules plan for it."
)
@click.option("--threshold", type=float, help="Probability threshold for Dice/IoU. [default: 0.5]")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder under which the run folder is made. [default: runs]",
)
@click.option(
    "--on-nan", type=click.Choice(["stop", "skip"]), help="A NaN/inf loss stops the run, or skips the step."
)
@click.option(
    "--ema-decay",
    type=float,
    help="Validate, checkpoint and predict with an exponential moving average of the weights with "
    "this decay per step (e.g. 0.99); 0 turns it off. [default: 0]",
)
@click.option(
    "--calibrate-threshold/--no-calibrate-threshold",
    default=None,
    help="Pick the probability threshold (0.3-0.7) with the best valid Dice each epoch and store it "
    "in the checkpoint for predict and evaluate. [default: off]",
)
@click.option(
    "--tta/--no-tta",
    default=None,
    help="Flip test-time augmentation in validation, and as predict/evaluate's default. [default: off]",
)
@click.option(
    "--fill-holes/--no-fill-holes",
    default=None,
    help="Make hole filling predict/evaluate's default post-processing. [default: off]",
)
@click.option(
    "--keep-largest/--no-keep-largest",
    default=None,
    help="Make keeping the largest component predict/evaluate's default post-processing. [default: off]",
)
@click.option(
    "--recipe",
    help="Named preset of settings; flags and --config override it. Built in: seed (the report's "
    "recipe) and budget (most Dice from --time-budget, default 15m). `segkit plugins --kind recipe` "
    "lists all.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="TOML file of settings (keys as the flags, with underscores); flags override it.",
)
@click.option(
    "--model-option",
    "model_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the model factory, repeatable (e.g. base_channels=16).",
)
@click.option(
    "--loss-option",
    "loss_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the loss, repeatable (e.g. alpha=0.3).",
)
@click.option(
    "--dataset-option",
    "dataset_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the dataset, repeatable (e.g. border=ignore).",
)
@click.option(
    "--callback",
    "callbacks",
    multiple=True,
    help="Enable only these callbacks, repeatable (default: those marked default, csv and excel).",
)
@click.option(
    "--callback-option",
    "callback_option",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Option for a callback, repeatable (e.g. early_stopping.patience=5).",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, file_okay=False),
    help="Continue the run in this folder from its last.pt with its recorded settings; only --epochs, "
    "--time-budget, --device, --workers, --callback(-option) and --quiet may change.",
)
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bars or per-epoch lines.")
def run(
    config_file,
    recipe,
    model_option,
    loss_option,
    dataset_option,
    callbacks,
    callback_option,
    resume,
    **flags,
):
    """Train a segmentation model and write a run folder (config, metrics, checkpoints).

    Settings resolve in layers, each overriding the one before: the seed report's defaults (Adam 1e-3,
    batch 32, 200 epochs, 256x256), the dataset's own defaults, --recipe, --config, then flags. The
    resolved settings are printed with where each came from, and saved in the run folder.

    Validation Dice is the mean of per-image Dice at the network input size, threshold 0.5 unless
    --threshold says otherwise.
    """
    from segkit.engine.rundir import read_run_config
    from segkit.engine.trainer import fit

    flags["workers"] = _workers(flags["workers"])
    flags["progressive_sizes"] = _sizes(flags["progressive_sizes"])
    if model_option:
        flags["model_options"] = parse_options(model_option, "--model-option")
    if loss_option:
        flags["loss_options"] = parse_options(loss_option, "--loss-option")
    if dataset_option:
        flags["dataset_options"] = parse_options(dataset_option, "--dataset-option")
    if callbacks:
        flags["callbacks"] = list(callbacks)
    if callback_option:
        flags["callback_options"] = _callback_options(callback_option)

    if resume is not None:
        recorded = read_run_config(resume)["config"]
        config = ResolvedConfig()
        config.apply(recorded, f"run {resume}")
        overrides = {k: v for k, v in flags.items() if v is not None and k in RESUME_OVERRIDES}
        config.apply(overrides, "flag")
        if isinstance(config.values["time_budget"], str):
            config.values["time_budget"] = parse_duration(config.values["time_budget"])
        validate(config)
        check_component_names(config)
    else:
        config = resolve_run_config(flags, config_file, recipe)
    echo = click.echo
    if not config["quiet"]:
        echo("Settings (value, and where it came from):")
        for key, value, source in config.describe():
            echo(f"  {key:<17} {value:<24} {source}")
    result = fit(config, echo=echo, resume_dir=resume)
    if result.best_epoch:
        echo(f"Best {result.metric_description}: {result.best_dice:.4f} at epoch {result.best_epoch}")
    if result.stop_reason:
        echo(f"Stopped early: {result.stop_reason}")
    echo(f"Run saved to {result.run_dir}")


def _callback_options(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or not name:
            raise UsageError(f"--callback-option expects NAME.KEY=VALUE, got {pair!r}")
        grouped.setdefault(name, []).append(rest)
    return {name: parse_options(items, f"--callback-option {name}.") for name, items in grouped.items()}
