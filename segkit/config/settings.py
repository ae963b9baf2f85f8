"""Every setting of ``segkit run``, declared once: name, default, allowed values, help, flag.

``SETTINGS`` is the one table. From it come the defaults (``DEFAULTS``, the seed report's settings),
the ``segkit run`` flags (``click_options``), the conversion of what those flags parsed into values
(``flag_layer``), the checks of values from any layer, flags, config files and recipes alike
(``check_value``), the settings ``--resume`` lets flags change (``RESUME_OVERRIDES``) and the order
of the "where each setting came from" printout.

To add a setting, add one ``Setting`` to ``SETTINGS`` at the place it should print; the engine reads
it as ``config["name"]``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from segkit.config.options import parse_options, parse_value
from segkit.errors import UsageError


@dataclass(frozen=True)
class Rule:
    """What a setting accepts, and the words that say so in an error ("a positive integer")."""

    accepts: Callable[[Any], bool]
    expected: str


@dataclass(frozen=True)
class Setting:
    """One setting of a run.

    ``flags`` are click's declarations (the first is the flag's name in messages; ``"--tta/--no-tta"``
    makes a boolean pair); empty: ``--name-with-dashes``. ``from_flag`` turns what click parsed into the
    value; ``normalize`` turns a value from any layer into the stored one (``"15m"`` -> 900.0) before
    ``rule`` checks it. ``default_text`` is what ``--help`` shows as the default where the value
    itself reads badly or a dataset may set its own; ``on_resume``: flags may change it on
    ``--resume``; ``cli=False``: config files and recipes only.
    """

    name: str
    default: Any
    rule: Rule
    help: str
    flags: tuple[str, ...] = ()
    click_type: Any = None
    choices: tuple[str, ...] = ()
    from_flag: Callable[[Any], Any] | None = None
    normalize: Callable[[Any], Any] | None = None
    multiple: bool = False
    is_flag: bool = False
    metavar: str | None = None
    default_text: str | None = None
    on_resume: bool = False
    cli: bool = True

    @property
    def flag(self) -> str | None:
        """The flag as messages name it (``--learning-rate``); None for config-only settings."""
        if not self.cli:
            return None
        return self.flags[0].split("/")[0] if self.flags else "--" + self.name.replace("_", "-")

    @property
    def help_text(self) -> str:
        """The flag's help, ending with the default that really applies."""
        if self.default_text:
            default = self.default_text
        elif isinstance(self.default, bool):
            default = "on" if self.default else "off"
        elif self.default in (None, [], {}):
            default = "none"
        else:
            default = format_value(self.default)
        return f"{self.help} [default: {default}]"


# -- rules ----------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _path(value: Any) -> bool:
    return isinstance(value, (str, Path)) and bool(str(value))


NAME = Rule(_name, "a name")
BOOLEAN = Rule(lambda value: isinstance(value, bool), "true or false")
INTEGER = Rule(_is_int, "an integer")
POSITIVE_INTEGER = Rule(lambda value: _is_int(value) and value >= 1, "a positive integer")
POSITIVE_NUMBER = Rule(lambda value: _is_number(value) and value > 0, "a positive number")
FRACTION = Rule(lambda value: _is_number(value) and 0 <= value < 1, "a number in [0, 1)")
FOLDER = Rule(_path, "a folder path")
OPTIONAL_FOLDER = Rule(lambda value: value is None or _path(value), "a folder path")
TABLE = Rule(lambda value: isinstance(value, dict), "a table of KEY = VALUE")


def one_of(*choices: Any) -> Rule:
    """Exactly one of ``choices``: ``1`` is not ``true`` and ``"true"`` is not ``True``."""
    return Rule(
        lambda value: any(type(value) is type(choice) and value == choice for choice in choices),
        "one of "
        + ", ".join(str(choice).lower() if isinstance(choice, bool) else choice for choice in choices),
    )


# -- special parsing ------------------------------------------------------------------------------------


def parse_duration(text: str | float | int | None) -> float | None:
    """``"15m"`` -> 900.0 seconds; ``"90s"``, ``"1.5h"`` and plain seconds also work."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        units = {"s": 1, "m": 60, "h": 3600}
        raw = str(text).strip().lower()
        factor = units.get(raw[-1:], None)
        number = raw[:-1] if factor else raw
        try:
            seconds = float(number) * (factor or 1)
        except ValueError:
            raise UsageError(
                f"--time-budget expects a duration such as 90s, 15m or 1.5h, got {text!r}"
            ) from None
    if not seconds > 0:
        raise UsageError(f"--time-budget must be positive, got {text!r}")
    return seconds


def _duration_or_as_is(value: Any) -> Any:
    """Strings and numbers become seconds; anything else (true, a list) is left for the rule to refuse."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    return parse_duration(value)


def parse_sizes(text: str) -> list[int]:
    """``"64,96,128"`` (or ``"64, 96, 128"``, as the settings printout writes it) -> ``[64, 96, 128]``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--progressive-sizes expects positive sizes separated by commas, got {text!r}")
    return sizes


def parse_callback_options(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["early_stopping.patience=5"]`` -> ``{"early_stopping": {"patience": 5}}``."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        name, dot, rest = pair.partition(".")
        if not dot or not name:
            raise UsageError(f"--callback-option expects NAME.KEY=VALUE, got {pair!r}")
        grouped.setdefault(name, []).append(rest)
    return {name: parse_options(items, f"--callback-option {name}.") for name, items in grouped.items()}


def absolute_folder(value: Any) -> Any:
    """A folder path as an absolute path string (``~`` expanded), so that a run recorded with a relative
    ``--data-path`` still finds its data from another working folder; other values are left for the
    rule to refuse."""
    if isinstance(value, Path) or (isinstance(value, str) and value):
        return os.path.abspath(os.path.expanduser(os.fspath(value)))
    return value


def _options_of(flag: str) -> Callable[[Iterable[str]], dict[str, Any]]:
    return lambda pairs: parse_options(pairs, flag)


def format_value(value: Any) -> str:
    """A value as the settings printout shows it (lists as ``--progressive-sizes`` reads them back)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


# -- the table ------------------------------------------------------------------------------------------

_SIZES = Rule(
    lambda value: isinstance(value, list) and all(_is_int(size) and size > 0 for size in value),
    "a list of positive image sizes, e.g. [96, 128, 160]",
)
_WORKERS = Rule(lambda value: value == "auto" or (_is_int(value) and value >= 0), "'auto' or an integer >= 0")
_DURATION = Rule(
    lambda value: value is None or (_is_number(value) and value > 0), "a duration such as 90s, 15m or 1.5h"
)
_THRESHOLD = Rule(lambda value: _is_number(value) and 0 < value < 1, "a number strictly between 0 and 1")
_CALLBACKS = Rule(
    lambda value: value is None or (isinstance(value, list) and all(isinstance(name, str) for name in value)),
    "a list of callback names",
)
_CALLBACK_OPTIONS = Rule(
    lambda value: isinstance(value, dict) and all(isinstance(options, dict) for options in value.values()),
    "a table of KEY = VALUE per callback ([callback_options.NAME])",
)
#: A crop or tile side in pixels, or none (resize instead).
_OPTIONAL_SIDE = Rule(
    lambda value: value is None or (_is_int(value) and value >= 8), "an integer >= 8, or none"
)
_NUMBER_AT_LEAST_ZERO = Rule(lambda value: _is_number(value) and value >= 0, "a number >= 0")


def _choice(name: str, default: str, choices: tuple[str, ...], help: str, **more: Any) -> Setting:
    return Setting(
        name, default, one_of(*choices), help, click_type=click.Choice(choices), choices=choices, **more
    )


_PATH = click.Path(path_type=Path)

SETTINGS: tuple[Setting, ...] = (
    Setting("model", "unet", NAME, "Registered model name (see `segkit plugins`)."),
    Setting("loss", "bce_dice", NAME, "Registered loss name, e.g. bce_dice, bce_tversky."),
    Setting(
        "dataset",
        "synthetic",
        NAME,
        "Registered dataset name: synthetic (built in, no download), oxford_pet, folder.",
    ),
    Setting(
        "data_path",
        None,
        OPTIONAL_FOLDER,
        "Folder of your data, for the datasets that read one (folder, oxford_pet); recorded as an "
        "absolute path (on --resume, the data's new place if it moved). The synthetic dataset "
        "generates its images and reads none.",
        click_type=_PATH,
        normalize=absolute_folder,
        default_text="none",
        on_resume=True,
    ),
    Setting(
        "epochs",
        200,
        POSITIVE_INTEGER,
        "Number of epochs.",
        click_type=int,
        default_text="dataset's, else 200",
        on_resume=True,
    ),
    Setting(
        "batch_size",
        32,
        POSITIVE_INTEGER,
        "Images per training step (per micro-batch with --accumulate-steps).",
        click_type=int,
        default_text="dataset's, else 32",
    ),
    Setting(
        "accumulate_steps",
        1,
        POSITIVE_INTEGER,
        "Gradient accumulation: micro-batches of --batch-size per optimizer step (effective batch = "
        "N x --batch-size); the learning-rate schedule, weight average, NaN policy and time budget "
        "count optimizer steps.",
        click_type=int,
        metavar="N",
    ),
    Setting(
        "learning_rate",
        1e-3,
        POSITIVE_NUMBER,
        "Peak learning rate.",
        flags=("--learning-rate", "--lr"),
        click_type=float,
        default_text="dataset's, else 1e-3",
    ),
    Setting("weight_decay", 0.0, _NUMBER_AT_LEAST_ZERO, "Weight decay.", click_type=float, default_text="0"),
    _choice("optimizer", "adam", ("adam", "adamw", "sgd"), "Optimizer."),
    _choice(
        "scheduler",
        "none",
        ("none", "cosine", "onecycle"),
        "Learning-rate schedule, planned over the epochs or the --time-budget.",
        default_text="dataset's, else none",
    ),
    Setting(
        "warmup_fraction",
        0.0,
        FRACTION,
        "Fraction of the run (of its steps, or of --time-budget) spent warming the learning rate up "
        "linearly.",
        click_type=float,
        default_text="0",
    ),
    Setting(
        "image_size",
        256,
        POSITIVE_INTEGER,
        "Training/validation side length in pixels: photos are resized to it. With --crop-size the network "
        "input is the crop, and this is the crop size (what predict --no-tile resizes to).",
        click_type=int,
        default_text="dataset's, else 256; the crop size with --crop-size",
    ),
    Setting(
        "augment",
        "default",
        NAME,
        "Training augmentation pipeline: none, default (the report's), strong, or a plugin's.",
        default_text="dataset's, else default",
    ),
    Setting(
        "progressive_sizes",
        [],
        _SIZES,
        "Progressive resizing: train at these comma-separated sizes in turn (e.g. 96,128,160), each "
        "for an equal share of the run or of --time-budget; validation, checkpoints and inference "
        "use --image-size.",
        from_flag=parse_sizes,
        metavar="SIZES",
        default_text="none, train at --image-size throughout",
    ),
    Setting(
        "crop_size",
        None,
        _OPTIONAL_SIDE,
        "Train on random N x N crops at native resolution (after --scale) instead of resizing each photo "
        "whole; validation then runs on whole photos at native resolution, through tiles (--tile). "
        "For thin or small structures and large photos. With --progressive-sizes, those are crop sizes.",
        click_type=int,
        metavar="N",
        default_text="none: resize photos to --image-size",
    ),
    Setting(
        "scale",
        1.0,
        Rule(lambda value: _is_number(value) and 0 < value <= 4, "a number in (0, 4]"),
        "With --crop-size: rescale every photo by this factor before cropping and tiling (0.5 halves "
        "a photo's sides), in training, validation, predict and evaluate.",
        click_type=float,
        default_text="1, native resolution",
    ),
    Setting(
        "foreground_fraction",
        0.33,
        Rule(lambda value: _is_number(value) and 0 <= value <= 1, "a number in [0, 1]"),
        "With --crop-size: the share of crops centred on a foreground pixel (multiclass: on a pixel of "
        "a class picked at random among those present), so rare structures are seen often.",
        click_type=float,
    ),
    Setting(
        "tile",
        None,
        _OPTIONAL_SIDE,
        "With --crop-size: tiled inference at native resolution, N x N tiles (N >= the crop size) for "
        "validation, and as predict/evaluate's default.",
        click_type=int,
        metavar="N",
        default_text="twice --crop-size with --crop-size, else none (resize)",
    ),
    Setting(
        "overlap",
        0.25,
        Rule(lambda value: _is_number(value) and 0 <= value < 1, "a number in [0, 1)"),
        "Share of a tile that overlaps its neighbour in tiled inference.",
        click_type=float,
    ),
    _choice(
        "blend",
        "gaussian",
        ("gaussian", "constant"),
        "How overlapping tiles are weighted: gaussian (centre pixels count most) or constant.",
    ),
    Setting(
        "ema_decay",
        0.0,
        Rule(FRACTION.accepts, "a number in [0, 1) (0: no weight average)"),
        "Validate, checkpoint and predict with an exponential moving average of the weights with "
        "this decay per step (e.g. 0.99); 0 turns it off.",
        click_type=float,
        default_text="0",
    ),
    Setting(
        "calibrate_threshold",
        False,
        BOOLEAN,
        "Pick the probability threshold (0.3-0.7) with the best valid Dice each epoch and store it in "
        "the checkpoint for predict and evaluate.",
        flags=("--calibrate-threshold/--no-calibrate-threshold",),
    ),
    Setting(
        "tta",
        False,
        BOOLEAN,
        "Flip test-time augmentation in validation, and as predict/evaluate's default.",
        flags=("--tta/--no-tta",),
    ),
    Setting(
        "fill_holes",
        False,
        BOOLEAN,
        "Make hole filling predict/evaluate's default post-processing.",
        flags=("--fill-holes/--no-fill-holes",),
    ),
    Setting(
        "keep_largest",
        False,
        BOOLEAN,
        "Make keeping the largest component predict/evaluate's default post-processing.",
        flags=("--keep-largest/--no-keep-largest",),
    ),
    Setting(
        "device",
        "auto",
        NAME,
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
        on_resume=True,
    ),
    _choice(
        "amp",
        "auto",
        ("auto", "off", "bf16", "fp16"),
        "Mixed precision on CUDA (auto: bf16, else fp16 with a grad scaler; off on CPU).",
    ),
    Setting(
        "channels_last",
        "auto",
        one_of("auto", True, False),
        "Channels-last memory format (auto: on CUDA, and on the CPU for inference only).",
        cli=False,
    ),
    Setting("seed", 0, INTEGER, "Random seed for data order, augmentation and weights.", click_type=int),
    Setting(
        "workers",
        "auto",
        _WORKERS,
        "DataLoader worker processes, or auto: none on a CPU of 1 or 2 cores (photos are then decoded "
        "once and kept in memory), else up to 4 (8 with a GPU).",
        from_flag=parse_value,
        on_resume=True,
    ),
    Setting(
        "time_budget",
        None,
        _DURATION,
        "Stop cleanly after this wall-clock time (90s, 15m, 1.5h); schedules plan for it.",
        normalize=_duration_or_as_is,
        metavar="DURATION",
        on_resume=True,
    ),
    Setting(
        "race",
        True,
        BOOLEAN,
        "With --recipe auto: when the data leaves several plans reasonable, train each for a slice of "
        "the budget (a quarter in all), score them on the valid split at original resolution, and "
        "continue the best with its weights (successive halving); --no-race trains the rules' first "
        "choice. Other recipes: no effect.",
        flags=("--race/--no-race",),
    ),
    Setting("threshold", 0.5, _THRESHOLD, "Probability threshold for Dice/IoU.", click_type=float),
    Setting("out", "runs", FOLDER, "Folder under which the run folder is made.", click_type=_PATH),
    Setting(
        "model_options",
        {},
        TABLE,
        "Option for the model factory, repeatable (e.g. base_channels=16); `segkit plugins --kind model "
        "--options` lists each model's options.",
        flags=("--model-option",),
        from_flag=_options_of("--model-option"),
        multiple=True,
        metavar="KEY=VALUE",
        default_text="dataset's for the model, else none",
    ),
    Setting(
        "init_from",
        None,
        Rule(lambda value: value is None or _path(value), "a file path"),
        "Start from saved weights: a segkit checkpoint (a run's best.pt or last.pt) or a plain state dict "
        "(torch.save(model.state_dict())), read with weights_only=True. Every tensor whose name and shape "
        "fit the model is loaded and the rest re-initialised (e.g. a head for another number of classes); "
        "the run prints what it loaded and skipped. Recorded as an absolute path; --resume continues from "
        "last.pt instead.",
        click_type=_PATH,
        normalize=absolute_folder,
        metavar="CHECKPOINT_OR_STATE_DICT",
        default_text="none, the model's own initial weights",
    ),
    Setting(
        "freeze_encoder",
        0.0,
        Rule(lambda value: _is_number(value) and 0 <= value <= 1, "a number in [0, 1]"),
        "Freeze the model's encoder (its weights and BatchNorm statistics) for this first fraction of the "
        "run (of the epochs, or of --time-budget), e.g. 0.2 with a pretrained encoder; 1 freezes it "
        "throughout. Needs a model with an encoder (resnet34_unet, segkit-smp's).",
        click_type=float,
        metavar="F",
        default_text="0, never frozen",
    ),
    Setting(
        "loss_options",
        {},
        TABLE,
        "Option for the loss, repeatable (e.g. alpha=0.3); `segkit plugins --kind loss --options` lists "
        "each loss's options.",
        flags=("--loss-option",),
        from_flag=_options_of("--loss-option"),
        multiple=True,
        metavar="KEY=VALUE",
        default_text="none",
    ),
    Setting(
        "dataset_options",
        {},
        TABLE,
        "Option for the dataset, repeatable (e.g. border=ignore); `segkit plugins --kind dataset "
        "--options` lists each dataset's options. root, split, image_size and augment are set by "
        "--data-path, the engine, --image-size and --augment.",
        flags=("--dataset-option",),
        from_flag=_options_of("--dataset-option"),
        multiple=True,
        metavar="KEY=VALUE",
        default_text="none",
    ),
    Setting(
        "callbacks",
        [],
        _CALLBACKS,
        "Add a callback to those that run by default (csv and excel), repeatable (e.g. early_stopping, or "
        "the trackers tensorboard and mlflow: pip install 'segkit[tensorboard]' / 'segkit[mlflow]'); "
        "`segkit plugins --kind callback` lists them.",
        flags=("--callback",),
        from_flag=list,
        multiple=True,
        metavar="NAME",
        default_text="none beyond the defaults",
        on_resume=True,
    ),
    Setting(
        "disable_callbacks",
        [],
        _CALLBACKS,
        "Leave out a callback that runs by default (csv: metrics.csv, excel: the workbook), repeatable.",
        flags=("--no-callback",),
        from_flag=list,
        multiple=True,
        metavar="NAME",
        default_text="none, every default callback runs",
        on_resume=True,
    ),
    Setting(
        "callback_options",
        {},
        _CALLBACK_OPTIONS,
        "Option for a callback, repeatable (e.g. early_stopping.patience=5); `segkit plugins --kind "
        "callback --options` lists each callback's options.",
        flags=("--callback-option",),
        from_flag=parse_callback_options,
        multiple=True,
        metavar="NAME.KEY=VALUE",
        default_text="none",
        on_resume=True,
    ),
    _choice("on_nan", "stop", ("stop", "skip"), "A NaN/inf loss stops the run, or skips the step."),
    Setting(
        "quiet",
        False,
        BOOLEAN,
        "No settings printout, progress bars or per-epoch lines. Without it the settings and per-epoch "
        "lines go to stdout and progress bars to stderr, only on a terminal: `segkit run ... > train.log` "
        "keeps the per-epoch lines in a log file without bars.",
        flags=("--quiet", "-q"),
        is_flag=True,
        on_resume=True,
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
#: The seed report's settings (train.py): 256x256, Adam 1e-3, batch 32, 200 epochs.
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}
#: Settings whose values are tables of KEY = VALUE (their default is one), merged key by key across layers.
OPTION_TABLES = tuple(setting.name for setting in SETTINGS if isinstance(setting.default, dict))
#: What flags may change on ``--resume``; the rest is the run's recorded settings.
RESUME_OVERRIDES = tuple(setting.name for setting in SETTINGS if setting.on_resume)
#: Dataset options the engine sets itself, and the setting a user gives instead.
ENGINE_DATASET_OPTIONS = {
    "root": "data_path",
    "split": None,  # the engine reads train and valid; `segkit evaluate --split` scores the others
    "image_size": "image_size",
    "augment": "augment",
    "sampling": "crop_size",  # with --scale and --foreground-fraction
}
#: Other names a user may give a setting by (its flags' names, with underscores): ``lr``.
ALIASES: dict[str, str] = {
    flag.split("/")[0][2:].replace("-", "_"): setting.name
    for setting in SETTINGS
    for flag in setting.flags
    if flag.startswith("--") and flag.split("/")[0][2:].replace("-", "_") != setting.name
}


# -- checks ---------------------------------------------------------------------------------------------


def describe_key(setting: Setting, source: str) -> str:
    """How a message names a setting: ``--epochs`` for a flag, else the key, its flag and its source."""
    if source == "flag" and setting.flag:
        return setting.flag
    named = f"{setting.name} ({setting.flag})" if setting.flag else setting.name
    return f"{named} from {source}" if source else named


def check_value(name: str, value: Any, source: str) -> Any:
    """The value to store for setting ``name`` (normalized), or a one-line ``UsageError`` naming the key
    and, unless it was a flag, where the value came from."""
    setting = BY_NAME[name]
    try:
        normalized = value if setting.normalize is None else setting.normalize(value)
    except UsageError:
        if source == "flag":
            raise  # its own message names the flag and says what is wrong
    else:
        if setting.rule.accepts(normalized):
            return normalized
    message = f"{describe_key(setting, source)} must be {setting.rule.expected}, got {value!r}"
    raise UsageError(message + _quoted_hint(setting, value, source))


def _quoted_hint(setting: Setting, value: Any, source: str) -> str:
    """For a file's ``epochs = "10"``: that it is a string, and how to write the value instead."""
    if source == "flag" or not isinstance(value, str):
        return ""
    unquoted = parse_value(value)
    if isinstance(unquoted, str):
        return ""
    try:
        normalized = unquoted if setting.normalize is None else setting.normalize(unquoted)
    except UsageError:
        return ""
    if not setting.rule.accepts(normalized):
        return ""
    written = str(unquoted).lower() if isinstance(unquoted, bool) else repr(unquoted)
    return f" (a string: write {setting.name} = {written}, without quotes)"


def check_dataset_options(options: Any, source: str) -> None:
    """Refuse dataset options the engine sets itself (``image_size``: ``--image-size``), which would
    otherwise train on something other than what the run records."""
    if not isinstance(options, dict):
        return
    for key in options:
        if key not in ENGINE_DATASET_OPTIONS:
            continue
        where = f"--dataset-option {key}" if source == "flag" else f"dataset_options.{key} from {source}"
        instead = ENGINE_DATASET_OPTIONS[key]
        if instead is None:
            raise UsageError(
                f"{where}: the split is not a dataset option; a run trains on the train split and "
                "validates on the valid split, and `segkit evaluate RUN --split test` scores another"
            )
        setting = BY_NAME[instead]
        raise UsageError(
            f"{where}: {key} is set by {setting.flag} (config key {setting.name}); use that instead, so "
            "that the run records what it trained on"
        )


# -- flags ----------------------------------------------------------------------------------------------


def click_options(function: Callable) -> Callable:
    """Decorate a click command with one option per setting that has a flag, in the table's order.

    Every option defaults to None (not given), so that lower layers show through; ``flag_layer`` turns
    what the options parsed into a layer of values.
    """
    for setting in reversed(SETTINGS):
        if not setting.cli:
            continue
        declarations = setting.flags or ("--" + setting.name.replace("_", "-"),)
        function = click.option(
            *declarations,
            setting.name,
            type=setting.click_type,
            multiple=setting.multiple,
            is_flag=setting.is_flag or None,
            default=None,
            metavar=setting.metavar,
            help=setting.help_text,
        )(function)
    return function


def flag_layer(flags: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line, converted from what click parsed (others are absent)."""
    layer: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.name)
        if raw is None or (setting.multiple and not raw):
            continue
        layer[setting.name] = setting.from_flag(raw) if setting.from_flag else raw
    return layer
