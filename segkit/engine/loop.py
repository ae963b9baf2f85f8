"""One epoch of training, and evaluation of a loader: the inner loops, kept free of bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from segkit.calibration import ThresholdSweep
from segkit.engine.device import autocast
from segkit.errors import SegkitError
from segkit.inference import model_logits
from segkit.metrics import MetricAccumulator, batch_dice


class NonFiniteLossError(SegkitError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochStats:
    loss: float
    dice: float
    images: int
    steps: int
    skipped_steps: int
    stopped_early: bool


def move_batch(batch: dict, device: torch.device, channels_last: bool):
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = batch["mask"].to(device, non_blocking=True)
    ignore = batch.get("ignore")
    if ignore is not None:
        ignore = ignore.to(device, non_blocking=True)
    return images, masks, ignore


def compute_loss(loss_fn, logits, masks, ignore):
    logits = logits.float()
    return loss_fn(logits, masks) if ignore is None else loss_fn(logits, masks, ignore=ignore)


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    *,
    device: torch.device,
    amp_dtype,
    scaler,
    channels_last: bool,
    threshold: float,
    on_nan: str,
    before_step: Callable[[], bool],
    progress_label: str,
    quiet: bool,
    after_step: Callable[[], None] | None = None,
) -> EpochStats:
    """Train for one pass over ``loader``. ``before_step()`` returns False to stop early (time budget);
    ``after_step()`` runs after each optimizer step (e.g. to update a weight average)."""
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64)
    dice_sum = 0.0
    images_seen = steps = skipped = 0
    stopped_early = False
    bar = tqdm(loader, desc=progress_label, leave=False, disable=quiet, unit="batch", dynamic_ncols=True)
    for batch in bar:
        if not before_step():
            stopped_early = True
            break
        images, masks, ignore = move_batch(batch, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            logits = model(images)
            loss = compute_loss(loss_fn, logits, masks, ignore)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            if on_nan == "skip":
                skipped += 1
                continue
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at step {steps + 1} of this epoch; "
                "stopping with the last good checkpoint intact (lower --learning-rate, or pass "
                "--on-nan skip to skip such steps)"
            )
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if after_step is not None:
            after_step()
        batch_size = images.shape[0]
        loss_sum += loss_value * batch_size
        dice_value = batch_dice(logits.detach().float(), masks, threshold=threshold)
        dice_sum += dice_value * batch_size
        images_seen += batch_size
        steps += 1
        if not quiet:
            bar.set_postfix(loss=f"{loss_value:.4f}", dice=f"{dice_value:.3f}", refresh=False)
    bar.close()
    if images_seen == 0:  # every step skipped (or none run): there is no loss or Dice to report, not 0
        return EpochStats(math.nan, math.nan, 0, steps, skipped, stopped_early)
    return EpochStats(
        float(loss_sum) / images_seen, dice_sum / images_seen, images_seen, steps, skipped, stopped_early
    )


@torch.no_grad()
def evaluate_loader(
    model,
    loader,
    loss_fn,
    *,
    device: torch.device,
    amp_dtype,
    channels_last: bool,
    threshold: float,
    progress_label: str = "valid",
    quiet: bool = True,
    tta: bool = False,
    sweep: ThresholdSweep | None = None,
) -> tuple[float, MetricAccumulator]:
    """Mean loss per image and the metric accumulator over ``loader``, at network resolution.

    ``tta`` averages each prediction with its horizontally flipped pass; ``sweep`` also scores the
    same predictions at each threshold of a ``ThresholdSweep``."""
    model.eval()
    accumulator = MetricAccumulator(threshold=threshold)
    loss_sum, images_seen = 0.0, 0
    for batch in tqdm(
        loader, desc=progress_label, leave=False, disable=quiet, unit="batch", dynamic_ncols=True
    ):
        images, masks, ignore = move_batch(batch, device, channels_last)
        with autocast(device, amp_dtype):
            logits = model_logits(model, images, tta)
        if loss_fn is not None:
            loss_sum += float(compute_loss(loss_fn, logits, masks, ignore)) * images.shape[0]
        accumulator.update(logits, masks, ignore=ignore, names=list(batch["name"]))
        if sweep is not None:
            sweep.update(logits, masks, ignore=ignore, names=list(batch["name"]))
        images_seen += images.shape[0]
    return loss_sum / max(images_seen, 1), accumulator
