"""Optimizers and learning-rate schedules.

Schedules are functions of *progress* in [0, 1]: the fraction of planned steps done, or, under
``--time-budget``, the fraction of the budget spent, whichever is larger. So a schedule planned
against a budget anneals on time even when the planned number of epochs is never reached.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from segkit.errors import UsageError


def build_optimizer(name: str, parameters: Iterable, learning_rate: float, weight_decay: float):
    if name == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=learning_rate, momentum=0.9, weight_decay=weight_decay, nesterov=True
        )
    raise UsageError(f"--optimizer must be adam, adamw or sgd, got {name!r}")


def learning_rate_factor(schedule: str, progress: float, warmup_fraction: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 = start, 1 = end of the run)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        warmup_fraction = warmup_fraction or 0.3
    if warmup_fraction > 0 and progress < warmup_fraction:
        return max(progress / warmup_fraction, 0.01)
    if schedule == "none":
        return 1.0
    if schedule in ("cosine", "onecycle"):
        remaining = (progress - warmup_fraction) / max(1.0 - warmup_fraction, 1e-9)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * remaining))
    raise UsageError(f"--scheduler must be none, cosine or onecycle, got {schedule!r}")


def train_image_size(sizes: list[int], final_size: int, progress: float) -> int:
    """Progressive resizing: the training image size at ``progress``. ``sizes`` splits the run into
    equal stages of progress (of steps, or of the time budget), one per size; with no sizes every
    epoch trains at ``final_size``, the size validation and inference always use."""
    if not sizes:
        return final_size
    stage = min(int(min(max(progress, 0.0), 1.0) * len(sizes)), len(sizes) - 1)
    return int(sizes[stage])


def set_learning_rate(optimizer: torch.optim.Optimizer, base_rate: float, factor: float) -> float:
    rate = base_rate * factor
    for group in optimizer.param_groups:
        group["lr"] = rate
    return rate
