"""Validation at the end of each epoch, on the inference fast path, pooled across processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from segkit.engine import distributed
from segkit.engine.loop import evaluate_loader
from segkit.execution.fast_path import prepare_for_inference, resolve_channels_last
from segkit.inference.tiling import Tiles
from segkit.metrics.calibration import ThresholdSweep
from segkit.task import Task


def validation_tiles(values: dict[str, Any]) -> Tiles | None:
    """Training on crops validates whole photos at native resolution through tiles (``--tile``,
    else twice the crop size); otherwise validation resizes, as it always has."""
    if values.get("crop_size") is None:
        return None
    return Tiles(values["tile"] or 2 * values["crop_size"], values["overlap"], values["blend"])


@dataclass
class Validation:
    loss: float
    scores: dict[str, float]
    #: ``(threshold, dice)`` of the threshold sweep, when the recipe calibrates the threshold.
    calibrated: tuple[float, float] | None = None


def validate(
    model: torch.nn.Module,
    loader: Any,
    loss_fn: Any,
    task: Task,
    values: dict[str, Any],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    group: distributed.ProcessGroup,
) -> Validation:
    """Score ``model`` on the valid loader at network resolution (with TTA if the run asks for it).

    Runs on a fresh inference copy of the weights (BatchNorm folded, channels_last on the CPU), whose
    results equal the plain path's within float error. Under torchrun each process scores its shard
    and the counts, losses and image numbers of every process are pooled."""
    sweep = ThresholdSweep() if values["calibrate_threshold"] and task.kind == "binary" else None
    valid_model = prepare_for_inference(model, device, channels_last=values["channels_last"], threads=0)
    loss, accumulator = evaluate_loader(
        valid_model,
        loader,
        loss_fn,
        task,
        device=device,
        amp_dtype=amp_dtype,
        channels_last=resolve_channels_last(values["channels_last"], device, training=False),
        tta=values["tta"],
        sweep=sweep,
        tiles=validation_tiles(values),
    )
    if group.enabled:
        loss_total, count = distributed.sum_across(group, loss * len(accumulator), len(accumulator))
        loss = loss_total / max(count, 1)
        accumulator.all_reduce()
        if sweep is not None:
            sweep.all_reduce()
    calibrated = sweep.best(values["threshold"]) if sweep is not None else None
    return Validation(loss, accumulator.compute(), calibrated)
