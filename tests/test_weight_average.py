"""The weight average (segkit.engine.weight_average): an exponential moving average of the weights,
validated, checkpointed and used for prediction with ``--ema-decay``."""

from __future__ import annotations

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


@given(
    decay=st.floats(0.01, 0.999),
    updates=st.integers(0, 200),
    seeds=st.lists(st.integers(0, 2**16), min_size=1, max_size=4),
)
def test_each_update_moves_the_average_by_one_minus_the_current_decay(decay, updates, seeds):
    model = small_model()
    average = WeightAverage(model, decay)
    average.updates = updates
    for seed in seeds:
        before = {k: v.clone() for k, v in average.averaged.state_dict().items()}
        randomise(model, seed)
        expected_decay = min(decay, (1 + average.updates + 1) / (10 + average.updates + 1))
        average.update(model)
        assert average.current_decay() == pytest.approx(expected_decay)
        for key, value in average.averaged.state_dict().items():
            trained = model.state_dict()[key]
            if value.is_floating_point():
                expected = expected_decay * before[key] + (1 - expected_decay) * trained
                torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
            else:  # integer buffers (BatchNorm's step count) are copied, not averaged
                assert torch.equal(value, trained)


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
