"""The machine, measured: how long a training step of a candidate takes on the device a run will use.

``time_steps(candidate, device)`` builds the candidate's model, runs one untimed training step
(forward, loss, backward, AdamW step; kernel selection, allocation) and then ``steps`` timed ones
(one when the untimed step was slow) on random inputs of the candidate's size and batch, and
returns seconds per step. A planner asks for
a handful of candidates before training; the seconds it spends count in the run's budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

import segkit
from segkit.speed import prepare_for_training

#: A warm-up step longer than this many seconds: the candidate is timed with one step, not several.
SLOW_STEP_S = 2.0


@dataclass(frozen=True)
class Candidate:
    """One way to train: a model (with options), an input side (image or crop) and a batch size."""

    model: str
    size: int
    batch_size: int
    model_options: tuple[tuple[str, Any], ...] = ()
    in_channels: int = 3
    out_channels: int = 1

    def describe(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.model_options)
        return f"{self.model}{f' ({options})' if options else ''} at {self.size}px, batch {self.batch_size}"


@dataclass(frozen=True)
class Timing:
    candidate: Candidate
    step_s: float

    @property
    def images_per_second(self) -> float:
        return self.candidate.batch_size / self.step_s


def time_steps(candidate: Candidate, device: torch.device | str = "cpu", steps: int = 2) -> Timing:
    """Seconds per training step of ``candidate`` on ``device`` (the median of ``steps`` timed steps
    after one untimed)."""
    device = torch.device(device)
    model = segkit.create_model(
        candidate.model,
        in_channels=candidate.in_channels,
        out_channels=candidate.out_channels,
        **dict(candidate.model_options),
    )
    prepare_for_training(model, device, threads=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    shape = (candidate.batch_size, candidate.in_channels, candidate.size, candidate.size)
    images = torch.randn(shape, generator=generator).to(device)
    target = (torch.rand((shape[0], candidate.out_channels, *shape[2:]), generator=generator) > 0.5).float()
    target = target.to(device)
    model.train()

    def step() -> float:
        _synchronize(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
        loss.backward()
        optimizer.step()
        _synchronize(device)
        return time.perf_counter() - started

    warm_up = step()
    # A slow step is timed once: planning must cost seconds, not minutes.
    seconds = sorted(step() for _ in range(1 if warm_up > SLOW_STEP_S else steps))
    return Timing(candidate, seconds[(len(seconds) - 1) // 2])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
