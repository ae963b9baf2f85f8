"""Resolution of a run's settings from layers, each value remembering where it came from.

Precedence, lowest first: the seed report's defaults; the dataset's own defaults; the recipe
(``--recipe``); the config file (``--config run.toml``, or a run's ``config.json``); command-line
flags. A resumed run (``--resume RUN``) starts from the settings its ``config.json`` recorded instead;
flags may change only the settings in ``RESUME_OVERRIDES``, and any other flag that would change a
recorded setting is a usage error. Which settings exist, their defaults and their checks are declared
once, in ``segkit.config.settings``; ``to_toml`` writes resolved settings back as a config file.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.components import get_component, list_components
from segkit.config.checks import check_component_options, fit_image_size_to_crops
from segkit.config.run_folder import read_fold_record, read_run_config
from segkit.config.settings import (
    ALIASES,
    BY_NAME,
    DEFAULTS,
    OPTION_TABLES,
    RESUME_OVERRIDES,
    SETTINGS,
    check_dataset_options,
    check_value,
    describe_key,
    format_value,
    parse_duration,
)
from segkit.errors import UnknownComponentError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "OPTION_TABLES",
    "RESUME_OVERRIDES",
    "ResolvedConfig",
    "check_component_names",
    "check_tile_fits_crops",
    "dataset_defaults",
    "enabled_callbacks",
    "parse_duration",
    "read_config_file",
    "resolve_resumed_config",
    "resolve_run_config",
    "to_toml",
    "validate",
]

DEFAULT_SOURCE = "seed report default"


@dataclass
class ResolvedConfig:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: The ``segkit.planning.Plan`` behind the settings when ``--recipe`` named a planner.
    plan: Any = None
    #: A fold run's fold (``segkit.data.folds.fold_record``): its train and valid splits are the fold's.
    fold: Any = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def apply(self, layer: Mapping[str, Any], source: str) -> None:
        """Lay ``layer`` over the values so far; option tables merge key by key."""
        for key, value in layer.items():
            if key not in BY_NAME:
                raise UsageError(_unknown_setting_message(key, source))
            if key in OPTION_TABLES:
                if not isinstance(value, dict):
                    raise UsageError(f"{key} from {source} must be a table of KEY = VALUE")
                if key == "dataset_options":
                    check_dataset_options(value, source)
                merged = dict(self.values.get(key) or {})
                merged.update(value)
                self.values[key] = merged
            else:  # a copy of a list, so that no layer (the defaults included) is changed through it
                self.values[key] = list(value) if isinstance(value, list) else value
            self.sources[key] = source

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for printing, in the settings table's order."""
        return [
            (setting.name, format_value(self.values.get(setting.name)), self.sources.get(setting.name, ""))
            for setting in SETTINGS
        ]


def _unknown_setting_message(key: str, source: str) -> str:
    message = f"unknown setting {key!r} from {source}."
    if key in ALIASES:
        setting = BY_NAME[ALIASES[key]]
        message += f" Did you mean {setting.name!r}? (keys are the settings' names; {setting.flag}'s is that)"
    else:
        nearest = difflib.get_close_matches(str(key), [*BY_NAME, *ALIASES], n=1, cutoff=0.6)
        if nearest:
            message += f" Did you mean {ALIASES.get(nearest[0], nearest[0])!r}?"
    return message + f" Known settings: {', '.join(sorted(BY_NAME))}"


def validate(config: ResolvedConfig) -> None:
    """Check every setting (normalizing durations to seconds); a ``UsageError`` names the first bad
    one and, unless it was a flag, where its value came from."""
    for setting in SETTINGS:
        if setting.name not in config.values:
            raise UsageError(f"setting {setting.name!r} has no value")
        source = config.sources.get(setting.name, "")
        config.values[setting.name] = check_value(setting.name, config.values[setting.name], source)


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, or in a JSON file: a run's ``config.json`` (its recorded settings)
    or one table of settings."""
    path = Path(path)
    is_json = path.suffix.lower() == ".json"
    try:
        with path.open("rb") as handle:
            data = json.load(handle) if is_json else tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder (a run's settings are in config.json)") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        kind = "JSON" if is_json else "TOML"
        raise UsageError(f"config file {path} is not valid {kind}: {error}") from None
    except OSError as error:
        raise UsageError(f"config file {path} cannot be read: {error.strerror}") from None
    if is_json and isinstance(data, dict) and isinstance(data.get("config"), dict) and "sources" in data:
        data = data["config"]  # a run's config.json: the settings it recorded
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def dataset_defaults(metadata_defaults: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """A dataset's suggested settings, with ``model_options`` picked for the chosen model."""
    defaults = dict(metadata_defaults or {})
    per_model = defaults.pop("model_options", {}) or {}
    if model in per_model:
        defaults["model_options"] = dict(per_model[model])
    return defaults


#: How a run is planned when ``--recipe`` names a planner: ``plan(name, values, user_set)`` returns a
#: ``segkit.planning.Plan`` (``segkit.planning.make_plan``). The planning layer passes it in; settings
#: resolution itself knows no planner.
PlanFunction = Callable[[str, dict[str, Any], frozenset[str]], Any]


def planner_names() -> list[str]:
    """The registered planners (recipes computed from the data, such as ``auto``)."""
    return [component.name for component in list_components("planner")]


def is_planner(name: str) -> bool:
    """Whether ``--recipe name`` names a planner rather than a fixed recipe."""
    recipes = {component.name for component in list_components("recipe")}
    return name not in recipes and name in planner_names()


def recipe_layer(name: str) -> dict[str, Any]:
    """The settings of the registered recipe ``name``."""
    try:
        settings = get_component("recipe", name).factory
    except UnknownComponentError as error:
        planners = planner_names()
        if not planners:
            raise
        raise UnknownComponentError(
            f"{error} Planners (recipes computed from the data): {', '.join(planners)}"
        ) from None
    if not isinstance(settings, Mapping):
        raise UsageError(f"recipe {name!r} must be a table of settings, got {type(settings).__name__}")
    return dict(settings)


def resolve_run_config(
    flags: Mapping[str, Any],
    config_file: Path | None,
    recipe: str | None,
    plan: PlanFunction | None = None,
    python: tuple[Mapping[str, Any], str] | None = None,
) -> ResolvedConfig:
    """A new run's settings: defaults, the dataset's defaults, the recipe, the config file, the flags.

    ``python``, ``(settings, source)``: the keyword arguments of a Python call (``segkit.train``), as a
    config file writes them (``model_options={"base_channels": 8}``, ``time_budget="10m"``), laid over
    the config file; ``source`` names the call in messages.

    ``flags`` holds values (``segkit.config.settings.flag_layer`` converts what click parsed); None means not
    given. The recipe may also be named by the config file's ``recipe`` key; ``--recipe`` wins. A
    recipe that names a planner is planned with ``plan`` (``segkit.planning.resolve_planned_config``
    passes it); without one, naming a planner is a usage error.
    """
    file_layer = read_config_file(config_file) if config_file else {}
    file_source = f"config {config_file}"
    recipe = recipe or file_layer.pop("recipe", None)
    if recipe is not None and not isinstance(recipe, str):
        raise UsageError(f"recipe from {file_source} must be the name of a registered recipe, got {recipe!r}")
    flag_values = {key: value for key, value in flags.items() if value is not None}
    user_layers = [(file_layer, file_source), *([python] if python else []), (flag_values, "flag")]
    # The dataset's defaults come below the recipe and the user's layers, but which dataset (and
    # which model's options) the user's layers decide: read those two first, checked.
    chosen = {}
    for key in ("model", "dataset"):
        value, source = next(
            ((layer[key], source) for layer, source in reversed(user_layers) if key in layer),
            (DEFAULTS[key], DEFAULT_SOURCE),
        )
        chosen[key] = check_value(key, value, source)
    dataset = get_component("dataset", chosen["dataset"])
    layers = [
        (DEFAULTS, DEFAULT_SOURCE),
        (
            dataset_defaults(dataset.metadata.get("defaults"), chosen["model"]),
            f"dataset {chosen['dataset']} default",
        ),
    ]
    if recipe:
        layer, source, made = _recipe_or_plan(recipe, layers, user_layers, plan)
        layers.append((layer, source))
    else:
        made = None
    config = _resolve(layers + user_layers)
    check_dataset_reads_data_path(config)
    check_tile_fits_crops(config)
    fit_image_size_to_crops(config, [source for _, source in layers + user_layers])
    config.plan = made
    return config


def _recipe_or_plan(
    recipe: str,
    below: Sequence[tuple[Mapping[str, Any], str]],
    user_layers: Sequence[tuple[Mapping[str, Any], str]],
    plan: PlanFunction | None,
) -> tuple[dict[str, Any], str, Any]:
    """The recipe's layer, its source and the plan behind it: a fixed recipe's settings, or what the
    planner of that name plans around the user's layers (with ``plan``)."""
    if not is_planner(recipe):
        return recipe_layer(recipe), f"recipe {recipe}", None
    if plan is None:
        raise UsageError(
            f"recipe {recipe!r} is a planner: resolve with segkit.planning.resolve_planned_config"
        )
    unplanned = _resolve([*below, *user_layers])
    check_dataset_reads_data_path(unplanned)
    user_set = frozenset(key for layer, _ in user_layers for key in layer)
    made = plan(recipe, unplanned.values, user_set)
    return made.settings, f"plan {recipe}", made


def check_dataset_reads_data_path(config: ResolvedConfig) -> None:
    """A ``--data-path`` for a dataset that reads no folder (the synthetic one) is a usage error that
    suggests a dataset that does: the images there would otherwise be silently ignored."""
    if config["data_path"] is None:
        return
    spec = get_component("dataset", config["dataset"]).metadata.get("options")
    if not isinstance(spec, Mapping) or "root" in spec:
        return  # it reads the folder, or does not declare its options
    readers = [
        component.name
        for component in list_components("dataset")
        if isinstance(component.metadata.get("options"), Mapping) and "root" in component.metadata["options"]
    ]
    key = describe_key(BY_NAME["data_path"], config.sources["data_path"])
    message = f"{key} {config['data_path']}: dataset {config['dataset']!r} reads no folder"
    if readers:
        likely = "folder" if "folder" in readers else readers[0]
        message += (
            f". Did you mean --dataset {likely}?"
            + (" (your own photos in images/ and masks in masks/ there)" if likely == "folder" else "")
            + f" Datasets that read --data-path: {', '.join(readers)}"
        )
    raise UsageError(message)


def check_tile_fits_crops(config: ResolvedConfig) -> None:
    """``tile`` needs ``crop_size`` and at least its size: tiles run the network at native resolution,
    which a run without crops never trains at (it resizes every photo to ``image_size``), and a tile
    smaller than the crops gives the network less view than it trained with, in more tiles. (Tiling a
    resized run's predictions is still possible: ``segkit predict/evaluate --tile``.) Checked for new
    runs only: a resumed run keeps what it recorded."""
    tile, crop = config["tile"], config["crop_size"]
    if tile is None:
        return
    tile_key = describe_key(BY_NAME["tile"], config.sources["tile"])
    if crop is None:
        raise UsageError(
            f"{tile_key} {tile} needs --crop-size: tiles run at native resolution, and without crops this "
            f"run trains on photos resized to --image-size {config['image_size']} (add --crop-size N, or "
            "leave --tile out and give segkit predict/evaluate --tile)"
        )
    if tile < crop:
        crop_key = describe_key(BY_NAME["crop_size"], config.sources["crop_size"])
        raise UsageError(
            f"{tile_key} {tile} is smaller than {crop_key} {crop}: a tile must show the network at least "
            "the view it trains on (leave --tile out for twice the crop size)"
        )


def resolve_resumed_config(run_dir: Path, flags: Mapping[str, Any]) -> ResolvedConfig:
    """A resumed run's settings: those its ``config.json`` recorded (defaults for any it predates),
    then the flags. Only the settings in ``RESUME_OVERRIDES`` may change; a flag that would change
    another one is a usage error naming it (one repeating the recorded value is accepted)."""

    record = read_run_config(run_dir)
    recorded = record.get("config") if isinstance(record, dict) else None
    if not isinstance(recorded, dict):
        raise UsageError(f"{run_dir} is not a segkit run folder: its config.json records no settings")
    layers: list[tuple[Mapping[str, Any], str]] = [(DEFAULTS, DEFAULT_SOURCE), (recorded, f"run {run_dir}")]
    given = {key: value for key, value in flags.items() if value is not None}
    fixed = {key: value for key, value in given.items() if key not in RESUME_OVERRIDES}
    if fixed:
        changed = _changed_by(_resolve(layers), fixed)
        if changed:
            may = [BY_NAME[name].flag or name for name in RESUME_OVERRIDES]
            raise UsageError(
                f"--resume continues {run_dir} with the settings it recorded; "
                f"{', '.join(changed)} cannot change when resuming (only {', '.join(may)} may). "
                f"To train with other settings, start a new run from this one's: "
                f"segkit run --config {Path(run_dir) / 'config.json'} with those flags"
            )
    overrides = {key: value for key, value in given.items() if key in RESUME_OVERRIDES}
    config = _resolve([*layers, (overrides, "flag")])
    config.fold = read_fold_record(run_dir)
    return config


def _changed_by(recorded: ResolvedConfig, flags: Mapping[str, Any]) -> list[str]:
    """The flags (as typed: ``--lr``) among ``flags`` whose value differs from the recorded one."""
    changed = []
    for key, value in flags.items():
        trial = ResolvedConfig(dict(recorded.values), dict(recorded.sources))
        trial.apply({key: value}, "flag")
        if check_value(key, trial.values[key], "flag") != recorded.values[key]:
            changed.append(BY_NAME[key].flag or key)
    return changed


def _resolve(layers: Sequence[tuple[Mapping[str, Any], str]]) -> ResolvedConfig:
    config = ResolvedConfig()
    for layer, source in layers:
        config.apply(layer, source)
    validate(config)
    check_component_names(config)
    check_component_options(config)
    return config


def check_component_names(config: ResolvedConfig) -> None:
    """Fail fast, before any data is read, on a misspelled model, loss, dataset or callback, and on
    callback options for a callback that will not run."""
    for kind in ("model", "loss", "dataset"):
        get_component(kind, config[kind])
    added, disabled = config["callbacks"] or [], config["disable_callbacks"] or []
    for name in [*added, *disabled]:
        get_component("callback", name)
    both = sorted(set(added) & set(disabled))
    if both:
        raise UsageError(f"--callback {both[0]} and --no-callback {both[0]} contradict each other")
    enabled = enabled_callbacks(config.values)
    not_enabled = sorted(set(config["callback_options"]) - set(enabled))
    if not_enabled:
        raise UsageError(
            f"--callback-option given for callbacks that will not run: {', '.join(not_enabled)} "
            f"(add one with --callback {not_enabled[0]})"
        )


def enabled_callbacks(values: Mapping[str, Any]) -> list[str]:
    """The callbacks a run uses: those registered as defaults (csv, excel), then those ``callbacks``
    adds, less those ``disable_callbacks`` leaves out."""
    defaults = [c.name for c in list_components("callback") if c.metadata.get("default")]
    disabled = set(values.get("disable_callbacks") or [])
    names = dict.fromkeys([*defaults, *(values.get("callbacks") or [])])
    return [name for name in names if name not in disabled]


# -- writing settings back ----------------------------------------------------------------------------


def to_toml(config: ResolvedConfig) -> str:
    """The settings as a TOML config file that ``segkit run --config`` reads back to the same values,
    each line's comment saying where the value came from; unset settings are comments."""
    lines = [
        "# segkit run settings, resolved. Train with them: segkit run --config THIS_FILE",
        "# Keys are the settings' names (as config.json records them); see segkit run --help.",
    ]
    tables = []
    for setting in SETTINGS:
        value, source = config.values.get(setting.name), config.sources.get(setting.name, "")
        if isinstance(value, dict):
            tables.append((setting.name, value, source))
        elif value is None:
            lines.append(f"# {setting.name} = (not set)  # {source}")
        else:
            lines.append(f"{setting.name} = {_toml_value(value)}  # {source}")
    for name, table, source in tables:
        if name == "callback_options":
            for callback, options in table.items():
                lines += ["", f"[{name}.{_toml_key(callback)}]  # {source}"]
                lines += [f"{_toml_key(key)} = {_toml_value(v)}" for key, v in options.items()]
        elif table:
            lines += ["", f"[{name}]  # {source}"]
            lines += [f"{_toml_key(key)} = {_toml_value(v)}" for key, v in table.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: Any) -> str:
    key = str(key)
    bare = key and all(char.isascii() and (char.isalnum() or char in "-_") for char in key)
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '"none"'  # an option's None: TOML has no null, and option parsers read "none" as None
    return json.dumps(str(value))
