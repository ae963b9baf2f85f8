"""torch.distributed for ``torchrun --nproc_per_node=N -m segkit run ...``.

Under torchrun (``WORLD_SIZE`` > 1) each process trains a DistributedDataParallel replica on its
shard of every batch; validation shards the split without padding and sums the metric counts across
processes; only rank 0 writes files or prints. Gloo on the CPU, NCCL on CUDA.

Every process must take the same path through the run: a process that goes on alone into a
collective the others never reach fails there ("Connection closed by peer") or waits forever. So
what decides the path is agreed: rank 0 alone runs the callbacks and writes the files, and
``on_main`` gives its outcome (a callback asking to stop, or an error) to every process; a
non-finite loss on any process is seen by all (``first_non_finite``); the time budget stops a step
when any process says so (``any_across``).

Every collective here works under both backends: NCCL only reduces CUDA tensors, gloo CPU ones, so
the tensors a collective sends are made on ``ProcessGroup.device`` (the process's own GPU under
NCCL, the CPU under gloo) and read back on the CPU. The object collectives (``broadcast`` here, the
metric accumulators' ``all_gather_object``) pickle onto ``torch.cuda.current_device()`` under NCCL,
which ``setup`` sets to the process's GPU before the group is created.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from segkit.errors import SegkitError

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Where the tensors of a collective must live: the process's GPU under NCCL, the CPU under gloo.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    """The torch.distributed backend for a run on ``device``: NCCL on CUDA, gloo elsewhere."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(device: torch.device) -> ProcessGroup:
    """Join the process group torchrun describes in the environment; a single process otherwise.

    On CUDA, each process takes GPU ``LOCAL_RANK`` (made the current device *before* the group is
    created, so NCCL and the object collectives use it) and the group's collectives run there."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    group_device = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        group_device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, group_device)


def teardown(group: ProcessGroup) -> None:
    """End the group at the run's normal end. Every process waits for the others first: a process that
    destroyed its group while a peer's last collective was still in flight was once seen to abort at
    exit ("terminate called without an active exception", gloo, CI)."""
    if group.enabled and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer already gone: nothing left to wait for
            pass
        dist.destroy_process_group()


def broadcast(group: ProcessGroup, value: Any) -> Any:
    """Rank 0's ``value`` on every process (e.g. the run folder it created)."""
    if not group.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_across(group: ProcessGroup, *numbers: float) -> list[float]:
    """The sum over every process of each of ``numbers`` (float64, on the group's device)."""
    if not group.enabled:
        return list(numbers)
    tensor = torch.tensor(numbers, dtype=torch.float64, device=group.device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def any_across(group: ProcessGroup, flag: bool) -> bool:
    """True on every process when any process says True (so all stop at the same step)."""
    if not group.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=group.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.cpu().item())


def shard_indices(length: int, group: ProcessGroup) -> list[int]:
    """This process's share of an evaluation split: every world_size-th index, no padding."""
    return list(range(group.rank, length, group.world_size))


class StoppedOnMain(SegkitError):
    """Raised on every other process when what rank 0 ran for all of them (``on_main``) failed; it
    carries rank 0's message and exit code, so every process stops saying the same."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: What gloo says, in the collective that fails, when another process of the group has gone away.
PEER_GONE_SIGNS = ("Connection closed by peer", "Connection reset by peer")


def peer_gone(group: ProcessGroup, error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process ended (was killed, crashed)."""
    return group.enabled and isinstance(error, RuntimeError) and any(s in str(error) for s in PEER_GONE_SIGNS)


def on_main(group: ProcessGroup, decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 alone (callbacks, files), its result returned on every process.

    When it raises, rank 0 re-raises the error and every other process raises ``StoppedOnMain``
    with its message, instead of going on alone into the next collective."""
    if not group.enabled:
        return decide()
    if not group.is_main:
        outcome = broadcast(group, None)
    else:
        try:
            outcome = ("value", decide())
        except Exception as error:
            if isinstance(error, SegkitError):
                message, code = str(error), error.exit_code
            else:  # a bug, whose traceback rank 0 shows: the others name it in one line
                first_line = (str(error).splitlines() or [""])[0]
                message, code = f"rank 0 failed with {type(error).__name__}: {first_line}", 1
            broadcast(group, ("error", message, code))
            raise
        broadcast(group, outcome)
    if outcome[0] == "error":
        raise StoppedOnMain(outcome[1], outcome[2])
    return outcome[1]


#: The non-finite values ``first_non_finite`` tells apart; a process sends 1 + the index, 0 if finite.
NON_FINITE = (math.nan, math.inf, -math.inf)


def _non_finite_code(value: float) -> int:
    if math.isfinite(value):
        return 0
    return 1 if math.isnan(value) else 2 if value > 0 else 3


def first_non_finite(group: ProcessGroup, value: float) -> tuple[float, int] | None:
    """``(value, rank)`` of the lowest rank whose ``value`` is NaN or infinite, the same on every
    process; None when every process's value is finite."""
    if not group.enabled:
        return None if math.isfinite(value) else (value, 0)
    codes = torch.zeros(group.world_size, dtype=torch.int64, device=group.device)
    codes[group.rank] = _non_finite_code(value)
    dist.all_reduce(codes)  # each process fills its own slot: the sum is every process's code
    for rank, code in enumerate(codes.cpu().tolist()):
        if code:
            return NON_FINITE[code - 1], rank
    return None
