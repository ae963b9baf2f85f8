"""segkit.execution.fast_path: the fast path computes what the plain path computes.

For every model of segkit itself (plugins check theirs with the same functions): the inference copy
(BatchNorm folded, channels_last) gives the plain eval-mode logits, and a model prepared for training
gives the same logits, gradients, updated weights and BatchNorm statistics after one optimizer step,
in train and eval modes. The BatchNorm folding itself is checked on random convolution/BatchNorm
configurations, and refuses the cases where folding would change a result. No timings here: speed is
measured in benchmarks/.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import segkit
from segkit.errors import UsageError
from segkit.execution.fast_path import (
    configure_threads,
    fold_batchnorm,
    physical_cores,
    prepare_for_inference,
    prepare_for_training,
    resolve_channels_last,
    to_input_format,
)

# segkit's own models; a plugin checks its models with the same functions in its own tests (segkit-smp's
# eleven architectures would add minutes here: see plugins/segkit-smp/tests/test_smp_models.py).
MODEL_NAMES = [
    component.name for component in segkit.list_components("model") if component.distribution == "segkit"
]
# Sides that are not multiples of 16 or 32, so the models' pad-and-crop runs too.
HEIGHT, WIDTH = 40, 56
BATCH = 2
# Float32 rounding: folding rescales weights, and channels_last reorders the sums of convolutions.
# Relative tolerance per element, and absolute tolerance as a fraction of the largest magnitude.
RTOL = 1e-4
ATOL_FRACTION = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are small: one intra-op thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training, so a
    folding that ignored one of them would show (fresh BatchNorms are the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(shape, generator=generator) * 1.5 + 0.25)
                if module.affine:
                    module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(shape, generator=generator) * 0.2)
    return model


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorms(segkit.create_model(name, in_channels=3, out_channels=1))


def scale_aware_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal within float32 rounding, relative to the size of the values compared."""
    atol = ATOL_FRACTION * max(float(expected.detach().abs().max()), 1e-3)
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=atol, msg=lambda m: f"{what}: {m}")


# -- every registered model -----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_inference_copy_gives_the_plain_eval_logits(name):
    model = build(name).eval()
    state_before = {key: value.clone() for key, value in model.state_dict().items()}
    images = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    fast = prepare_for_inference(model, "cpu", channels_last=True, threads=0)
    with torch.inference_mode():
        expected = model(images)
        got = fast(to_input_format(images, "cpu", channels_last=True))
        got_nchw_input = fast(images)
    assert got.shape == expected.shape == (BATCH, 1, HEIGHT, WIDTH)
    scale_aware_close(got, expected, f"{name}: fast inference logits")
    scale_aware_close(got_nchw_input, expected, f"{name}: fast inference logits from an NCHW batch")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules()), (
        f"{name}: a BatchNorm was left unfolded"
    )
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    # The model passed in is untouched: still trainable, same state.
    assert model.state_dict().keys() == state_before.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_before[key]), f"{name}: prepare_for_inference changed {key}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_path_gives_the_plain_logits_gradients_and_step(name):
    """channels_last asked for (``"auto"`` trains in NCHW on the CPU, which would compare the plain path
    with itself; channels_last is how segkit trains on CUDA), in float64: a float32 comparison of
    gradients is ill-posed here, as the two layouts round differently and a ReLU whose input lies
    within rounding of 0 passes the gradient in one and not the other (seen: 15-60% of a gradient
    tensor's largest entry in the deepest blocks). In float64 any difference is a real one."""
    plain = build(name).train().double()
    fast_model = copy.deepcopy(plain)
    keys = list(fast_model.state_dict())
    fast = prepare_for_training(fast_model, "cpu", channels_last=True, threads=0)
    assert list(fast_model.state_dict()) == keys, "prepare_for_training renamed state_dict entries"
    convolutions = [p for p in fast_model.parameters() if p.dim() == 4 and p.shape[2:] != (1, 1)]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions), (
        f"{name}: the prepared model's convolution weights are not channels_last"
    )
    # SGD: the step is linear in the gradient (Adam's first steps move every weight by about the
    # learning rate, whatever the gradient's size, which would magnify rounding of near-zero ones).
    plain_optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
    fast_optimizer = torch.optim.SGD(fast_model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(2)
    # Smaller than HEIGHT x WIDTH (float64 convolutions are slow), still no multiple of 16 or 32.
    images = torch.randn(BATCH, 3, 18, 34, generator=generator, dtype=torch.float64)
    masks = (torch.rand(BATCH, 1, 18, 34, generator=generator) > 0.5).double()
    loss_fn = nn.BCEWithLogitsLoss()

    def close(actual, expected, what):
        atol = 1e-10 * max(float(expected.detach().abs().max()), 1e-3)
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=atol, msg=lambda m: f"{what}: {m}")

    expected = plain(images)
    fast_images = to_input_format(images, "cpu", channels_last=True, training=True)
    assert fast_images.is_contiguous(memory_format=torch.channels_last)
    got = fast(fast_images)
    close(got, expected, f"{name}: training-mode logits")
    loss_fn(expected, masks).backward()
    loss_fn(got, masks).backward()
    for (key, plain_param), fast_param in zip(plain.named_parameters(), fast_model.parameters(), strict=True):
        close(fast_param.grad, plain_param.grad, f"{name}: gradient of {key}")
    plain_optimizer.step()
    fast_optimizer.step()
    fast_state = fast_model.state_dict()
    for key, plain_value in plain.state_dict().items():
        fast_value = fast_state[key]
        if plain_value.is_floating_point():
            close(fast_value, plain_value, f"{name}: {key} after one step")
        else:
            assert torch.equal(fast_value, plain_value), f"{name}: {key} after one step"

    plain.eval()
    fast.eval()
    with torch.no_grad():
        close(fast(images), plain(images), f"{name}: eval-mode logits after one step")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_path_in_float32_gives_the_plain_logits(name):
    """The float32 kernels of the channels_last path (oneDNN's) compute the plain training-mode
    logits within float32 rounding (the forward pass is continuous: no ReLU-edge effect)."""
    plain = build(name).train()
    fast = prepare_for_training(copy.deepcopy(plain), "cpu", channels_last=True, threads=0)
    images = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = plain(images)
        got = fast(to_input_format(images, "cpu", channels_last=True, training=True))
    scale_aware_close(got, expected, f"{name}: float32 channels_last training-mode logits")


# -- BatchNorm folding ---------------------------------------------------------------------------------


conv_bn_configs = st.fixed_dictionaries(
    {
        "transposed": st.booleans(),
        "in_channels": st.integers(1, 4),
        "out_channels": st.integers(1, 6),
        "kernel": st.integers(1, 3),
        "stride": st.integers(1, 2),
        "groups": st.sampled_from([1, 2]),
        "bias": st.booleans(),
        "affine": st.booleans(),
        "eps": st.sampled_from([1e-5, 1e-3, 0.1]),
        "relu": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def conv_bn_block(config: dict) -> nn.Sequential:
    torch.manual_seed(config["seed"])
    groups = config["groups"]
    in_channels, out_channels = config["in_channels"] * groups, config["out_channels"] * groups
    conv_type = nn.ConvTranspose2d if config["transposed"] else nn.Conv2d
    conv = conv_type(
        in_channels,
        out_channels,
        config["kernel"],
        stride=config["stride"],
        groups=groups,
        bias=config["bias"],
    )
    layers = [conv, nn.BatchNorm2d(out_channels, eps=config["eps"], affine=config["affine"])]
    if config["relu"]:
        layers.append(nn.ReLU(inplace=True))
    return randomize_batchnorms(nn.Sequential(*layers), config["seed"]).eval()


@settings(max_examples=60, deadline=None)
@given(config=conv_bn_configs, height=st.integers(3, 12), width=st.integers(3, 12))
def test_folding_a_conv_and_its_batchnorm_keeps_the_output(config, height, width):
    block = conv_bn_block(config)
    images = torch.randn(2, block[0].in_channels, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = block(images)
        folded = fold_batchnorm(copy.deepcopy(block))
        got = folded(images)
    # Transposed convolutions with groups > 1 are left alone (see segkit.execution.fast_path._foldable).
    should_fold = not (config["transposed"] and config["groups"] > 1)
    assert isinstance(folded[1], nn.Identity) == should_fold
    scale_aware_close(got, expected, f"folded {config}")


class ResidualUse(nn.Module):
    """The conv's output feeds the BatchNorm and a skip: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        features = self.conv(x)
        return self.bn(features) + features


class CalledTwice(nn.Module):
    """The BatchNorm also normalises the input directly: folding would change that call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.bn(x)


class SharedBatchNorm(nn.Module):
    """One BatchNorm object registered in two places (only one of them after a conv)."""

    def __init__(self):
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.second = nn.Sequential(nn.ReLU(), self.first[1])

    def forward(self, x):
        return self.first(x) + self.second(x)


class ScaledConv(nn.Conv2d):
    """A conv subclass whose forward is not the plain convolution of its weights."""

    def forward(self, x):
        return super().forward(x) * 2


class UntraceableTop(nn.Module):
    """Python control flow on the input defeats torch.fx at the top; its children still fold."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        if x.shape[-1] % 2:
            x = x[..., :-1]
        return self.block(x)


@pytest.mark.parametrize(
    "module, folds",
    [
        (ResidualUse(), False),
        (CalledTwice(), False),
        (SharedBatchNorm(), False),
        (nn.Sequential(ScaledConv(3, 3, 1), nn.BatchNorm2d(3)), False),
        (nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.BatchNorm2d(3)), False),
        (UntraceableTop(), True),
    ],
    ids=["residual", "called-twice", "shared", "conv-subclass", "relu-between", "untraceable-top"],
)
def test_folding_only_where_it_keeps_the_result(module, folds):
    module = randomize_batchnorms(module).eval()
    images = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module(images)
        folded = fold_batchnorm(copy.deepcopy(module))
        got = folded(images)
    remaining = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert (remaining == 0) == folds
    scale_aware_close(got, expected, "folding")


def test_folding_refuses_a_model_in_training_mode():
    with pytest.raises(UsageError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train())


# -- threads and memory format -----------------------------------------------------------------------------


def test_physical_cores_is_within_the_cpus_this_process_may_use():
    cores = physical_cores()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= cores <= usable


def test_configure_threads_sets_leaves_and_refuses():
    threads = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads(0) == 1 and torch.get_num_threads() == 1  # 0: left alone
        assert configure_threads() == physical_cores() == torch.get_num_threads()
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(UsageError, match="threads"):
                configure_threads(bad)
    finally:
        torch.set_num_threads(threads)


def test_channels_last_choice():
    assert resolve_channels_last(True, "cpu", training=True) is True
    assert resolve_channels_last(False, "cuda") is False
    assert resolve_channels_last("auto", "cuda") is True
    assert resolve_channels_last("auto", "cuda", training=True) is True
    assert resolve_channels_last("auto", "mps") is False
    # The CPU infers in channels_last but trains in NCHW (see the docstring of resolve_channels_last).
    assert resolve_channels_last("auto", "cpu") is True
    assert resolve_channels_last("auto", "cpu", training=True) is False
    with pytest.raises(UsageError, match="channels_last"):
        resolve_channels_last("yes", "cpu")


@settings(max_examples=20, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)),
    channels_last=st.booleans(),
)
def test_to_input_format_keeps_values_and_sets_the_layout(shape, channels_last):
    images = torch.randn(shape)
    moved = to_input_format(images, "cpu", channels_last=channels_last)
    assert torch.equal(moved, images)
    if channels_last:
        assert moved.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_inference_copy_gives_the_plain_logits():
    """torch.compile is opt-in and takes minutes to compile on a small CPU: slow test."""
    model = randomize_batchnorms(segkit.create_model("unet", base_channels=4)).eval()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fast = prepare_for_inference(model, "cpu", compile=True, threads=0)
    with torch.inference_mode():
        scale_aware_close(fast(images), model(images), "compiled inference")


@pytest.mark.slow
def test_compiled_training_step_gives_the_plain_gradients():
    """torch.compile is opt-in and takes minutes to compile on a small CPU: slow test."""
    plain = randomize_batchnorms(segkit.create_model("unet", base_channels=4)).train()
    fast_model = copy.deepcopy(plain)
    compiled = prepare_for_training(fast_model, "cpu", compile=True, threads=0)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain(images).square().mean().backward()
    compiled(images).square().mean().backward()
    for (key, plain_param), fast_param in zip(plain.named_parameters(), fast_model.parameters(), strict=True):
        scale_aware_close(fast_param.grad, plain_param.grad, f"compiled gradient of {key}")
    assert list(fast_model.state_dict()) == list(plain.state_dict()), "checkpoints come from the model itself"
