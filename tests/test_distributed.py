"""segkit.engine.distributed and the collectives of the metric accumulators, under gloo and NCCL.

- ``torchrun --nproc_per_node=2 -m segkit run``: two CPU processes (gloo) give the metrics one process
  gives on the same data, and only rank 0 writes files (slow).
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
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from fixtures import only_run_dir, tiny_run

from segkit.calibration import ThresholdSweep
from segkit.class_metrics import ClassMetricAccumulator, multiclass_counts
from segkit.engine import distributed
from segkit.engine.distributed import ProcessGroup, any_across, broadcast, sum_across
from segkit.metrics import MetricAccumulator

TINY = tiny_run(loss="bce_dice", batch_size=8, train_size=32, valid_size=14, epochs=1)


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
    peer_objects = [(other.counts().tolist(), names_theirs)] + [
        (a.counts().tolist(), names_theirs) for a in other_sweep.accumulators.values()
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
        accumulator = MetricAccumulator()
        accumulator.update(*binary_batch(0), names=["a", "b", "c"])
        expected = accumulator.compute()
        accumulator.all_reduce()
        assert accumulator.compute() == expected
    finally:
        dist.destroy_process_group()


# -- two real processes (gloo) ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_sum_metrics_like_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "segkit",
        "run",
        *TINY,
        "--out",
        str(tmp_path / "runs"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")  # only rank 0 creates a run folder
    assert json.loads((run_dir / "config.json").read_text())["resolved"]["processes"] == 2
    row = next(csv.DictReader((run_dir / "metrics.csv").open()))
    # The validation split (14 images, an odd share per process) scored by one process, same weights.
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "segkit",
            "evaluate",
            str(run_dir / "last.pt"),
            "--split",
            "valid",
            "--resolution",
            "network",
            "--no-boundary",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "eval"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())["network_resolution"]
    assert summary["images"] == 14
    # Batches of 7 per process vs 14 in one change logits by ~1e-8; this one-epoch model has logits
    # that close to 0 at a few pixels, so scores agree to 1e-3 (a lost or doubled shard moves them
    # by far more).
    assert float(row["valid_dice"]) == pytest.approx(summary["dice_per_image"], abs=1e-3)
    assert float(row["valid_dice_dataset"]) == pytest.approx(summary["dice_dataset"], abs=1e-3)
