"""segkit.engine.distributed and the collectives of the metric accumulators, under gloo and NCCL.

- ``validate()`` in a real gloo group of 2 and 3 forked processes: every process ends with the
  figures one process gets on the whole split (fast).
- The NaN policy and rank 0's decisions (``first_non_finite``, ``on_main``) against fake groups.
- ``torchrun --nproc_per_node=2|3 -m segkit run`` (slow; through ``RUNNER``, which logs every file
  written and injects faults on one rank): a run and its ``--resume`` whose pooled validation equals
  one process's ``segkit evaluate``, with every file written once, by rank 0; early stopping decided
  on rank 0 and obeyed by all; a NaN on one rank skipped or stopped on every rank; a rank killed
  mid-run ending the others with one line. A hang fails the test (``TORCHRUN_TIMEOUT``).
- Against a fake process group that, like NCCL, refuses tensors that are not on its device: NCCL
  only reduces CUDA tensors, so a collective that builds CPU tensors would stop a multi-GPU run at
  its first step. A single GPU cannot host two NCCL ranks, so the fake stands in for the second
  rank. Its device is the CPU (gloo), a GPU where there is one, and on every machine torch's
  ``lazy`` device: a device that is not the CPU but computes on it, which every CPU build of torch
  has, so the check runs on machines without a GPU too.
- A one-rank NCCL group on a real GPU (``gpu``-marked).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from fixtures import only_run_dir, tiny_run
from hypothesis import given
from hypothesis import strategies as st

import segkit
from segkit.checkpoint_files import load_checkpoint
from segkit.engine import distributed
from segkit.engine.distributed import ProcessGroup, any_across, broadcast, sum_across
from segkit.errors import SegkitError, UsageError
from segkit.metrics.binary import MetricAccumulator
from segkit.metrics.calibration import ThresholdSweep
from segkit.metrics.classes import ClassMetricAccumulator, multiclass_counts

# -- a fake process group: rank 0 of two, the other rank's contributions given -----------------------


class RefusesOtherDevices:
    """The ``torch.distributed`` functions segkit calls, for rank 0 of a group of two whose other rank
    contributes ``peer_numbers`` (to each ``all_reduce``, in order) and ``peer_objects`` (to each
    object collective). Like NCCL, it raises for a tensor that is not on ``device``."""

    ReduceOp = dist.ReduceOp

    def __init__(self, device: torch.device, peer_numbers=(), peer_objects=()) -> None:
        self.device = device
        self.peer_numbers = list(peer_numbers)
        self.peer_objects = list(peer_objects)
        self.calls: list[str] = []

    def _check(self, tensor: torch.Tensor) -> None:
        same = tensor.device.type == self.device.type and (
            self.device.index is None or tensor.device.index == self.device.index
        )
        if not same:
            raise RuntimeError(f"this group's tensors must be on {self.device}, got one on {tensor.device}")

    def all_reduce(self, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        self._check(tensor)
        self.calls.append("all_reduce")
        peer = torch.tensor(self.peer_numbers.pop(0), dtype=tensor.dtype).to(tensor.device)
        if op == dist.ReduceOp.SUM:
            tensor.add_(peer)
        elif op == dist.ReduceOp.MAX:
            tensor.copy_(torch.maximum(tensor, peer))
        else:  # pragma: no cover - segkit uses only these two
            raise NotImplementedError(op)

    def all_gather(self, *args, **kwargs):
        raise AssertionError("segkit gathers tensors with all_gather_object only")

    def broadcast(self, *args, **kwargs):
        raise AssertionError("segkit broadcasts with broadcast_object_list only")

    def all_gather_object(self, gathered, obj, group=None):
        self.calls.append("all_gather_object")
        gathered[:] = [obj, self.peer_objects.pop(0)]

    def broadcast_object_list(self, objects, src=0, group=None, device=None):
        self.calls.append("broadcast_object_list")  # rank 0 is the source: its objects stay

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def is_initialized() -> bool:
        return True

    @staticmethod
    def get_world_size(group=None) -> int:
        return 2

    @staticmethod
    def get_rank(group=None) -> int:
        return 0


@functools.cache  # the backend can be started once per process
def lazy_device() -> torch.device:
    """torch's lazy device (TorchScript backend): not the CPU, but computed on it."""
    try:
        import torch._lazy.ts_backend

        torch._lazy.ts_backend.init()
        torch.zeros(1, device="lazy").cpu()
    except Exception as error:  # noqa: BLE001 - whatever stops it, the test cannot run
        pytest.fail(f"torch's lazy device is unavailable ({type(error).__name__}: {error})")
    return torch.device("lazy", 0)


@pytest.fixture(
    params=[
        "cpu",
        "lazy",
        pytest.param("cuda", marks=pytest.mark.gpu),
    ]
)
def group_device(request) -> torch.device:
    """The device of the fake group: the CPU (gloo), the lazy stand-in, a GPU (NCCL; gpu-marked)."""
    if request.param == "lazy":
        return lazy_device()
    return torch.device(request.param, 0) if request.param == "cuda" else torch.device("cpu")


def test_the_fake_group_refuses_a_tensor_on_another_device():
    fake = RefusesOtherDevices(lazy_device(), peer_numbers=[[1.0]])
    with pytest.raises(RuntimeError, match="must be on lazy"):
        fake.all_reduce(torch.zeros(1))


def test_sum_and_any_send_their_tensors_on_the_groups_device(group_device, monkeypatch):
    fake = RefusesOtherDevices(group_device, peer_numbers=[[2.5, 7.0, 3.0], [0], [1], [0]])
    monkeypatch.setattr(distributed, "dist", fake)
    group = ProcessGroup(rank=0, world_size=2, device=group_device)
    assert sum_across(group, 1.5, 1.0, 4.0) == [4.0, 8.0, 7.0]
    assert any_across(group, False) is False
    assert any_across(group, False) is True  # the other rank said True
    assert any_across(group, True) is True
    assert broadcast(group, "runs/a") == "runs/a"
    assert fake.calls == ["all_reduce"] * 4 + ["broadcast_object_list"]


def test_a_single_process_calls_no_collective(monkeypatch):
    monkeypatch.setattr(distributed, "dist", None)  # any use would fail
    group = ProcessGroup()
    assert sum_across(group, 1.0, 2.0) == [1.0, 2.0]
    assert any_across(group, True) is True
    assert broadcast(group, 3) == 3


def test_training_and_validation_pool_through_the_groups_device(group_device, monkeypatch):
    """The engine's own calls: the train statistics of an epoch and the validation loss."""
    from segkit.engine.loop import EpochStats
    from segkit.engine.trainer import Trainer

    fake = RefusesOtherDevices(group_device, peer_numbers=[[3.0, 1.5, 2.0]])
    monkeypatch.setattr(distributed, "dist", fake)
    trainer = Trainer.__new__(Trainer)  # only the group is needed
    trainer.group = ProcessGroup(0, 2, 0, group_device)
    stats = EpochStats(loss=0.5, dice=0.25, images=2, steps=1, skipped_steps=0, stopped_early=False)
    trainer._pool_train_stats(stats)
    assert (stats.loss, stats.dice, stats.images) == (1.0, 0.5, 4)


# -- the metric accumulators: object collectives only ----------------------------------------------------


@pytest.fixture
def fake_torch_distributed(monkeypatch):
    """torch.distributed as the accumulators see it: rank 0 of two, tensor collectives refused (on
    the CPU, as NCCL refuses them) and ``all_gather_object`` answered with the other rank's share."""

    def install(peer_objects) -> RefusesOtherDevices:
        fake = RefusesOtherDevices(torch.device("meta"), peer_objects=peer_objects)
        for name in ("is_available", "is_initialized", "get_world_size", "get_rank", "all_gather_object"):
            monkeypatch.setattr(dist, name, getattr(fake, name))
        for name in ("all_reduce", "all_gather", "broadcast"):
            monkeypatch.setattr(dist, name, getattr(fake, name))
        return fake

    return install


def binary_batch(seed: int, images: int = 3):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(images, 1, 6, 7, generator=generator)
    masks = (torch.rand(images, 1, 6, 7, generator=generator) > 0.5).float()
    return logits, masks


def test_binary_metrics_and_the_threshold_sweep_pool_with_all_gather_object(fake_torch_distributed):
    """``all_gather_object`` works under NCCL once the process's GPU is the current device (it
    pickles onto ``torch.cuda.current_device()``), which ``setup`` makes it before the group exists;
    the accumulators use no tensor collective, which NCCL would refuse for their CPU counts."""
    mine, theirs = binary_batch(0), binary_batch(1)
    names_mine, names_theirs = ["a", "b", "c"], ["d", "e", "f"]
    other = MetricAccumulator()
    other.update(*theirs, names=names_theirs)
    whole = MetricAccumulator()
    whole.update(*mine, names=names_mine)
    whole.update(*theirs, names=names_theirs)

    accumulator = MetricAccumulator()
    accumulator.update(*mine, names=names_mine)
    sweep, other_sweep = ThresholdSweep(), ThresholdSweep()
    sweep.update(*mine, names=names_mine)
    other_sweep.update(*theirs, names=names_theirs)
    # What the other process sends: its counts, its names and nothing else (a binary accumulator)
    peer_objects = [(other.counts().tolist(), names_theirs, None)] + [
        (a.counts().tolist(), names_theirs, None) for a in other_sweep.accumulators.values()
    ]
    fake = fake_torch_distributed(peer_objects)
    accumulator.all_reduce()
    sweep.all_reduce()
    assert set(fake.calls) == {"all_gather_object"}
    assert accumulator.compute() == whole.compute()
    assert [row["name"] for row in accumulator.per_image()] == names_mine + names_theirs
    whole_sweep = ThresholdSweep()
    whole_sweep.update(*mine, names=names_mine)
    whole_sweep.update(*theirs, names=names_theirs)
    assert sweep.scores() == whole_sweep.scores()


def test_class_metrics_pool_with_all_gather_object(fake_torch_distributed):
    generator = torch.Generator().manual_seed(3)
    batches = [
        (torch.randn(2, 3, 5, 5, generator=generator), torch.randint(0, 3, (2, 5, 5), generator=generator))
        for _ in range(2)
    ]

    def accumulator() -> ClassMetricAccumulator:
        return ClassMetricAccumulator(["bg", "a", "b"], counter=lambda x, y, ignore: multiclass_counts(x, y))

    mine, other, whole = accumulator(), accumulator(), accumulator()
    mine.update(*batches[0], names=["a", "b"])
    other.update(*batches[1], names=["c", "d"])
    for batch, names in zip(batches, (["a", "b"], ["c", "d"]), strict=True):
        whole.update(*batch, names=names)
    fake = fake_torch_distributed([(other.counts().tolist(), ["c", "d"], other.confusion.tolist())])
    mine.all_reduce()
    assert fake.calls == ["all_gather_object"]
    assert mine.compute() == whole.compute()
    assert torch.equal(mine.confusion, whole.confusion)


# -- validate(): pooled over real processes (a gloo group of forked processes; fast) ---------------------

#: The run settings ``validate`` reads; the binary task also sweeps thresholds (pooled too).
VALIDATION_VALUES = {
    "calibrate_threshold": True,
    "channels_last": False,
    "tta": False,
    "threshold": 0.5,
    "crop_size": None,
}


def validation_case(kind: str):
    """A tiny model, task and loss, and 7 images (an uneven share for 2 and 3 processes)."""
    from segkit.task.binary import BinaryTask
    from segkit.task.multiclass import MulticlassTask

    generator = torch.Generator().manual_seed(11)
    classes = 1 if kind == "binary" else 3
    model = torch.nn.Conv2d(3, classes, 3, padding=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    items = []
    for index in range(7):
        image = torch.rand(3, 8, 9, generator=generator)
        if kind == "binary":
            mask = (torch.rand(1, 8, 9, generator=generator) > 0.6).float()
        else:
            mask = torch.randint(0, 3, (1, 8, 9), generator=generator)
        items.append({"image": image, "mask": mask, "name": f"image{index}"})
    if kind == "binary":
        return model, BinaryTask(0.5), segkit.create_loss("bce"), items  # per image: any batching
    return model, MulticlassTask(("background", "cat", "dog")), segkit.create_loss("ce"), items


def validate_shard(kind: str, group: ProcessGroup) -> tuple[float, dict, tuple | None]:
    """What ``validate`` gives on ``group``: this process's shard of the split, pooled."""
    from segkit.engine.data import make_loader
    from segkit.engine.validation import validate

    model, task, loss_fn, items = validation_case(kind)
    loader = make_loader(items, 2, False, 0, torch.device("cpu"), 0, group)
    result = validate(model, loader, loss_fn, task, VALIDATION_VALUES, torch.device("cpu"), None, group)
    return result.loss, result.scores, result.calibrated


def validate_in_a_gloo_group(kind: str, rank: int, world_size: int, store: str, results) -> None:
    """One forked process of the group: joins it, validates its shard, sends what it got."""
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
        results.put((rank, validate_shard(kind, ProcessGroup(rank, world_size))))
        dist.destroy_process_group()
    except BaseException as error:  # noqa: BLE001 - the test reports it
        results.put((rank, repr(error)))


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_validate_pools_the_loss_and_every_figure_across_real_processes(tmp_path, kind, world_size):
    """Each of 2 or 3 processes (a real gloo group, forked: no import, well under a second) validates
    its shard of 7 images; every process must end with the figures one process gets on all 7."""
    import multiprocessing

    # First, in this process: the forked ones then inherit the loaded plugins instead of each loading them.
    whole_loss, whole_scores, whole_calibrated = validate_shard(kind, ProcessGroup())
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    store = str(tmp_path / "store")
    processes = [
        context.Process(target=validate_in_a_gloo_group, args=(kind, rank, world_size, store, results))
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    try:
        got = dict(results.get(timeout=60) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    assert sorted(got) == list(range(world_size))
    for rank, outcome in got.items():
        assert not isinstance(outcome, str), f"rank {rank}: {outcome}"
        loss, scores, calibrated = outcome
        assert loss == pytest.approx(whole_loss, rel=1e-6), rank
        assert scores.keys() == whole_scores.keys()
        for name, value in whole_scores.items():
            assert scores[name] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (rank, name)
        assert calibrated == whole_calibrated


# -- the NaN policy and rank 0's decisions, agreed by every process (fake group) ------------------------


def test_first_non_finite_names_the_lowest_rank_and_its_value(group_device, monkeypatch):
    # Rank 0 of two; the other rank's codes: 0 finite, 1 NaN, 2 inf, 3 -inf, in its own slot.
    fake = RefusesOtherDevices(group_device, peer_numbers=[[0, 0], [0, 1], [0, 0], [0, 2], [0, 3]])
    monkeypatch.setattr(distributed, "dist", fake)
    group = ProcessGroup(rank=0, world_size=2, device=group_device)
    assert distributed.first_non_finite(group, 0.5) is None
    value, rank = distributed.first_non_finite(group, 0.5)
    assert math.isnan(value) and rank == 1
    assert distributed.first_non_finite(group, -math.inf) == (-math.inf, 0)
    assert distributed.first_non_finite(group, 0.25) == (math.inf, 1)
    assert distributed.first_non_finite(group, math.inf) == (math.inf, 0)  # the lowest rank's value
    assert fake.calls == ["all_reduce"] * 5
    fake.peer_numbers = [[0, 0], [0, 2]]
    own_nan, rank = distributed.first_non_finite(group, math.nan)
    assert math.isnan(own_nan) and rank == 0
    assert distributed.first_non_finite(group, -1e300) == (math.inf, 1)  # a finite value, however large


def test_first_non_finite_alone_calls_no_collective(monkeypatch):
    monkeypatch.setattr(distributed, "dist", None)
    assert distributed.first_non_finite(ProcessGroup(), 1.0) is None
    assert distributed.first_non_finite(ProcessGroup(), -math.inf) == (-math.inf, 0)


def training_step(on_nan: str, group: ProcessGroup):
    from segkit.engine.step import TrainingStep
    from segkit.task.binary import BinaryTask

    model = torch.nn.Conv2d(3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainingStep(
        model,
        segkit.create_loss("bce"),
        optimizer,
        BinaryTask(0.5),
        device=torch.device("cpu"),
        amp_dtype=None,
        channels_last=False,
        on_nan=on_nan,
        group=group,
    )
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, 4, 4, generator=generator), "mask": torch.ones(2, 1, 4, 4)}
    return step, model, [batch, batch]  # two micro-batches: a step checks each


@pytest.mark.parametrize("on_nan", ["skip", "stop"])
def test_a_nan_on_another_rank_skips_or_stops_this_ranks_step(monkeypatch, on_nan):
    """This rank's loss is finite; rank 1 says its second micro-batch's is NaN: this rank too takes
    no optimizer step, and skips it or stops with the message every rank gives."""
    from segkit.engine.step import NonFiniteLossError

    fake = RefusesOtherDevices(torch.device("cpu"), peer_numbers=[[0, 0], [0, 1]])
    monkeypatch.setattr(distributed, "dist", fake)
    step, model, micro_batches = training_step(on_nan, ProcessGroup(0, 2))
    before = [parameter.clone() for parameter in model.parameters()]
    if on_nan == "skip":
        result = step(micro_batches, step_in_epoch=3)
        assert result.skipped and result.images == 0
        assert all(parameter.grad is None for parameter in model.parameters())  # nothing left over
    else:
        with pytest.raises(NonFiniteLossError) as raised:
            step(micro_batches, step_in_epoch=3)
        assert str(raised.value).startswith("the training loss became nan on rank 1 of 2 at step 3 of this")
    assert fake.calls == ["all_reduce"] * 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_finite_losses_everywhere_take_the_step(monkeypatch):
    fake = RefusesOtherDevices(torch.device("cpu"), peer_numbers=[[0, 0], [0, 0]])
    monkeypatch.setattr(distributed, "dist", fake)
    step, model, micro_batches = training_step("skip", ProcessGroup(0, 2))
    before = [parameter.clone() for parameter in model.parameters()]
    result = step(micro_batches)
    assert not result.skipped and result.images == 4
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    "batch, processes, advice", [(8, 3, "use 6 or 9"), (2, 3, "use 3"), (7, 2, "use 6 or 8")]
)
def test_a_batch_that_does_not_divide_among_the_processes_is_a_usage_error(batch, processes, advice):
    """Each process loads batch // processes images: 8 on 3 processes would train on batches of 6."""
    from segkit.engine.data import RunData

    values = {"batch_size": batch}
    with pytest.raises(UsageError) as caught:
        RunData(values, torch.device("cpu"), ProcessGroup(0, processes))
    assert str(caught.value) == (
        f"--batch-size {batch} is the batch of all {processes} processes together and must divide "
        f"among them: {advice}"
    )


class Broadcasts:
    """``broadcast_object_list`` of a group of two: rank 0 sends (recorded in ``sent``), the other
    rank receives ``received``."""

    def __init__(self, rank: int, received=None) -> None:
        self.rank, self.received, self.sent = rank, received, []

    def broadcast_object_list(self, objects, src=0, group=None, device=None):
        assert src == 0
        if self.rank == 0:
            self.sent.append(objects[0])
        else:
            objects[:] = [self.received]


def test_on_main_gives_rank_0s_result_to_every_rank(monkeypatch):
    main = Broadcasts(0)
    monkeypatch.setattr(distributed, "dist", main)
    assert distributed.on_main(ProcessGroup(0, 2), lambda: "early stopping: ...") == "early stopping: ..."
    other = Broadcasts(1, received=main.sent[0])
    monkeypatch.setattr(distributed, "dist", other)
    assert (
        distributed.on_main(ProcessGroup(1, 2), lambda: pytest.fail("rank 1 ran it")) == "early stopping: ..."
    )


@pytest.mark.parametrize(
    "error, message, exit_code",
    [
        (UsageError("callback 'x': no such metric"), "callback 'x': no such metric", 2),
        (SegkitError("disk full writing last.pt"), "disk full writing last.pt", 1),
        (ValueError("a bug\nmore lines"), "rank 0 failed with ValueError: a bug", 1),
        (ValueError(), "rank 0 failed with ValueError: ", 1),  # a bug without a message
    ],
)
def test_on_main_stops_every_rank_with_rank_0s_error(monkeypatch, error, message, exit_code):
    main = Broadcasts(0)
    monkeypatch.setattr(distributed, "dist", main)

    def fails():
        raise error

    with pytest.raises(type(error)) as raised:
        distributed.on_main(ProcessGroup(0, 2), fails)
    assert raised.value is error  # rank 0 shows its own error (and a bug's traceback)
    monkeypatch.setattr(distributed, "dist", Broadcasts(1, received=main.sent[0]))
    with pytest.raises(distributed.StoppedOnMain) as stopped:
        distributed.on_main(ProcessGroup(1, 2), lambda: pytest.fail("rank 1 ran it"))
    assert (str(stopped.value), stopped.value.exit_code) == (message, exit_code)


def test_on_main_alone_just_calls(monkeypatch):
    monkeypatch.setattr(distributed, "dist", None)
    assert distributed.on_main(ProcessGroup(), lambda: 7) == 7


def test_a_peer_gone_is_told_from_other_errors():
    gone = RuntimeError("[../gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:5")
    assert distributed.peer_gone(ProcessGroup(0, 2), gone)
    assert not distributed.peer_gone(ProcessGroup(), gone)  # alone there is no peer
    assert not distributed.peer_gone(ProcessGroup(0, 2), RuntimeError("shapes do not match"))
    assert not distributed.peer_gone(ProcessGroup(0, 2), ValueError("Connection closed by peer"))


# -- setup: the GPU is chosen before the group is created --------------------------------------------------


@pytest.mark.parametrize("device, backend", [("cuda", "nccl"), ("cpu", "gloo")])
def test_setup_chooses_the_backend_and_makes_the_gpu_current_first(monkeypatch, device, backend):
    calls: list[tuple] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    group = distributed.setup(torch.device(device))
    assert (group.rank, group.world_size, group.local_rank, group.enabled) == (1, 2, 1, True)
    if device == "cuda":
        assert calls == [("set_device", 1), ("init", "nccl")]
        assert group.device == torch.device("cuda", 1)
    else:
        assert calls == [("init", "gloo")]
        assert group.device == torch.device("cpu")


def test_setup_without_torchrun_is_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dist, "init_process_group", None)  # must not be called
    group = distributed.setup(torch.device("cpu"))
    assert group == ProcessGroup() and not group.enabled and group.is_main


def test_setup_without_local_rank_takes_the_first_gpu(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # already joined: not joined again
    monkeypatch.setattr(dist, "init_process_group", None)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(index))
    group = distributed.setup(torch.device("cuda"))
    assert (group.local_rank, group.device, calls) == (0, torch.device("cuda", 0), [0])


@pytest.mark.parametrize(
    "enabled, initialized, destroyed", [(True, True, 1), (True, False, 0), (False, True, 0)]
)
def test_teardown_leaves_only_a_group_it_joined(monkeypatch, enabled, initialized, destroyed):
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: initialized)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    distributed.teardown(ProcessGroup(0, 2 if enabled else 1))
    assert calls == ["barrier", "destroy"] * destroyed  # every process waits for the others first


def test_broadcast_names_rank_0_as_the_source(monkeypatch):
    """torch's ``broadcast_object_list`` has no default source (``src=None``): segkit must name it."""
    sources = []

    class Faithful:
        @staticmethod
        def broadcast_object_list(objects, src=None, group=None, device=None, group_src=None):
            sources.append(src)

    monkeypatch.setattr(distributed, "dist", Faithful)
    assert broadcast(ProcessGroup(0, 2), "runs/a") == "runs/a"
    assert sources == [0]


def test_sum_across_adds_in_float64(monkeypatch):
    """2**24 + 1 is the first integer float32 cannot hold: the pooled counts of a large split."""
    fake = RefusesOtherDevices(torch.device("cpu"), peer_numbers=[[1.0, 0.0]])
    monkeypatch.setattr(distributed, "dist", fake)
    assert sum_across(ProcessGroup(0, 2), 2.0**24, 0.1) == [2.0**24 + 1, 0.1]


@given(length=st.integers(0, 50), world_size=st.integers(1, 6))
def test_the_shards_of_a_split_cover_it_once_in_order_without_padding(length, world_size):
    shards = [distributed.shard_indices(length, ProcessGroup(rank, world_size)) for rank in range(world_size)]
    assert sorted(index for shard in shards for index in shard) == list(range(length))
    for rank, shard in enumerate(shards):
        assert shard == [index for index in range(length) if index % world_size == rank]


def test_stopped_on_main_defaults_to_exit_code_1():
    assert distributed.StoppedOnMain("rank 0 failed").exit_code == 1


# -- a real one-rank NCCL group (a single GPU cannot host two ranks) ----------------------------------------


@pytest.mark.gpu
def test_a_one_rank_nccl_group_takes_every_collective(tmp_path):
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        group = ProcessGroup(0, 2, 0, torch.device("cuda", 0))  # world_size 2: take the collective paths
        with pytest.raises(Exception):  # noqa: B017, PT011 - NCCL's own error: CPU tensors are refused
            dist.all_reduce(torch.zeros(1))
            torch.cuda.synchronize()
        assert sum_across(group, 1.0, 2.0) == [1.0, 2.0]
        assert any_across(group, True) is True and any_across(group, False) is False
        assert broadcast(group, {"run": "a"}) == {"run": "a"}
        assert distributed.on_main(group, lambda: "stop") == "stop"
        assert distributed.first_non_finite(group, 1.0) is None
        assert distributed.first_non_finite(group, -math.inf) == (-math.inf, 0)
        accumulator = MetricAccumulator()
        accumulator.update(*binary_batch(0), names=["a", "b", "c"])
        expected = accumulator.compute()
        accumulator.all_reduce()
        assert accumulator.compute() == expected
    finally:
        dist.destroy_process_group()


# -- real processes under torchrun (gloo, on the CPU; slow) ----------------------------------------------

#: segkit's command line as ``torchrun -m segkit`` runs it, with two instruments for the tests: every
#: file segkit writes is logged with the rank that wrote it (``SEGKIT_TEST_WRITES``), and the loss
#: ``rank_faulty_bce`` (BCE) turns NaN, or SIGKILLs its process, on one rank at chosen training steps.
RUNNER = '''\
import os, signal, sys

import torch
from torch.nn import functional as F

import segkit
import segkit.atomic_files
from segkit.plugins import get_host

RANK = int(os.environ.get("RANK", "0"))
real_move_into_place = segkit.atomic_files._move_into_place


def logged_move_into_place(temp, path):
    real_move_into_place(temp, path)
    with open(os.environ["SEGKIT_TEST_WRITES"], "a") as log:
        log.write(f"{RANK} {path}\\n")


segkit.atomic_files._move_into_place = logged_move_into_place


class RankFaultyBCE(torch.nn.Module):
    """BCE; at training steps ``steps`` (counted from 1 in this process) of rank ``rank`` the loss is
    NaN (``fault="nan"``) or the process kills itself with SIGKILL (``fault="kill"``)."""

    def __init__(self, rank=1, steps=(), fault="nan"):
        super().__init__()
        self.rank, self.steps, self.fault, self.step = rank, set(steps), fault, 0

    def forward(self, logits, target, ignore=None):
        loss = F.binary_cross_entropy_with_logits(logits, target)
        if not logits.requires_grad:  # validation
            return loss
        self.step += 1
        if RANK != self.rank or self.step not in self.steps:
            return loss
        if self.fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return loss + float("nan")


class Plugin:
    @segkit.hookimpl
    def register_losses(self, register):
        register("rank_faulty_bce", RankFaultyBCE, description="test: NaN or SIGKILL on one rank")


get_host().register_plugin(Plugin(), "rank-faulty-loss-test", "tests")
from segkit.cli import main

main(sys.argv[1:])
'''
#: A torchrun that has not ended by then is hung: the test fails (and kills it) rather than block CI.
TORCHRUN_TIMEOUT = 150


def multi(callbacks: tuple[str, ...] = ("csv",), **flags: object) -> list[str]:
    """A tiny run for 2 or 3 processes: 24 training images in global batches of 6 (3 or 2 per process:
    4 steps an epoch either way) and 13 validation images, shared unevenly (7 + 6, 5 + 4 + 4)."""
    return tiny_run(
        loss="bce_dice", batch_size=6, train_size=24, valid_size=13, callbacks=callbacks, seed=5, **flags
    )


@dataclass
class Launch:
    returncode: int
    output: str  # stdout and stderr of torchrun and every process, interleaved
    writes: list[tuple[int, Path]]  # (rank, path) of every file written, in order


def torchrun(
    tmp_path: Path, processes: int, *args: object, launcher: tuple[str, ...] = (), timeout=TORCHRUN_TIMEOUT
) -> Launch:
    """``torchrun --standalone --nproc_per_node PROCESSES [LAUNCHER] -m segkit ARGS`` (through
    ``RUNNER``), with a hang turned into a failure: at ``timeout`` the whole process group is killed."""
    runner = tmp_path / "segkit_under_torchrun.py"
    runner.write_text(RUNNER)
    writes = tmp_path / f"writes-{time.monotonic_ns()}.log"
    writes.touch()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        *launcher,
        str(runner),
        *map(str, args),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGKIT_TEST_WRITES": str(writes)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and every worker it started
        output, _ = process.communicate()
        pytest.fail(f"torchrun hung for {timeout} s:\n{output[-4000:]}")
    logged = [line.split(" ", 1) for line in writes.read_text().splitlines()]
    return Launch(process.returncode, output, [(int(rank), Path(path)) for rank, path in logged])


def evaluate_alone(checkpoint: Path, out: Path) -> dict:
    """``segkit evaluate CHECKPOINT --split valid`` in one process: the network-resolution summary."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segkit",
            "evaluate",
            str(checkpoint),
            "--split",
            "valid",
            "--resolution",
            "network",
            "--no-boundary",
            "--device",
            "cpu",
            "-o",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=TORCHRUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())["network_resolution"]


def recorded_epochs(run_dir: Path) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader((run_dir / "metrics.csv").open())]


@pytest.mark.slow
def test_early_stopping_decided_on_rank_0_stops_every_process_after_the_same_epoch(tmp_path):
    """Callbacks live on rank 0; its decision to stop must reach the other ranks, or they go on into
    the next epoch alone and fail in its first collective (the crash of issue 25)."""
    launch = torchrun(
        tmp_path,
        2,
        "run",
        *multi(callbacks=("csv", "early_stopping")),
        "--epochs",
        "4",
        "--callback-option",
        "early_stopping.patience=1",
        "--callback-option",
        "early_stopping.min_delta=1",  # valid_dice lies in [0, 1]: nothing improves on epoch 1 by 1
        "--out",
        tmp_path / "runs",
    )
    assert launch.returncode == 0, launch.output[-4000:]
    assert "Stopped early: early stopping: valid_dice did not improve" in launch.output
    run_dir = only_run_dir(tmp_path / "runs")
    assert recorded_epochs(run_dir) == [1, 2]
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2


def run_files_written(launch: Launch, run_dir: Path) -> Counter:
    """How many times each file of ``run_dir`` was written; fails if a rank other than 0 wrote one."""
    mine = [(rank, path) for rank, path in launch.writes if path.parent == run_dir]
    assert {rank for rank, _ in mine} <= {0}, mine
    return Counter(path.name for _, path in mine)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_a_run_and_its_resume_under_torchrun_write_once_and_validate_like_one_process(tmp_path, processes):
    """Train, validate and checkpoint under torchrun, then ``--resume`` under torchrun; the pooled
    validation figures of the last epoch equal one process's ``segkit evaluate`` of last.pt."""
    out = tmp_path / "runs"
    first = torchrun(tmp_path, processes, "run", *multi(), "--epochs", "1", "--out", out)
    assert first.returncode == 0, first.output[-4000:]
    run_dir = only_run_dir(out)  # only rank 0 creates a run folder
    assert json.loads((run_dir / "config.json").read_text())["resolved"]["processes"] == processes
    resumed = torchrun(tmp_path, processes, "run", "--resume", run_dir, "--epochs", "2")
    assert resumed.returncode == 0, resumed.output[-4000:]
    assert f"Resuming {run_dir} at epoch 2 of 2" in resumed.output
    assert recorded_epochs(run_dir) == [1, 2]
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    # Written by rank 0 alone, each once: last.pt at epoch 0 and 1, then 2; a metrics.csv row per epoch.
    first_writes, resumed_writes = run_files_written(first, run_dir), run_files_written(resumed, run_dir)
    assert (first_writes["config.json"], first_writes["last.pt"], first_writes["metrics.csv"]) == (1, 2, 1)
    assert (resumed_writes["config.json"], resumed_writes["last.pt"], resumed_writes["metrics.csv"]) == (
        1,
        1,
        1,
    )
    assert first_writes["best.pt"] == 1 and resumed_writes["best.pt"] <= 1

    row = list(csv.DictReader((run_dir / "metrics.csv").open()))[-1]
    summary = evaluate_alone(run_dir / "last.pt", tmp_path / "eval")
    assert summary["images"] == 13
    # Batches of 3 or 2 per process vs 6 in one change logits by ~1e-8; these models have logits
    # that close to 0 at a few pixels, so scores agree to 1e-3 (a lost or doubled shard moves them
    # by far more; the fast test_validate_pools_... checks pooling exactly).
    assert float(row["valid_dice"]) == pytest.approx(summary["dice_per_image"], abs=1e-3)
    assert float(row["valid_dice_dataset"]) == pytest.approx(summary["dice_dataset"], abs=1e-3)


def faulty(*loss_options: str) -> list[str]:
    """``--loss rank_faulty_bce`` with its options (see ``RUNNER``)."""
    return ["--loss", "rank_faulty_bce", *(f for option in loss_options for f in ("--loss-option", option))]


#: Training steps an epoch of ``multi()`` takes.
STEPS_PER_EPOCH = 4


@pytest.mark.slow
def test_a_nan_on_one_rank_makes_every_rank_skip_that_step(tmp_path):
    launch = torchrun(
        tmp_path,
        2,
        "run",
        *multi(),
        *faulty("rank=1", "steps=[3]"),
        "--on-nan",
        "skip",
        "--epochs",
        "2",
        "--out",
        tmp_path / "runs",
    )
    assert launch.returncode == 0, launch.output[-4000:]
    run_dir = only_run_dir(tmp_path / "runs")
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    # Rank 0 writes the records and saw no NaN itself: it skipped rank 1's step too.
    assert [int(row["skipped_steps"]) for row in rows] == [1, 0]
    assert all(math.isfinite(float(row["train_loss"])) for row in rows)


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_with_the_same_message(tmp_path):
    launch = torchrun(
        tmp_path,
        2,
        "run",
        *multi(),
        *faulty("rank=1", "steps=[7]"),
        "--epochs",
        "3",
        "--out",
        tmp_path / "runs",
    )
    assert launch.returncode != 0
    message = (
        "Error: the training loss became nan on rank 1 of 2 at step 3 of this epoch; stopping with the "
        "last good checkpoint intact (lower --learning-rate, or pass --on-nan skip to skip such steps)"
    )
    assert launch.output.count(message) == 2, launch.output[-4000:]  # once per rank
    run_dir = only_run_dir(tmp_path / "runs")
    assert recorded_epochs(run_dir) == [1]
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1


@pytest.mark.slow
def test_a_rank_killed_mid_run_ends_the_others_with_a_message_naming_it(tmp_path):
    """Rank 1 SIGKILLs itself in epoch 2. Rank 0, waiting for it in a collective, must not wait forever
    (a hang fails at TORCHRUN_TIMEOUT): it says in one line what happened and how to resume, and
    torchrun's summary names rank 1 and SIGKILL. torchrun stops the other processes (SIGTERM) when it
    next looks, every ``--monitor-interval`` (0.1 s by default): 2 s here, so that rank 0 has surely
    printed its line first."""
    launch = torchrun(
        tmp_path,
        2,
        "run",
        *multi(),
        *faulty("rank=1", f"steps=[{STEPS_PER_EPOCH + 2}]", "fault=kill"),
        "--epochs",
        "3",
        "--out",
        tmp_path / "runs",
        launcher=("--monitor-interval", "2"),
    )
    assert launch.returncode != 0
    assert re.search(r"rank +: 1 \(local_rank: 1\)\n +exitcode +: -9 .*\(SIGKILL\)", launch.output), (
        launch.output
    )
    run_dir = only_run_dir(tmp_path / "runs")
    assert (
        "Error: another process of this torchrun run ended: rank 0 of 2 lost its connection (torchrun's "
        f"summary says which and why); {run_dir / 'last.pt'} holds epoch 1: continue with torchrun ... "
        f"-m segkit run --resume {run_dir}"
    ) in launch.output.splitlines()
    assert launch.output.count("Traceback") == 1, launch.output  # torchrun's own (ChildFailedError)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
