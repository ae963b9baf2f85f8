"""Checks of a run's settings that need no data and no training, shared by ``segkit run``, its
``--print-config``, ``segkit plan`` and a resumed run.

- ``check_component_options``: the augmentation's name and the options given to the model, loss,
  dataset and callbacks, against what each component declared (``register(..., options=SPEC)``),
  in the words its factory would use (``segkit.config.component_options``), before any data is read;
- ``fit_image_size_to_crops``: with ``--crop-size`` the network input is the crop, so the image size
  (what predict ``--no-tile`` resizes to and export traces at) is the crop size;
- ``check_resumable``: a resumed run with nothing left to train says what to give instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.components import get_component
from segkit.config.component_options import Option, parse_component_options, unknown_options_message
from segkit.config.settings import BY_NAME, describe_key
from segkit.errors import UsageError

if TYPE_CHECKING:
    from segkit.config.resolve import ResolvedConfig

#: Model options segkit passes itself, from the data and the task.
SET_BY_SEGKIT = {"in_channels": "the data's channels", "out_channels": "the task's classes"}


def check_component_options(config: ResolvedConfig) -> None:
    """The augmentation is registered, and every option given to the model, loss, dataset and the
    callbacks that run is one its component declares, with a value it accepts; a ``UsageError``
    otherwise (components that declare no options are left to their factories)."""
    if config["augment"] != "none":  # the plain resize and normalisation, registered or not
        get_component("augmentation", config["augment"])
    for key in SET_BY_SEGKIT.keys() & config["model_options"].keys():
        raise UsageError(f"--model-option {key}: segkit sets it from {SET_BY_SEGKIT[key]}; leave it out")
    _check_declared("model", config["model"], config["model_options"])
    _check_declared("loss", config["loss"], config["loss_options"])
    _check_declared("dataset", config["dataset"], config["dataset_options"])
    for name, options in config["callback_options"].items():
        _check_declared("callback", name, options)


def _check_declared(kind: str, name: str, given: Mapping[str, Any]) -> None:
    spec = get_component(kind, name).metadata.get("options")
    if not given or not isinstance(spec, Mapping):
        return
    unknown = sorted(set(given) - set(spec), key=str)
    if unknown:
        raise UsageError(unknown_options_message(kind, name, unknown, spec))
    declared = {key: spec[key] for key in given if isinstance(spec[key], Option)}
    parse_component_options(kind, name, {key: given[key] for key in declared}, declared)


def fit_image_size_to_crops(config: ResolvedConfig, layers: Sequence[str]) -> None:
    """With crops, the image size is the crop size. An image size from a layer below the crop
    size's (the defaults, the dataset's, a recipe's under ``--crop-size``) follows it, its source
    saying so; one from the same layer or above that differs is a usage error naming both.

    ``layers`` are the sources of the layers, lowest first. New runs only: a resumed run keeps what
    it recorded."""
    crop, size = config["crop_size"], config["image_size"]
    if crop is None or size == crop:
        return
    size_source, crop_source = config.sources["image_size"], config.sources["crop_size"]
    crop_key = describe_key(BY_NAME["crop_size"], crop_source)
    if _rank(layers, size_source) < _rank(layers, crop_source):
        config.values["image_size"] = crop
        config.sources["image_size"] = f"the crop size ({crop_key})"
        return
    size_key = describe_key(BY_NAME["image_size"], size_source)
    raise UsageError(
        f"{size_key} {size} and {crop_key} {crop} disagree: with crops "
        f"the network input is the crop (training takes {crop}x{crop} crops at native resolution and "
        "validates through tiles), and the image size is what predict --no-tile resizes to. Leave "
        "--image-size out, or give it the crop size; to train at a lower resolution, use --scale"
    )


def _rank(layers: Sequence[str], source: str) -> int:
    """Where a source's layer lies (one not among them counts as the top)."""
    return layers.index(source) if source in layers else len(layers)


def check_resumable(run_dir: Path, trained_epochs: int, elapsed_s: float, values: Mapping[str, Any]) -> None:
    """A resumed run with nothing left to train (``trained_epochs`` reach ``epochs``, or ``elapsed_s``
    its ``time_budget``) is a usage error saying how many epochs it trained or how long it ran, what
    ``--epochs`` or ``--time-budget`` must exceed, and a command that trains (both at once when
    both are spent: following the advice is never refused again)."""
    epochs, budget = values["epochs"], values["time_budget"]
    reasons, advice, command = [], [], []
    if trained_epochs >= epochs:
        if trained_epochs == epochs:
            reasons.append(f"{run_dir} has finished: it trained all {epochs} of its epochs")
        else:
            reasons.append(
                f"{run_dir} trained {_epochs(trained_epochs)}, more than --epochs {epochs} (--epochs counts "
                "every epoch, the trained ones included)"
            )
        advice.append(f"--epochs above {trained_epochs}")
        command.append(f"--epochs {2 * trained_epochs}")
    if budget is not None and elapsed_s >= budget:
        spent = f"{elapsed_s:.0f} s"
        if reasons:
            reasons.append(f"and ran {spent}, its --time-budget being {budget:g} s")
        else:
            reasons.append(
                f"{run_dir} has run {spent} ({_epochs(trained_epochs)} of {epochs}), "
                f"its --time-budget being {budget:g} s"
            )
        advice.append(f"--time-budget above {spent}")
        command.append(f"--time-budget {math.ceil(2 * elapsed_s / 60)}m")
    if reasons:
        raise UsageError(
            f"{' '.join(reasons)}. To train it further, give {' and '.join(advice)}: "
            f"segkit run --resume {run_dir} {' '.join(command)}"
        )


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"
