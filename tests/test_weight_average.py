"""The weight average (segkit.engine.weight_average): an exponential moving average of the weights,
validated, checkpointed and used for prediction with ``--ema-decay``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from segkit.engine.weight_average import WeightAverage


def small_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))


def randomise(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            else:
                tensor.fill_(int(torch.randint(0, 1000, (), generator=generator)))


def scalar_model(value: float) -> torch.nn.Module:
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_a_short_run_by_hand():
    """Worked by hand from the docstring's rule (decay lowered to (1 + n) / (10 + n) after n updates):
    start 0, trained weights 10, 20, 30 at decay 0.5:
    update 1: decay 2/11, 2/11 * 0 + 9/11 * 10 = 90/11;
    update 2: decay 3/12, 1/4 * 90/11 + 3/4 * 20 = 375/22;
    update 3: decay 4/13, 4/13 * 375/22 + 9/13 * 30 = 3720/143."""
    average = WeightAverage(scalar_model(0.0), 0.5)
    for trained, expected in ((10.0, 90 / 11), (20.0, 375 / 22), (30.0, 3720 / 143)):
        average.update(scalar_model(trained))
        assert float(average.averaged.weight) == pytest.approx(expected, rel=1e-12)


@given(
    decay=st.floats(0.01, 0.999),
    start=st.floats(-10, 10),
    target=st.floats(-10, 10),
    updates=st.integers(1, 300),
)
def test_towards_a_fixed_target_the_gap_shrinks_by_the_product_of_the_decays(decay, start, target, updates):
    """Closed form, not the update rule: trained weights held at ``target``, the average after n
    updates is ``target + (start - target) * prod(decay_k)``, decay_k = min(decay, (1+k)/(10+k))."""
    average = WeightAverage(scalar_model(start), decay)
    trained = scalar_model(target)
    for _ in range(updates):
        average.update(trained)
    remaining = math.prod(min(decay, (1 + k) / (10 + k)) for k in range(1, updates + 1))
    assert float(average.averaged.weight) == pytest.approx(target + (start - target) * remaining, abs=1e-9)


@given(seeds=st.lists(st.integers(0, 2**16), min_size=1, max_size=4))
def test_integer_buffers_are_copied_not_averaged(seeds):
    model = small_model()
    average = WeightAverage(model, 0.9)
    for seed in seeds:
        randomise(model, seed)
        average.update(model)
        for key, value in average.averaged.state_dict().items():
            if not value.is_floating_point():  # BatchNorm's step count
                assert torch.equal(value, model.state_dict()[key])


def test_the_average_is_a_frozen_copy_that_training_does_not_touch():
    model = small_model()
    average = WeightAverage(model, 0.9)
    assert all(not p.requires_grad for p in average.averaged.parameters())
    assert not average.averaged.training
    randomise(model, 1)
    assert not torch.equal(average.averaged[0].weight, model[0].weight)


def test_state_round_trips_through_a_checkpoint():
    model = small_model()
    average = WeightAverage(model, 0.95)
    for seed in range(3):
        randomise(model, seed)
        average.update(model)
    restored = WeightAverage(small_model(), 0.95)
    restored.load_state_dict(average.state_dict(), average.averaged.state_dict())
    assert restored.updates == 3 and restored.current_decay() == average.current_decay()
    for key, value in average.averaged.state_dict().items():
        assert torch.equal(value, restored.averaged.state_dict()[key])


@pytest.mark.parametrize("decay", [0, 1, -0.5, 1.5])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(small_model(), decay)
