"""The inner loops: one epoch of training steps, and the evaluation of a loader. No bookkeeping here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable

import torch

from segkit.engine.step import TrainingStep, compute_loss, move_batch
from segkit.execution.device import autocast
from segkit.inference.forward import model_logits
from segkit.inference.tiling import Tiles
from segkit.metrics.binary import MetricAccumulator
from segkit.metrics.calibration import ThresholdSweep
from segkit.metrics.classes import ClassMetricAccumulator
from segkit.progress import progress
from segkit.task import Task


@dataclass
class EpochStats:
    loss: float
    dice: float  # the task's batch score (Dice for a binary task), averaged per image
    images: int
    steps: int
    skipped_steps: int
    stopped_early: bool


def micro_batch_groups(loader: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """The loader's batches in groups of ``size`` (the last group may be shorter): one per step."""
    group: list[dict] = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def train_one_epoch(
    step: TrainingStep,
    loader: Iterable[dict],
    *,
    before_step: Callable[[], bool],
    accumulate_steps: int = 1,
    progress_label: str = "train",
    quiet: bool = False,
) -> EpochStats:
    """One pass over ``loader``, one optimizer step per ``accumulate_steps`` batches.
    ``before_step()`` returns False to stop early (the time budget)."""
    step.model.train()
    loss_sum = dice_sum = 0.0
    images_seen = steps = skipped = 0
    stopped_early = False
    # segkit.progress's rule: on a terminal or in a notebook; `segkit run ... 2> train.log` logs no bar.
    bar = progress(loader, quiet=quiet, desc=progress_label, leave=False, unit="batch", dynamic_ncols=True)
    for micro_batches in micro_batch_groups(bar, accumulate_steps):
        if not before_step():
            stopped_early = True
            break
        result = step(micro_batches, step_in_epoch=steps + 1)
        if result.skipped:
            skipped += 1
            continue
        loss_sum += result.loss_sum
        dice_sum += result.score_sum
        images_seen += result.images
        steps += 1
        if not quiet:
            bar.set_postfix(loss=f"{result.loss:.4f}", dice=f"{result.score:.3f}", refresh=False)
    bar.close()
    if images_seen == 0:  # every step skipped (or none run): there is no loss or Dice to report, not 0
        return EpochStats(math.nan, math.nan, 0, steps, skipped, stopped_early)
    return EpochStats(
        loss_sum / images_seen, dice_sum / images_seen, images_seen, steps, skipped, stopped_early
    )


@torch.no_grad()
def evaluate_loader(
    model,
    loader,
    loss_fn,
    task: Task,
    *,
    device: torch.device,
    amp_dtype,
    channels_last: bool,
    progress_label: str = "valid",
    quiet: bool = True,
    tta: bool = False,
    sweep: ThresholdSweep | None = None,
    tiles: Tiles | None = None,
) -> tuple[float, MetricAccumulator | ClassMetricAccumulator]:
    """Mean loss per image and the task's metric accumulator over ``loader``, at network resolution.

    ``tta`` averages each prediction with its horizontally flipped pass; ``sweep`` also scores the
    same predictions at each threshold of a ``ThresholdSweep``; ``tiles`` runs the model through
    overlapping tiles of each (native-resolution) image instead of on the whole batch at once."""
    model.eval()
    accumulator = task.new_accumulator()
    loss_sum, images_seen = 0.0, 0
    for batch in progress(
        loader, quiet=quiet, desc=progress_label, leave=False, unit="batch", dynamic_ncols=True
    ):
        images, masks, ignore = move_batch(batch, device, channels_last, training=False)
        with autocast(device, amp_dtype):
            logits = (
                tiles.logits(model, images, tta) if tiles is not None else model_logits(model, images, tta)
            )
        if loss_fn is not None:
            loss_sum += float(compute_loss(loss_fn, task, logits, masks, ignore)) * images.shape[0]
        names: Any = list(batch["name"])
        accumulator.update(logits, masks, ignore=ignore, names=names)
        if sweep is not None:
            sweep.update(logits, masks, ignore=ignore, names=names)
        images_seen += images.shape[0]
    return loss_sum / max(images_seen, 1), accumulator
