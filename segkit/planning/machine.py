"""The machine, measured: how long a training step of a candidate takes on the device a run will use.

``time_steps(candidate, device, amp)`` builds the candidate's model (in the candidate's memory layout:
NCHW, or channels_last; under the run's autocast dtype, bf16 or fp16 on CUDA, as the run will train), runs
one untimed training step (forward, loss, backward, AdamW step; kernel selection, allocation) and then
``steps`` timed ones (one when the untimed step was slow) on random inputs of the candidate's size and
batch, and returns seconds per step. A planner asks for a handful of candidates before training; the
seconds it spends count in the run's budget, so timing stops at a deadline (``time_in_turn``) and the
planner uses what it has."""

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
    """A candidate's seconds per training step: the median of ``steps`` timed steps, or, with ``steps``
    0 (the planning time ran out), its untimed first step's (``first_s``)."""

    candidate: Candidate
    step_s: float
    first_s: float = 0.0
    steps: int = 1

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
    deadline: float | None = None,
) -> list[Timing]:
    """``time_steps`` of several candidates, their timed steps taken in turn (``time_in_turn``), so that
    a slow spell of a shared machine slows each alike and a comparison of them holds; no round of
    timed steps begins that would end past ``deadline`` (``time.monotonic()`` seconds)."""
    device = torch.device(device)
    trainers = [training_step(candidate, device, amp) for candidate in candidates]
    return time_in_turn(candidates, trainers, steps, deadline)


def time_in_turn(
    candidates: list[Candidate],
    trainers: list[Callable[[], float]],
    rounds: int,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    required: int | None = None,
) -> list[Timing]:
    """Time each candidate's training step (``trainers``: each takes one step and returns its seconds):
    one untimed step of each, then up to ``rounds`` rounds of one timed step of each; a candidate's
    timing is the median of its timed steps.

    Planning must cost seconds, not minutes: a slow first step (over ``SLOW_STEP_S``) leaves one round;
    past ``deadline`` (by ``clock``) no first step is taken beyond the ``required`` first candidates
    (default: all), whose timings alone are returned, and no round is begun that would end past it
    (estimated from the last round, or the first steps): a candidate then keeps its first step's
    seconds, an overestimate (allocation, kernel choice)."""
    required = len(candidates) if required is None else required

    def past(seconds: float) -> bool:
        return deadline is not None and clock() + seconds > deadline

    first: list[float] = []
    for index, step in enumerate(trainers):
        if index >= required and past(first[-1] if first else 0.0):
            break
        first.append(step())
    candidates, trainers = candidates[: len(first)], trainers[: len(first)]
    if max(first, default=0.0) > SLOW_STEP_S:
        rounds = 1
    seconds: list[list[float]] = [[] for _ in candidates]
    last_round = sum(first)
    for _ in range(rounds):
        if past(last_round):
            break
        for times, step in zip(seconds, trainers, strict=True):
            times.append(step())
        last_round = sum(times[-1] for times in seconds)
    return [
        Timing(candidate, sorted(times)[(len(times) - 1) // 2] if times else once, once, len(times))
        for candidate, times, once in zip(candidates, seconds, first, strict=True)
    ]


def training_step(candidate: Candidate, device: torch.device, amp: torch.dtype | None) -> Callable[[], float]:
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
