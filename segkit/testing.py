"""Conformance kit: check a component against its contract, from segkit's tests or a plugin's own.

Usage in a plugin's test suite::

    from segkit.testing import check_model, check_loss, check_dataset

    def test_my_model_conforms():
        check_model("attention_unet")            # a registered name, or a factory/callable

Each check raises ``AssertionError`` with a message saying which part of the contract failed.
"""

from __future__ import annotations

import io
from typing import Any, Callable

import torch
from torch import nn

ODD_SIZES = ((97, 131), (64, 64), (33, 50))


def _factory(kind: str, name_or_factory: str | Callable) -> Callable:
    if isinstance(name_or_factory, str):
        from segkit.api import get_component

        return get_component(kind, name_or_factory).factory
    return name_or_factory


def check_model(
    name_or_factory: str | Callable,
    options: dict[str, Any] | None = None,
    in_channels: int = 3,
    out_channels: int = 1,
    sizes: tuple[tuple[int, int], ...] = ODD_SIZES,
    batch_size: int = 2,
) -> nn.Module:
    """A model maps (N, C, H, W) to (N, out, H, W) logits for any H, W (odd sizes too), lets gradients
    reach every parameter, survives a state_dict round trip, and runs in eval mode with batch 1."""
    factory = _factory("model", name_or_factory)
    torch.manual_seed(0)
    model = factory(in_channels=in_channels, out_channels=out_channels, **(options or {}))
    assert isinstance(model, nn.Module), f"model factory returned {type(model).__name__}, not nn.Module"
    model.train()
    for height, width in sizes:
        images = torch.randn(batch_size, in_channels, height, width)
        logits = model(images)
        assert isinstance(logits, torch.Tensor), f"forward returned {type(logits).__name__}, not a Tensor"
        expected = (batch_size, out_channels, height, width)
        assert tuple(logits.shape) == expected, (
            f"input {tuple(images.shape)} gave output {tuple(logits.shape)}, expected {expected}"
        )
        assert logits.dtype == images.dtype, f"output dtype {logits.dtype} differs from input {images.dtype}"
        assert torch.isfinite(logits).all(), f"non-finite logits for input size {height}x{width}"

    model.zero_grad(set_to_none=True)
    height, width = sizes[0]
    model(torch.randn(batch_size, in_channels, height, width)).square().mean().backward()
    without_grad = [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and (parameter.grad is None or not torch.isfinite(parameter.grad).all())
    ]
    assert not without_grad, f"no finite gradient reached parameters: {without_grad[:10]}"
    # Outputs are logits, not probabilities: a model ending in a sigmoid cannot produce values
    # outside [0, 1] however its input is scaled, in train or eval mode. (An untrained BatchNorm
    # network in eval mode can by chance map everything into [0, 1], so both modes are tried.)
    probe = torch.randn(batch_size, in_channels, height, width) * 10
    outside = False
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            big = model(probe)
        outside = outside or bool(big.min() < 0 or big.max() > 1)
    assert outside, "outputs all lie in [0, 1]: the model must return logits, not probabilities"

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    clone = factory(in_channels=in_channels, out_channels=out_channels, **(options or {}))
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    model.eval()
    clone.eval()
    sample = torch.randn(1, in_channels, height, width)
    with torch.no_grad():
        first, second = model(sample), clone(sample)
    assert first.shape == (1, out_channels, height, width), "eval mode with batch size 1 changed the shape"
    assert torch.allclose(first, second, atol=1e-5), "state_dict round trip changed the outputs"
    return model


def check_loss(name_or_factory: str | Callable, options: dict[str, Any] | None = None) -> None:
    """A loss takes logits and a {0, 1} target of the same shape and returns a finite scalar with
    gradients; a perfect prediction scores lower than a wrong one."""
    factory = _factory("loss", name_or_factory)
    loss_fn = factory(**(options or {}))
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 16, 20, generator=generator) > 0.5).float()
    logits = torch.randn(2, 1, 16, 20, generator=generator, requires_grad=True)
    value = loss_fn(logits, target)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, "loss must return a scalar tensor"
    assert torch.isfinite(value), f"loss is not finite: {value}"
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all(), "loss gives no finite gradient"
    for scale in (1.0, 100.0):
        good = loss_fn((target * 2 - 1) * 10 * scale, target)
        bad = loss_fn((1 - target * 2) * 10 * scale, target)
        assert torch.isfinite(good) and torch.isfinite(bad), (
            f"loss not finite for logits of size {10 * scale}"
        )
        assert good < bad, "a perfect prediction must score lower than the opposite one"


def check_dataset(dataset: Any, max_items: int = 4) -> None:
    """A dataset yields dicts with a float (C, H, W) image, a (1, H, W) mask in {0, 1} and a str name."""
    length = len(dataset)
    assert length > 0, "dataset is empty"
    for index in range(min(length, max_items)):
        sample = dataset[index]
        assert isinstance(sample, dict), f"item {index} is {type(sample).__name__}, not a dict"
        for key in ("image", "mask", "name"):
            assert key in sample, f"item {index} has no {key!r}"
        image, mask = sample["image"], sample["mask"]
        assert isinstance(image, torch.Tensor) and image.is_floating_point(), "image must be a float tensor"
        assert image.dim() == 3, f"image must be (C, H, W), got {tuple(image.shape)}"
        assert torch.isfinite(image).all(), f"image {sample['name']!r} has non-finite values"
        assert isinstance(mask, torch.Tensor) and mask.is_floating_point(), "mask must be a float tensor"
        assert mask.dim() == 3 and mask.shape[0] == 1, f"mask must be (1, H, W), got {tuple(mask.shape)}"
        assert mask.shape[1:] == image.shape[1:], (
            f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size"
        )
        values = set(torch.unique(mask).tolist())
        assert values <= {0.0, 1.0}, f"mask of {sample['name']!r} has values {sorted(values)}, not {{0, 1}}"
        assert isinstance(sample["name"], str) and sample["name"], "name must be a non-empty str"
        if "ignore" in sample:
            ignore = sample["ignore"]
            assert ignore.dtype == torch.bool and ignore.shape == mask.shape, "ignore must be a bool mask"
