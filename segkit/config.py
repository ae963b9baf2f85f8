"""Resolution of a run's settings from layers, each value remembering where it came from.

Precedence, lowest first: the seed report's defaults; the dataset's own defaults; the recipe
(``--recipe``); the config file (``--config run.toml``); command-line flags. A resumed run
(``--resume RUN``) starts from the settings its ``config.json`` recorded instead, and takes only the
flags in ``RESUME_OVERRIDES``. Which settings exist, their defaults and their checks are declared once,
in ``segkit.settings``.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import UsageError
from segkit.settings import (
    BY_NAME,
    DEFAULTS,
    OPTION_TABLES,
    RESUME_OVERRIDES,
    SETTINGS,
    check_value,
    format_value,
    parse_duration,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "REPORT_DEFAULTS",
    "OPTION_TABLES",
    "RESUME_OVERRIDES",
    "ResolvedConfig",
    "check_component_names",
    "dataset_defaults",
    "parse_duration",
    "read_config_file",
    "resolve_resumed_config",
    "resolve_run_config",
    "validate",
]

#: The seed report's settings (train.py): 256x256, Adam 1e-3, batch 32, 200 epochs.
REPORT_DEFAULTS: dict[str, Any] = DEFAULTS
DEFAULT_SOURCE = "seed report default"


@dataclass
class ResolvedConfig:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

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
    nearest = difflib.get_close_matches(str(key), list(BY_NAME), n=1, cutoff=0.6)
    if nearest:
        message += f" Did you mean {nearest[0]!r}?"
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
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise UsageError(f"config file {path} cannot be read: {error.strerror}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def dataset_defaults(metadata_defaults: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """A dataset's suggested settings, with ``model_options`` picked for the chosen model."""
    defaults = dict(metadata_defaults or {})
    per_model = defaults.pop("model_options", {}) or {}
    if model in per_model:
        defaults["model_options"] = dict(per_model[model])
    return defaults


def recipe_layer(name: str) -> dict[str, Any]:
    """The settings of the registered recipe ``name``."""
    import segkit

    settings = segkit.get_component("recipe", name).factory
    if not isinstance(settings, Mapping):
        raise UsageError(f"recipe {name!r} must be a table of settings, got {type(settings).__name__}")
    return dict(settings)


def resolve_run_config(
    flags: Mapping[str, Any], config_file: Path | None, recipe: str | None
) -> ResolvedConfig:
    """A new run's settings: defaults, the dataset's defaults, the recipe, the config file, the flags.

    ``flags`` holds values (``segkit.settings.flag_layer`` converts what click parsed); None means not
    given. The recipe may also be named by the config file's ``recipe`` key; ``--recipe`` wins.
    """
    import segkit

    file_layer = read_config_file(config_file) if config_file else {}
    file_source = f"config {config_file}"
    recipe = recipe or file_layer.pop("recipe", None)
    if recipe is not None and not isinstance(recipe, str):
        raise UsageError(f"recipe from {file_source} must be the name of a registered recipe, got {recipe!r}")
    flag_values = {key: value for key, value in flags.items() if value is not None}
    user_layers = [(file_layer, file_source), (flag_values, "flag")]
    # The dataset's defaults come below the recipe and the user's layers, but which dataset (and
    # which model's options) the user's layers decide: read those two first, checked.
    chosen = {}
    for key in ("model", "dataset"):
        value, source = next(
            ((layer[key], source) for layer, source in reversed(user_layers) if key in layer),
            (DEFAULTS[key], DEFAULT_SOURCE),
        )
        chosen[key] = check_value(key, value, source)
    dataset = segkit.get_component("dataset", chosen["dataset"])
    layers = [
        (DEFAULTS, DEFAULT_SOURCE),
        (
            dataset_defaults(dataset.metadata.get("defaults"), chosen["model"]),
            f"dataset {chosen['dataset']} default",
        ),
    ]
    if recipe:
        layers.append((recipe_layer(recipe), f"recipe {recipe}"))
    return _resolve(layers + user_layers)


def resolve_resumed_config(run_dir: Path, flags: Mapping[str, Any]) -> ResolvedConfig:
    """A resumed run's settings: those its ``config.json`` recorded (defaults for any it predates),
    then only the flags in ``RESUME_OVERRIDES``; other flags are ignored."""
    from segkit.engine.rundir import read_run_config

    record = read_run_config(run_dir)
    recorded = record.get("config") if isinstance(record, dict) else None
    if not isinstance(recorded, dict):
        raise UsageError(f"{run_dir} is not a segkit run folder: its config.json records no settings")
    overrides = {key: value for key, value in flags.items() if value is not None and key in RESUME_OVERRIDES}
    return _resolve([(DEFAULTS, DEFAULT_SOURCE), (recorded, f"run {run_dir}"), (overrides, "flag")])


def _resolve(layers: Sequence[tuple[Mapping[str, Any], str]]) -> ResolvedConfig:
    config = ResolvedConfig()
    for layer, source in layers:
        config.apply(layer, source)
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
