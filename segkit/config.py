"""Resolution of a run's settings from layers, each value remembering where it came from.

Precedence, lowest first: the seed report's defaults; the dataset's own defaults; the recipe
(``--recipe``); the config file (``--config run.toml``); command-line flags.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The seed report's settings (train.py): 256x256, Adam 1e-3, batch 32, 200 epochs.
REPORT_DEFAULTS: dict[str, Any] = {
    "model": "unet",
    "loss": "bce_dice",
    "dataset": "synthetic",
    "data_path": None,
    "epochs": 200,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "scheduler": "none",
    "warmup_fraction": 0.0,
    "image_size": 256,
    "augment": "default",
    "progressive_sizes": [],
    "ema_decay": 0.0,
    "calibrate_threshold": False,
    "tta": False,
    "fill_holes": False,
    "keep_largest": False,
    "device": "auto",
    "amp": "auto",
    "channels_last": "auto",
    "seed": 0,
    "workers": "auto",
    "time_budget": None,
    "threshold": 0.5,
    "out": "runs",
    "model_options": {},
    "loss_options": {},
    "dataset_options": {},
    "callbacks": None,
    "callback_options": {},
    "on_nan": "stop",
    "quiet": False,
}

OPTION_TABLES = ("model_options", "loss_options", "dataset_options", "callback_options")
CHOICES = {
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("none", "cosine", "onecycle"),
    "amp": ("auto", "off", "bf16", "fp16"),
    "on_nan": ("stop", "skip"),
}


@dataclass
class ResolvedConfig:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def apply(self, layer: dict[str, Any], source: str) -> None:
        for key, value in layer.items():
            if key not in REPORT_DEFAULTS:
                raise UsageError(
                    f"unknown setting {key!r} from {source}; "
                    f"known settings: {', '.join(sorted(REPORT_DEFAULTS))}"
                )
            if key in OPTION_TABLES:
                if not isinstance(value, dict):
                    raise UsageError(f"{key} from {source} must be a table of KEY = VALUE")
                merged = dict(self.values.get(key) or {})
                merged.update(value)
                self.values[key] = merged
            else:
                self.values[key] = value
            self.sources[key] = source

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for printing."""
        return [(key, _format(self.values[key]), self.sources.get(key, "")) for key in REPORT_DEFAULTS]


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


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


def validate(config: ResolvedConfig) -> None:
    values = config.values
    for key, choices in CHOICES.items():
        if values[key] not in choices:
            raise UsageError(
                f"--{key.replace('_', '-')} must be one of {', '.join(choices)}, got {values[key]!r}"
            )
    for key in ("epochs", "batch_size", "image_size"):
        value = values[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")
    if not isinstance(values["learning_rate"], (int, float)) or not values["learning_rate"] > 0:
        raise UsageError(f"--learning-rate must be a positive number, got {values['learning_rate']!r}")
    threshold = values["threshold"]
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise UsageError(f"--threshold must lie strictly between 0 and 1, got {threshold!r}")
    workers = values["workers"]
    if workers != "auto" and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise UsageError(f"--workers must be 'auto' or a non-negative integer, got {workers!r}")
    _check_types(values)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_types(values: dict[str, Any]) -> None:
    """Settings that only a config file can get wrong (flags are typed by click)."""

    def fail(key: str, expected: str) -> None:
        raise UsageError(f"{key} (--{key.replace('_', '-')}) must be {expected}, got {values[key]!r}")

    for key in ("model", "loss", "dataset", "augment", "device"):
        if not isinstance(values[key], str) or not values[key]:
            fail(key, "a name")
    if not isinstance(values["seed"], int) or isinstance(values["seed"], bool):
        fail("seed", "an integer")
    if not _number(values["weight_decay"]) or values["weight_decay"] < 0:
        fail("weight_decay", "a number >= 0")
    if not _number(values["warmup_fraction"]) or not 0 <= values["warmup_fraction"] < 1:
        fail("warmup_fraction", "a number in [0, 1)")
    budget = values["time_budget"]
    if budget is not None and (not _number(budget) or budget <= 0):
        fail("time_budget", "a duration such as 90s, 15m or 1.5h")
    if not isinstance(values["out"], (str, Path)) or not str(values["out"]):
        fail("out", "a folder path")
    if values["data_path"] is not None and not isinstance(values["data_path"], (str, Path)):
        fail("data_path", "a folder path")
    for key in ("quiet", "calibrate_threshold", "tta", "fill_holes", "keep_largest"):
        if not isinstance(values[key], bool):
            fail(key, "true or false")
    sizes = values["progressive_sizes"]
    if not isinstance(sizes, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes
    ):
        fail("progressive_sizes", "a list of positive image sizes, e.g. [96, 128, 160]")
    if not _number(values["ema_decay"]) or not 0 <= values["ema_decay"] < 1:
        fail("ema_decay", "a number in [0, 1) (0: no weight average)")
    if values["channels_last"] not in ("auto", True, False):
        fail("channels_last", "auto, true or false")
    callbacks = values["callbacks"]
    if callbacks is not None and (
        not isinstance(callbacks, list) or not all(isinstance(name, str) for name in callbacks)
    ):
        fail("callbacks", "a list of callback names")
    for name, options in values["callback_options"].items():
        if not isinstance(options, dict):
            raise UsageError(f"callback_options.{name} must be a table of KEY = VALUE, got {options!r}")


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
