"""The machine, measured: how long a training step of a candidate takes on the device a run will use.

``time_steps(candidate, device, amp)`` builds the candidate's model (in the candidate's memory layout:
NCHW, or channels_last; under the run's autocast dtype, bf16 or fp16 on CUDA, as the run will train), runs
one untimed training step
(forward, loss, backward, AdamW step; kernel selection, allocation) and then ``steps`` timed ones
(one when the untimed step was slow) on random inputs of the candidate's size and batch, and
returns seconds per step. A planner asks for
a handful of candidates before training; the seconds it spends count in the run's budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from segkit.components import create_model
from segkit.data.decoded_cache import DecodedCache
from segkit.execution.device import autocast
from segkit.execution.fast_path import ChannelsLast, prepare_for_training, to_input_format

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
    #: The memory layout, as the ``channels_last`` setting takes it (auto: the run's default).
    channels_last: ChannelsLast = "auto"

    def describe(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in self.model_options)
        layout = {"True": ", channels_last", "False": ", NCHW"}.get(str(self.channels_last), "")
        model = f"{self.model} ({options})" if options else self.model
        return f"{model} at {self.size}px, batch {self.batch_size}{layout}"


@dataclass(frozen=True)
class Timing:
    candidate: Candidate
    step_s: float

    @property
    def images_per_second(self) -> float:
        return self.candidate.batch_size / self.step_s


def time_steps(
    candidate: Candidate, device: torch.device | str = "cpu", steps: int = 2, amp: torch.dtype | None = None
) -> Timing:
    """Seconds per training step of ``candidate`` on ``device`` under autocast to ``amp`` (None: fp32),
    the median of ``steps`` timed steps after one untimed."""
    return time_side_by_side([candidate], device, steps, amp)[0]


def time_side_by_side(
    candidates: list[Candidate],
    device: torch.device | str = "cpu",
    steps: int = 2,
    amp: torch.dtype | None = None,
) -> list[Timing]:
    """``time_steps`` of several candidates, their timed steps taken in turn (one of each, then the
    next round), so that a slow spell of a shared machine slows each alike and a comparison of
    them holds (the median of each one's ``steps``)."""
    device = torch.device(device)
    trainers = [_one_step(candidate, device, amp) for candidate in candidates]
    warm_ups = [step() for step in trainers]
    # A slow step is timed once: planning must cost seconds, not minutes.
    rounds = 1 if max(warm_ups) > SLOW_STEP_S else steps
    seconds: list[list[float]] = [[] for _ in candidates]
    for _ in range(rounds):
        for times, step in zip(seconds, trainers, strict=True):
            times.append(step())
    return [
        Timing(candidate, sorted(times)[(len(times) - 1) // 2])
        for candidate, times in zip(candidates, seconds, strict=True)
    ]


def _one_step(candidate: Candidate, device: torch.device, amp: torch.dtype | None) -> Callable[[], float]:
    """A function that takes one training step of ``candidate`` (forward and loss under autocast to
    ``amp``, backward, AdamW; fp16 through a gradient scaler, as the run's step) on random inputs and
    returns its seconds."""
    model = create_model(
        candidate.model,
        in_channels=candidate.in_channels,
        out_channels=candidate.out_channels,
        **dict(candidate.model_options),
    )
    prepare_for_training(model, device, channels_last=candidate.channels_last, threads=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    shape = (candidate.batch_size, candidate.in_channels, candidate.size, candidate.size)
    images = to_input_format(
        torch.randn(shape, generator=generator), device, candidate.channels_last, training=True
    )
    target = (torch.rand((shape[0], candidate.out_channels, *shape[2:]), generator=generator) > 0.5).float()
    target = target.to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    model.train()

    def step() -> float:
        _synchronize(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _synchronize(device)
        return time.perf_counter() - started

    return step


def time_items(dataset: Any, count: int = 8) -> float:
    """Seconds to make one training item of ``dataset`` (augment, resize, convert), over ``count``
    items spread through it, with their photos already decoded, as a run that loads its data in its
    own process keeps them (``segkit.data.decoded_cache.DecodedCache``, which a dataset without one is given);
    the decoding is not timed."""

    indices = sorted({round(i * (len(dataset) - 1) / max(1, count - 1)) for i in range(count)})
    if hasattr(dataset, "decoded_cache") and dataset.decoded_cache is None:
        dataset.decoded_cache = DecodedCache()  # kept: a few photos, in the planner's copy of the split
    for index in indices:
        dataset[index]
    started = time.perf_counter()
    for index in indices:
        dataset[index]
    return (time.perf_counter() - started) / len(indices)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
