"""The ``--tta`` / ``--fill-holes`` / ``--keep-largest`` options of ``predict`` and ``evaluate``.

Each defaults to what the run's recipe recorded in its checkpoint (``TrainedModel.tta`` and
``.postprocess``); a flag given on the command line overrides it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

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


def inference_choice_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator adding the three options (parameters ``tta``, ``fill_holes``, ``keep_largest``)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def resolve_inference_choices(
    trained: Any, tta: bool | None, fill_holes: bool | None, keep_largest: bool | None
) -> tuple[bool, dict[str, bool]]:
    """``(tta, {"fill_holes": ..., "keep_largest": ...})``: the flags given, else the checkpoint's."""
    postprocess = {"fill_holes": False, "keep_largest": False, **trained.postprocess}
    for step, flag in (("fill_holes", fill_holes), ("keep_largest", keep_largest)):
        if flag is not None:
            postprocess[step] = flag
    return (trained.tta if tta is None else tta), postprocess
