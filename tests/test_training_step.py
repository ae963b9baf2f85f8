"""The training step (segkit.engine.step) and gradient accumulation, against plain PyTorch."""

from __future__ import annotations

import contextlib
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


def bce_step(model: nn.Module, optimizer, **extra) -> TrainingStep:
    """A binary training step with BCE on the CPU in fp32 and NCHW (``extra``: weight_average...)."""
    return TrainingStep(
        model,
        segkit.create_loss("bce"),
        optimizer,
        BinaryTask(),
        device=CPU,
        amp_dtype=None,
        channels_last=False,
        **extra,
    )


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
    step = bce_step(model, optimizer)
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
    step = bce_step(model, optimizer, weight_average=average)
    result = step([{"image": images, "mask": masks, "ignore": ignore, "name": list("abcd")}])
    # Plain PyTorch: BCE averaged over the counted pixels only.
    logits = reference(images)
    per_pixel = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
    expected = per_pixel[~ignore].mean()
    expected.backward()
    assert result.loss == pytest.approx(float(expected), rel=1e-5)
    # The train Dice (the progress bar's, metrics.csv's train_dice) over the counted pixels only too.
    dices = []
    for predicted, truth, left_out in zip(logits.detach() > 0, masks.bool(), ignore, strict=True):
        predicted, truth = predicted[~left_out], truth[~left_out]
        found, total = int((predicted & truth).sum()), int(predicted.sum() + truth.sum())
        dices.append(2 * found / total if total else 1.0)
    assert result.score == pytest.approx(sum(dices) / len(dices), rel=1e-6)
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


# --- what one step reports and how it drives the model (the mutation run's survivors) -----------------


class Recording(nn.Module):
    """``small_model`` that records, per call, the input's layout and the autocast state, and offers
    ``no_sync`` as DistributedDataParallel does (recording the calls made inside it)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.inner = small_model(seed)
        self.calls: list[dict] = []
        self.syncing = True

    def forward(self, images):
        self.calls.append(
            {
                "channels_last": images.is_contiguous(memory_format=torch.channels_last)
                and not images.is_contiguous(),
                "autocast": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"),
                "synced": self.syncing,
            }
        )
        return self.inner(images)

    @contextlib.contextmanager
    def no_sync(self):
        self.syncing = False
        try:
            yield
        finally:
            self.syncing = True


def recording_step(model, **options) -> TrainingStep:
    values = {"device": CPU, "amp_dtype": None, "channels_last": False} | options
    loss = values.pop("loss", segkit.create_loss("bce"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainingStep(model, loss, optimizer, BinaryTask(), **values)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_gradients_are_synchronised_on_the_last_micro_batch_only(count):
    images, masks = data(1, count=2 * count)
    model = Recording()
    recording_step(model)([batch(images, masks, 2 * i, 2 * i + 2) for i in range(count)])
    assert [call["synced"] for call in model.calls] == [False] * (count - 1) + [True]


@pytest.mark.parametrize(
    "channels_last, amp_dtype, expected",
    [
        ("auto", None, (False, False)),
        (True, None, (True, False)),
        (False, torch.bfloat16, (False, torch.bfloat16)),
    ],
)
def test_the_model_trains_in_the_layout_and_precision_asked(channels_last, amp_dtype, expected):
    """``auto`` trains the CPU in NCHW (``resolve_channels_last``); bf16 autocast wraps the forward."""
    images, masks = data(2, count=2)
    model = Recording()
    recording_step(model, channels_last=channels_last, amp_dtype=amp_dtype)([batch(images, masks, 0, 2)])
    (call,) = model.calls
    assert (call["channels_last"], call["autocast"]) == expected


def test_a_step_sums_loss_and_score_over_micro_batches_of_different_sizes():
    images, masks = data(4, count=5)
    model, reference = small_model(5), small_model(5)
    micro_batches = [batch(images, masks, 0, 2), batch(images, masks, 2, 5)]
    result = recording_step(model)(micro_batches)
    # Plain PyTorch on the weights before the step: each micro-batch's mean BCE, each image's Dice.
    losses, scores = [], []
    for part in micro_batches:
        logits = reference(part["image"]).detach()
        losses.append(float(F.binary_cross_entropy_with_logits(logits, part["mask"])) * len(part["image"]))
        for predicted, truth in zip((logits > 0).float(), part["mask"], strict=True):  # per image
            overlap, total = float((predicted * truth).sum()), float(predicted.sum() + truth.sum())
            scores.append(2 * overlap / total if total else 1.0)
    assert result.images == 5 and not result.skipped
    assert result.loss_sum == pytest.approx(sum(losses), rel=1e-5)
    assert result.score_sum == pytest.approx(sum(scores), rel=1e-5)


def test_a_loss_without_an_ignore_argument_is_called_without_one():
    """A plugin loss may take only (logits, target): with no ignore map none is passed."""
    images, masks = data(5, count=2)
    seen = []

    def plain_loss(logits, target):
        seen.append(target.shape)
        return F.binary_cross_entropy_with_logits(logits, target)

    result = recording_step(small_model(0), loss=plain_loss)([batch(images, masks, 0, 2)])
    assert seen == [masks.shape] and result.images == 2


def test_a_skipped_step_reports_nothing_and_a_stopped_one_says_where_in_one_sentence():
    images, masks = data(6, count=2)
    nan_loss = lambda logits, target: logits.sum() * math.nan  # noqa: E731
    skipped = recording_step(small_model(0), loss=nan_loss, on_nan="skip")([batch(images, masks, 0, 2)])
    assert skipped == type(skipped)(0.0, 0.0, 0, skipped=True)
    assert (skipped.loss, skipped.score) == (0.0, 0.0)
    with pytest.raises(NonFiniteLossError) as stopped:
        recording_step(small_model(0), loss=nan_loss)([batch(images, masks, 0, 2)])
    assert str(stopped.value) == (
        "the training loss became nan at step 1 of this epoch; stopping with the last good checkpoint "
        "intact (lower --learning-rate, or pass --on-nan skip to skip such steps)"
    )


def test_the_weight_average_follows_the_trained_module_not_the_wrapper_called():
    from segkit.engine.weight_average import WeightAverage

    class Wrapper(nn.Module):  # as DistributedDataParallel: the module inside, state of its own
        def __init__(self, module):
            super().__init__()
            self.module = module
            self.register_buffer("own", torch.zeros(3))

        def forward(self, images):
            return self.module(images)

    images, masks = data(8, count=2)
    inner = small_model(8)
    before = copy.deepcopy(inner)
    average = WeightAverage(inner, decay=0.5)
    step = recording_step(Wrapper(inner), weight_average=average, trained_module=inner)
    step([batch(images, masks, 0, 2)])
    # The first update moves the average 9/11 of the way (decay min(0.5, 2/11)) to the new weights.
    for averaged, trained, old in zip(
        average.averaged.parameters(), inner.parameters(), before.parameters(), strict=True
    ):
        assert torch.allclose(averaged, old + 9 / 11 * (trained.detach() - old), atol=1e-6)


def test_a_step_without_a_scaler_ignores_a_saved_scaler_state():
    """Resuming an fp16 run's checkpoint in fp32 or bf16: there is no scale to restore."""
    step = recording_step(small_model(0))
    step.load_state_dict({"scale": 1024.0, "growth_factor": 2.0})
    assert step.state_dict() == {}
