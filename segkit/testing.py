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

from segkit.components import get_component
from segkit.losses import loss_tasks

ODD_SIZES = ((97, 131), (64, 64), (33, 50))


def _factory(kind: str, name_or_factory: str | Callable) -> Callable:
    if isinstance(name_or_factory, str):
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
            f"input {tuple(images.shape)} gave output {tuple(logits.shape)}, expected {expected}: a model "
            "returns out_channels logits at the input's own height and width, for any height and width "
            "(segkit.models.AnySizeModel pads the input to what the network needs and crops the logits)"
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
    assert outside, (
        "outputs all lie in [0, 1]: the model must return logits, not probabilities (drop the final "
        "sigmoid or softmax: segkit's losses, metrics and predict apply it themselves)"
    )

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


def check_loss(
    name_or_factory: str | Callable, options: dict[str, Any] | None = None, task: str | None = None
) -> None:
    """A loss returns a finite scalar with finite gradients, and a perfect prediction scores lower
    than a wrong one. ``task`` ("binary", "multilabel" or "multiclass") is the contract checked:
    by default every task a registered loss names in its ``tasks`` metadata (a factory: binary).

    - binary: logits ``(N, 1, H, W)`` and a {0, 1} float target of that shape;
    - multilabel: logits ``(N, K, H, W)`` and a {0, 1} float target of that shape;
    - multiclass: logits ``(N, K, H, W)`` and an int64 ``(N, H, W)`` target of class ids, 255 where
      a pixel is ignored (which must change neither the value nor the gradient)."""
    factory = _factory("loss", name_or_factory)
    tasks: tuple[str, ...]
    if task is None:
        tasks = ("binary",)
        if isinstance(name_or_factory, str):
            tasks = loss_tasks(get_component("loss", name_or_factory).metadata)
    else:
        tasks = (task,)
    for kind in tasks:
        loss_fn = factory(**(options or {}))
        if kind == "multiclass":
            _check_multiclass_loss(loss_fn)
        else:
            _check_sigmoid_loss(loss_fn, channels=1 if kind == "binary" else 3)


def _check_finite_with_gradient(loss_fn: Callable, logits: torch.Tensor, target: torch.Tensor) -> None:
    value = loss_fn(logits, target)
    assert isinstance(value, torch.Tensor) and value.dim() == 0, (
        "loss must return a scalar tensor, got "
        + (f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__)
        + " (reduce it, e.g. with .mean())"
    )
    assert torch.isfinite(value), f"loss is not finite: {value}"
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all(), "loss gives no finite gradient"


def _check_sigmoid_loss(loss_fn: Callable, channels: int) -> None:
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(2, channels, 16, 20, generator=generator) > 0.5).float()
    logits = torch.randn(2, channels, 16, 20, generator=generator, requires_grad=True)
    _check_finite_with_gradient(loss_fn, logits, target)
    _check_perfect_beats_wrong(loss_fn, target, target, "the opposite one", "opposite")


def _check_multiclass_loss(loss_fn: Callable, classes: int = 3) -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, classes, (2, 16, 20), generator=generator)
    target[:, :2] = 255  # ignored rows
    logits = torch.randn(2, classes, 16, 20, generator=generator, requires_grad=True)
    _check_finite_with_gradient(loss_fn, logits, target)
    assert logits.grad is not None and not logits.grad[:, :, :2].any(), "ignored pixels (255) got a gradient"
    changed = logits.detach().clone()
    changed[:, :, :2] = 1e4  # anything at ignored pixels
    assert torch.isclose(loss_fn(changed, target), loss_fn(logits.detach(), target)), (
        "logits at ignored pixels (255) changed the loss"
    )
    one_hot = torch.nn.functional.one_hot(target.clamp(max=classes - 1), classes).permute(0, 3, 1, 2).float()
    _check_perfect_beats_wrong(loss_fn, one_hot, target, "a wrong one", "wrong")


def _check_perfect_beats_wrong(
    loss_fn: Callable, truth: torch.Tensor, target: torch.Tensor, than: str, name: str
):
    """Logits of +-10 (and +-1000) saying ``truth`` (a {0, 1} channel map) must score lower than
    logits saying its opposite, and both must be finite."""
    for scale in (1.0, 100.0):
        good = loss_fn((truth * 2 - 1) * 10 * scale, target)
        bad = loss_fn((1 - truth * 2) * 10 * scale, target)
        assert torch.isfinite(good) and torch.isfinite(bad), (
            f"loss not finite for logits of size {10 * scale}"
        )
        assert good < bad, (
            f"a perfect prediction must score lower than {than} (perfect {float(good):.4g}, "
            f"{name} {float(bad):.4g}, logits of size {10 * scale:g}): a loss is minimised by training"
        )


def check_dataset(dataset: Any, max_items: int = 4) -> None:
    """A dataset yields dicts with a float (C, H, W) image, a mask and a non-empty str name; the mask
    follows the dataset's ``task`` (see the ``register_datasets`` hook):

    - binary (no ``task`` attribute): a float ``(1, H, W)`` mask in {0, 1};
    - multiclass: an int64 ``(1, H, W)`` mask of ids in ``[0, K)`` or 255, K = ``len(class_names)``;
    - multilabel: a float ``(K, H, W)`` mask in {0, 1}.

    ``ignore``, where given, is a bool mask of the mask's shape."""
    length = len(dataset)
    assert length > 0, "dataset is empty"
    task = getattr(dataset, "task", "binary") or "binary"
    assert task in ("binary", "multiclass", "multilabel"), f"unknown task {task!r}"
    classes = len(getattr(dataset, "class_names", None) or ())
    if task != "binary":
        assert classes >= (2 if task == "multiclass" else 1), f"a {task} dataset must name its classes"
    for index in range(min(length, max_items)):
        sample = dataset[index]
        assert isinstance(sample, dict), f"item {index} is {type(sample).__name__}, not a dict"
        for key in ("image", "mask", "name"):
            assert key in sample, f"item {index} has no {key!r}"
        image, mask, name = sample["image"], sample["mask"], sample["name"]
        assert isinstance(image, torch.Tensor) and image.is_floating_point(), "image must be a float tensor"
        assert image.dim() == 3, f"image must be (C, H, W), got {tuple(image.shape)}"
        assert torch.isfinite(image).all(), f"image {name!r} has non-finite values"
        assert isinstance(mask, torch.Tensor) and mask.dim() == 3, "mask must be a (C, H, W) tensor"
        assert mask.shape[1:] == image.shape[1:], (
            f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size"
        )
        values = set(torch.unique(mask).tolist())
        if task == "multiclass":
            assert mask.dtype == torch.int64 and mask.shape[0] == 1, (
                f"a multiclass mask must be int64 (1, H, W), got {mask.dtype} {tuple(mask.shape)}"
            )
            wrong = sorted(value for value in values if not (0 <= value < classes or value == 255))
            assert not wrong, (
                f"mask of {name!r} has ids {wrong}: not in 0..{classes - 1} (the {classes} class_names) "
                "nor 255 (ignore)"
            )
        else:
            channels = 1 if task == "binary" else classes
            assert mask.is_floating_point(), f"a {task} mask must be a float tensor, got {mask.dtype}"
            assert mask.shape[0] == channels, f"mask must be ({channels}, H, W), got {tuple(mask.shape)}"
            assert values <= {0.0, 1.0}, (
                f"mask of {name!r} has values {sorted(values)}, not {{0, 1}} (divide 0/255 masks by 255; "
                "pixels that must not count go in 'ignore', not in the mask)"
            )
        assert isinstance(name, str) and name, "name must be a non-empty str"
        if "ignore" in sample:
            ignore = sample["ignore"]
            assert ignore.dtype == torch.bool and ignore.shape == mask.shape, "ignore must be a bool mask"
