"""The training step: forward, loss, backward and one optimizer step, over one or more micro-batches.

``TrainingStep`` owns what happens between two optimizer steps: mixed precision (autocast, and the
GradScaler for fp16), the NaN policy, gradient accumulation and the weight-average update. The loop
around it (``segkit.engine.loop``) only decides when to call it.

Gradient accumulation (``--accumulate-steps N``): a step takes N micro-batches of ``--batch-size``
images. Each micro-batch's loss is weighted by its share of the step's images before its backward
pass, so the summed gradient is the gradient of the loss averaged over every image of the step:
for a loss that is a mean over images (``bce``, a per-image Dice) and a model without BatchNorm,
N micro-batches of B images give the same gradient as one batch of N x B. A batch-pooled loss (the
default Dice, ``per_image=false``) pools each micro-batch on its own, so it differs; so do
BatchNorm's batch statistics, which see B images at a time. The step at the end of an epoch may
have fewer than N micro-batches; it is still taken, averaged over the images it has.

Under torchrun the NaN policy is applied by every process alike: a non-finite loss on any process
makes every process skip that step (``--on-nan skip``) or stop with the same message (``stop``).
Alone, a process that skipped would leave the others waiting in the gradient all-reduce.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from segkit.engine import distributed
from segkit.engine.weight_average import WeightAverage
from segkit.errors import SegkitError
from segkit.execution.device import autocast
from segkit.execution.fast_path import to_input_format
from segkit.task import Task


class NonFiniteLossError(SegkitError):
    """The training loss became NaN or infinite."""


@dataclass
class StepResult:
    """One step's loss and score, summed over its images (so epochs average per image)."""

    loss_sum: float
    score_sum: float
    images: int
    skipped: bool = False

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.images, 1)

    @property
    def score(self) -> float:
        return self.score_sum / max(self.images, 1)


def move_batch(batch: dict, device: torch.device, channels_last: bool, training: bool = True):
    """A batch's images (in the memory format the prepared model uses), masks and ignore, on ``device``."""
    images = to_input_format(batch["image"], device, channels_last, training=training)
    masks = batch["mask"].to(device, non_blocking=True)
    ignore = batch.get("ignore")
    if ignore is not None:
        ignore = ignore.to(device, non_blocking=True)
    return images, masks, ignore


def compute_loss(loss_fn, task: Task, logits, masks, ignore):
    logits, target, ignore = task.loss_inputs(logits, masks, ignore)
    return loss_fn(logits, target) if ignore is None else loss_fn(logits, target, ignore=ignore)


class TrainingStep:
    """``step(micro_batches)`` trains on them and takes one optimizer step; returns a ``StepResult``."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Any,
        optimizer: torch.optim.Optimizer,
        task: Task,
        *,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        on_nan: str = "stop",
        weight_average: WeightAverage | None = None,
        trained_module: torch.nn.Module | None = None,
        group: distributed.ProcessGroup | None = None,
    ) -> None:
        self.model = model  # what is called: the module itself, or its DistributedDataParallel wrapper
        self.trained_module = trained_module if trained_module is not None else model
        self.loss_fn, self.optimizer, self.task = loss_fn, optimizer, task
        self.device, self.amp_dtype, self.channels_last = device, amp_dtype, channels_last
        self.on_nan = on_nan
        self.group = group if group is not None else distributed.ProcessGroup()
        self.weight_average = weight_average
        # fp16 needs loss scaling (bf16 has fp32's range); resolve_amp allows fp16 on CUDA only, and
        # the scaler follows the device, so the same path runs (and is tested) on the CPU too.
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    def __call__(self, micro_batches: Sequence[dict], step_in_epoch: int = 1) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        total_images = sum(len(batch["image"]) for batch in micro_batches)
        result = StepResult(0.0, 0.0, 0)
        for index, batch in enumerate(micro_batches):
            images, masks, ignore = move_batch(batch, self.device, self.channels_last)
            with self._sync_gradients(last=index == len(micro_batches) - 1):
                with autocast(self.device, self.amp_dtype):
                    logits = self.model(images)
                    loss = compute_loss(self.loss_fn, self.task, logits, masks, ignore)
                loss_value = float(loss.detach())
                non_finite = distributed.first_non_finite(self.group, loss_value)  # on any process
                if non_finite is not None:
                    return self._non_finite(*non_finite, step_in_epoch)
                if len(micro_batches) > 1:  # weigh by the share of images: the step's mean loss
                    loss = loss * (images.shape[0] / total_images)
                self._backward(loss)
            result.loss_sum += loss_value * images.shape[0]
            result.score_sum += self.task.batch_score(logits, masks, ignore) * images.shape[0]
            result.images += images.shape[0]
        self._optimizer_step()
        return result

    def _sync_gradients(self, last: bool):
        """Under DistributedDataParallel, gradients are all-reduced only on a step's last micro-batch."""
        no_sync = getattr(self.model, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.weight_average is not None:
            self.weight_average.update(self.trained_module)

    def _non_finite(self, loss_value: float, rank: int, step_in_epoch: int) -> StepResult:
        if self.on_nan == "skip":
            self.optimizer.zero_grad(set_to_none=True)  # drop what earlier micro-batches accumulated
            return StepResult(0.0, 0.0, 0, skipped=True)
        where = f" on rank {rank} of {self.group.world_size}" if self.group.enabled else ""
        raise NonFiniteLossError(
            f"the training loss became {loss_value}{where} at step {step_in_epoch} of this epoch; "
            "stopping with the last good checkpoint intact (lower --learning-rate, or pass "
            "--on-nan skip to skip such steps)"
        )

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
