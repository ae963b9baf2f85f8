"""torch.distributed for ``torchrun --nproc_per_node=N -m segkit run ...``.

Under torchrun (``WORLD_SIZE`` > 1) each process trains a DistributedDataParallel replica on its
shard of every batch; validation shards the split without padding and sums the metric counts across
processes; only rank 0 writes files or prints. Gloo on the CPU, NCCL on CUDA.

Every collective here works under both backends: NCCL only reduces CUDA tensors, gloo CPU ones, so
the tensors a collective sends are made on ``ProcessGroup.device`` (the process's own GPU under
NCCL, the CPU under gloo) and read back on the CPU. The object collectives (``broadcast`` here, the
metric accumulators' ``all_gather_object``) pickle onto ``torch.cuda.current_device()`` under NCCL,
which ``setup`` sets to the process's GPU before the group is created.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


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
    if group.enabled and dist.is_initialized():
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
