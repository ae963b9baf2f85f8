"""The inference options of ``predict`` and ``evaluate`` (and ``--device`` of every command that
loads a model): ``--tta``, ``--fill-holes``,
``--keep-largest``, and tiled inference (``--tile N`` / ``--no-tile``, ``--overlap``, ``--blend``).

Each defaults to what the run recorded in its checkpoint (``TrainedModel.tta``, ``.postprocess``,
``.tiling``); a flag given on the command line overrides it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from segkit.config.settings import BY_NAME
from segkit.inference.choices import resolve_inference_choices, resolve_tiling

__all__ = [
    "device_option",
    "inference_choice_options",
    "resolve_inference_choices",
    "resolve_tiling",
    "tiling_options",
]


def device_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--device`` as the settings table declares it for ``segkit run``: one help and default for
    every command that loads a model (evaluate, predict, report)."""
    device = BY_NAME["device"]
    return click.option(device.flag or "--device", default=device.default, help=device.help_text)


_OPTIONS = (
    click.option(
        "--tta/--no-tta",
        default=None,
        help="Flip test-time augmentation: average with a horizontally flipped pass. "
        "[default: as the run's recipe chose, usually off]",
    ),
    click.option(
        "--fill-holes/--no-fill-holes",
        default=None,
        help="Post-process each predicted mask: fill holes inside it. [default: as the run's recipe chose]",
    ),
    click.option(
        "--keep-largest/--no-keep-largest",
        default=None,
        help="Post-process each predicted mask: keep only the largest connected component. "
        "[default: as the run's recipe chose]",
    ),
)


_TILE_OPTIONS = (
    click.option(
        "--tile",
        type=click.IntRange(min=8),
        default=None,
        help="Tiled inference at native resolution with N x N tiles (no resize to the network size). "
        "[default: the run's, for runs trained with --crop-size; else off]",
    ),
    click.option("--no-tile", is_flag=True, help="Resize photos to the network size even if the run tiles."),
    click.option(
        "--overlap",
        type=click.FloatRange(0, 1, max_open=True),
        default=None,
        help="Share of a tile overlapping its neighbour. [default: the run's, else 0.25]",
    ),
    click.option(
        "--blend",
        type=click.Choice(["gaussian", "constant"]),
        default=None,
        help="Weights of overlapping tiles. [default: the run's, else gaussian]",
    ),
)


def tiling_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator adding ``--tile``, ``--no-tile``, ``--overlap`` and ``--blend``."""
    for option in reversed(_TILE_OPTIONS):
        command = option(command)
    return command


def inference_choice_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator adding the three options (parameters ``tta``, ``fill_holes``, ``keep_largest``)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
