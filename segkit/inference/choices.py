"""The inference choices of a trained model for one prediction or evaluation: the caller's choices
(flags of ``segkit predict``/``evaluate``, or keyword arguments of ``segkit.Run``) over the defaults
its checkpoint recorded (``TrainedModel.tta``, ``.postprocess``, ``.tiling``); None means "the run's"."""

from __future__ import annotations

from typing import Any


def resolve_tiling(
    trained: Any, tile: int | None, no_tile: bool, overlap: float | None, blend: str | None
) -> dict[str, Any] | None:
    """The tiling to use: the flags given over the checkpoint's; None to resize."""
    if no_tile:
        return None
    recorded = trained.tiling or {}
    if tile is None and not recorded:
        return None
    return {
        "tile": tile if tile is not None else recorded["tile"],
        "overlap": overlap if overlap is not None else recorded.get("overlap", 0.25),
        "blend": blend or recorded.get("blend", "gaussian"),
        "scale": recorded.get("scale", 1.0),
    }


def resolve_inference_choices(
    trained: Any, tta: bool | None, fill_holes: bool | None, keep_largest: bool | None
) -> tuple[bool, dict[str, bool]]:
    """``(tta, {"fill_holes": ..., "keep_largest": ...})``: the flags given, else the checkpoint's."""
    postprocess = {"fill_holes": False, "keep_largest": False, **trained.postprocess}
    for step, flag in (("fill_holes", fill_holes), ("keep_largest", keep_largest)):
        if flag is not None:
            postprocess[step] = flag
    return (trained.tta if tta is None else tta), postprocess
