"""The training step (segkit.engine.step) and gradient accumulation, against plain PyTorch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import segkit
from segkit.engine.loop import micro_batch_groups, train_one_epoch
from segkit.engine.step import NonFiniteLossError, TrainingStep
from segkit.task import BinaryTask

CPU = torch.device("cpu")


def small_model(seed: int) -> nn.Module:
    """No BatchNorm: the gradient of a per-image loss does not depend on how the batch is split."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))


def batch(images: torch.Tensor, masks: torch.Tensor, start: int, stop: int) -> dict:
    names = [str(index) for index in range(start, stop)]
    return {"image": images[start:stop], "mask": masks[start:stop], "name": names}


def step_gradients(model: nn.Module, loss_name: str, micro_batches: list[dict], **loss_options) -> list:
    """Gradients one TrainingStep leaves, read off an SGD step of rate 1 (delta = -gradient)."""
    before = [parameter.detach().clone() for parameter in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = segkit.create_loss(loss_name, **loss_options)
    step = TrainingStep(
        model, loss_fn, optimizer, BinaryTask(), device=CPU, amp_dtype=None, channels_last=False
    )
    result = step(micro_batches)
    assert not result.skipped and result.images == sum(len(b["image"]) for b in micro_batches)
    return [old - new.detach() for old, new in zip(before, model.parameters(), strict=True)]


def data(seed: int, count: int = 8, size: int = 12):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, size, size, generator=generator)
    masks = (torch.rand(count, 1, size, size, generator=generator) > 0.6).float()
    return images, masks


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), micro_batches=st.sampled_from([1, 2, 4, 8]))
def test_accumulated_bce_gradient_equals_the_full_batch_gradient(seed, micro_batches):
    images, masks = data(seed)
    model = small_model(seed)
    reference = copy.deepcopy(model)
    F.binary_cross_entropy_with_logits(reference(images), masks).backward()
    per = 8 // micro_batches
    groups = [batch(images, masks, start, start + per) for start in range(0, 8, per)]
    for got, parameter in zip(step_gradients(model, "bce", groups), reference.parameters(), strict=True):
        torch.testing.assert_close(got, parameter.grad, rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_accumulate_two_of_four_equals_a_batch_of_eight_for_per_image_dice(seed):
    images, masks = data(seed)
    whole = step_gradients(small_model(seed), "dice", [batch(images, masks, 0, 8)], per_image=True)
    halves = [batch(images, masks, 0, 4), batch(images, masks, 4, 8)]
    split = step_gradients(small_model(seed), "dice", halves, per_image=True)
    # Independent reference: 1 - mean over images of (2 sum(p t) + 1) / (sum p + sum t + 1).
    reference = small_model(seed)
    probabilities = torch.sigmoid(reference(images)).flatten(1)
    target = masks.flatten(1)
    dice = (2 * (probabilities * target).sum(1) + 1) / (probabilities.sum(1) + target.sum(1) + 1)
    (1 - dice.mean()).backward()
    for a, b, parameter in zip(whole, split, reference.parameters(), strict=True):
        torch.testing.assert_close(a, parameter.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, parameter.grad, rtol=1e-5, atol=1e-6)


def test_a_batch_pooled_dice_differs_when_accumulated():
    """Why the README says a batch-pooled Dice is not the same under accumulation."""
    images, masks = data(3)
    whole = step_gradients(small_model(3), "dice", [batch(images, masks, 0, 8)])
    split = step_gradients(small_model(3), "dice", [batch(images, masks, 0, 4), batch(images, masks, 4, 8)])
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(whole, split, strict=True))


def test_a_non_finite_micro_batch_skips_the_whole_step_or_stops():
    images, masks = data(5)
    images[5] = math.nan
    halves = [batch(images, masks, 0, 4), batch(images, masks, 4, 8)]
    model = small_model(5)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = segkit.create_loss("bce")
    skipping = TrainingStep(
        model,
        loss_fn,
        optimizer,
        BinaryTask(),
        device=CPU,
        amp_dtype=None,
        channels_last=False,
        on_nan="skip",
    )
    assert skipping(halves).skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(parameter.grad is None for parameter in model.parameters())  # nothing left to leak
    stopping = TrainingStep(
        model, loss_fn, optimizer, BinaryTask(), device=CPU, amp_dtype=None, channels_last=False
    )
    with pytest.raises(NonFiniteLossError, match="step 3 of this epoch"):
        stopping(halves, step_in_epoch=3)


@given(count=st.integers(0, 20), size=st.integers(1, 6))
def test_micro_batch_groups_keep_every_batch_in_order(count, size):
    groups = list(micro_batch_groups(range(count), size))
    assert [item for group in groups for item in group] == list(range(count))
    assert all(len(group) == size for group in groups[:-1])
    assert len(groups) == math.ceil(count / size)


def test_an_epoch_counts_optimizer_steps_and_asks_the_budget_before_each():
    images, masks = data(1, count=10)
    loader = [batch(images, masks, start, start + 2) for start in range(0, 10, 2)]  # 5 micro-batches
    model = small_model(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    step = TrainingStep(
        model,
        segkit.create_loss("bce"),
        optimizer,
        BinaryTask(),
        device=CPU,
        amp_dtype=None,
        channels_last=False,
    )
    asked = []
    stats = train_one_epoch(
        step, loader, before_step=lambda: asked.append(1) or True, accumulate_steps=2, quiet=True
    )
    assert stats.steps == 3 and len(asked) == 3  # 2 + 2 + the partial step of 1 at the epoch's end
    assert stats.images == 10 and not stats.stopped_early


# --- gaps found by mutation testing (MUTATION.md) ------


def test_ignored_pixels_reach_the_loss_and_the_averaged_weights_follow_the_trained_module():
    from segkit.engine.weight_average import WeightAverage

    images, masks = data(7, count=4)
    ignore = torch.zeros_like(masks, dtype=torch.bool)
    ignore[:, :, :6] = True  # the top half of every image counts for nothing
    model, reference = small_model(3), small_model(3)
    average = WeightAverage(model, decay=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = TrainingStep(
        model,
        segkit.create_loss("bce"),
        optimizer,
        BinaryTask(),
        device=CPU,
        amp_dtype=None,
        channels_last=False,
        weight_average=average,
    )
    result = step([{"image": images, "mask": masks, "ignore": ignore, "name": list("abcd")}])
    # Plain PyTorch: BCE averaged over the counted pixels only.
    logits = reference(images)
    per_pixel = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    expected = per_pixel[~ignore].mean()
    expected.backward()
    assert result.loss == pytest.approx(float(expected), rel=1e-5)
    for parameter, trained, before in zip(
        reference.parameters(), model.parameters(), small_model(3).parameters(), strict=True
    ):
        assert torch.allclose(before - parameter.grad, trained, atol=1e-5)
    # The first update of an average moves it 9/11 of the way (decay min(0.5, 2/11)) to the weights.
    for averaged, trained, before in zip(
        average.averaged.parameters(), model.parameters(), small_model(3).parameters(), strict=True
    ):
        assert torch.allclose(averaged, before + 9 / 11 * (trained.detach() - before), atol=1e-6)
    assert average.updates == 1
