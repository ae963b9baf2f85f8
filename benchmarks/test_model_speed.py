"""Inference and training speed of every registered model, fast path against plain eager, and smp.

For each registered model (third-party plugins included) and each mode:

- ``inference``: one eval-mode forward pass under ``torch.inference_mode`` of a batch;
- ``training``: one full step on a batch: ``zero_grad``, forward, loss (``bce_dice`` when
  registered, else BCE with logits), backward, Adam step.

Variants run interleaved (A B C A B C ...) in the same test: ``fast`` (``segkit.execution.fast_path``'s
``prepare_for_inference`` / ``prepare_for_training``, inputs through ``to_input_format``; bf16
autocast on CUDA, as ``segkit run`` does there), ``eager`` (the plain NCHW fp32 path: the model as
built, on the device), ``reference`` (segmentation_models_pytorch's ``Unet("resnet34",
encoder_weights=None, classes=1)`` in channels_last, its fastest plain setting; left out with a
warning when the ``bench`` extra is not installed) and, with ``--bench-compile``, ``compiled``.
``fast`` is what pytest-benchmark records; the others are timed alongside it and stored in
``extra_info["interleaved_with"]``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import segkit
from segkit.errors import UnknownComponentError
from segkit.execution.fast_path import prepare_for_inference, prepare_for_training, to_input_format
from segkit.models import count_flops

SEED = 0
LEARNING_RATE = 1e-3  # the seed report's Adam learning rate


#: Representative encoders of segkit-smp's models, benchmarked beside the defaults when it is installed.
SMP_VARIANTS = (
    "smp_unet:encoder=resnet18",
    "smp_unet:encoder=mobilenet_v2",
    "smp_fpn:encoder=efficientnet-b0",
    "smp_deeplabv3plus:encoder=tu-resnet10t",
    "smp_segformer:encoder=mit_b0",
)


def split_spec(spec: str) -> tuple[str, dict]:
    """``"smp_fpn:encoder=mobilenet_v2:encoder_depth=4"`` -> the model name and its options."""
    from segkit.config.options import parse_options

    name, *pairs = spec.split(":")
    return name, parse_options(pairs, "--bench-models")


def selected_models(config) -> list[str]:
    registered = [component.name for component in segkit.list_components("model")]
    if "smp_unet" in registered:
        registered += list(SMP_VARIANTS)
    requested = [name.strip() for name in config.getoption("--bench-models").split(",") if name.strip()]
    for spec in requested:
        name, _ = split_spec(spec)
        try:
            segkit.get_component("model", name)
        except UnknownComponentError as error:
            raise pytest.UsageError(f"--bench-models: {error}") from None
    return requested or registered


def pytest_generate_tests(metafunc):
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", selected_models(metafunc.config))


# -- building the work ----------------------------------------------------------------------------------


def build_model(spec: str) -> nn.Module:
    """The model a ``--bench-models`` entry names: ``NAME`` or ``NAME:KEY=VALUE:...`` (its options)."""
    name, options = split_spec(spec)
    torch.manual_seed(SEED)
    return segkit.create_model(name, in_channels=3, out_channels=1, **options)


def build_loss() -> nn.Module:
    try:
        return segkit.create_loss("bce_dice")
    except UnknownComponentError:  # built-in plugins disabled: any loss over logits will do
        return nn.BCEWithLogitsLoss()


def make_batch(settings) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    shape = (settings.batch_size, 3, settings.image_size, settings.image_size)
    images = torch.randn(shape, generator=generator)
    masks = (torch.rand((shape[0], 1, *shape[2:]), generator=generator) > 0.5).float()
    return images.to(settings.device), masks.to(settings.device)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, as ``segkit run`` uses there; nothing on the CPU (fp32)."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def count_training_flops(build: callable, image_size: int) -> int:
    """FLOPs of one training step's forward and backward for one image (``FlopCounterMode``: 2 per
    multiply-add of convolutions and matmuls, including the gradients backward computes; the loss
    and the optimizer's elementwise work are not counted). Counted on the ``meta`` device where the
    model can be built there, so nothing is computed."""

    def count(device: str) -> int:
        with torch.device(device):
            model = build().train()
        # Two images: training-mode BatchNorm needs more than one value per channel.
        images = torch.zeros(2, 3, image_size, image_size, device=device)
        with FlopCounterMode(display=False) as counter:
            model(images).float().sum().backward()
        return int(counter.get_total_flops()) // 2

    try:
        return count("meta")
    except Exception:  # noqa: BLE001 - a model that cannot run on "meta" is counted on the CPU
        return count("cpu")


def inference_call(model: nn.Module, images: torch.Tensor, autocast=contextlib.nullcontext):
    def call() -> None:
        with torch.inference_mode(), autocast():
            model(images)

    return call


def training_call(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, autocast=contextlib.nullcontext
):
    loss_fn = build_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def call() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        loss.backward()
        optimizer.step()

    return call


def fast_autocast(device: torch.device):
    return lambda: autocast_for(device)


def build_reference() -> nn.Module | None:
    """smp's ``Unet("resnet34", encoder_weights=None, classes=1)``, the best-known peer of
    resnet34_unet; None (and a warning) without the ``bench`` extra."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        message = "no reference rows: segmentation_models_pytorch is missing (pip install -e '.[bench]')"
        warnings.warn(message, stacklevel=2)
        return None
    torch.manual_seed(SEED)
    return smp.Unet("resnet34", encoder_weights=None, classes=1)


# -- the benchmarks -------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="inference")
def test_inference(speed_runner, variant, bench_settings, model_name):
    device = bench_settings.device
    images, _ = make_batch(bench_settings)
    eager_model = build_model(model_name).to(device).eval()
    flops = count_flops(eager_model, 3, bench_settings.image_size)
    fast_model = prepare_for_inference(build_model(model_name), device)
    fast_images = to_input_format(images, device)
    variants = [
        variant("fast", inference_call(fast_model, fast_images, fast_autocast(device)), flops),
        variant("eager", inference_call(eager_model, images), flops),
    ]
    if bench_settings.compile:
        compiled = prepare_for_inference(build_model(model_name), device, compile=True)
        call = inference_call(compiled, fast_images, fast_autocast(device))
        variants.append(variant("compiled", call, flops))
    reference = build_reference()
    if reference is not None:
        reference_flops = count_flops(reference, 3, bench_settings.image_size)
        reference = reference.to(device).eval().to(memory_format=torch.channels_last)
        cl_images = images.contiguous(memory_format=torch.channels_last)
        call = inference_call(reference, cl_images, fast_autocast(device))
        variants.append(variant("reference", call, reference_flops))
    speed_runner.run(model_name, "inference", variants)


@pytest.mark.benchmark(group="training")
def test_training(speed_runner, variant, bench_settings, model_name):
    device = bench_settings.device
    images, masks = make_batch(bench_settings)
    flops = count_training_flops(lambda: build_model(model_name), bench_settings.image_size)
    fast_model = build_model(model_name)
    fast_call_model = prepare_for_training(fast_model, device)
    fast_images = to_input_format(images, device, training=True)
    eager_model = build_model(model_name).to(device).train()
    variants = [
        variant("fast", training_call(fast_call_model, fast_images, masks, fast_autocast(device)), flops),
        variant("eager", training_call(eager_model, images, masks), flops),
    ]
    if bench_settings.compile:
        compiled = prepare_for_training(build_model(model_name), device, compile=True)
        call = training_call(compiled, fast_images, masks, fast_autocast(device))
        variants.append(variant("compiled", call, flops))
    if build_reference() is not None:
        reference_flops = count_training_flops(build_reference, bench_settings.image_size)
        reference = build_reference().to(device).train().to(memory_format=torch.channels_last)
        cl_images = images.contiguous(memory_format=torch.channels_last)
        call = training_call(reference, cl_images, masks, fast_autocast(device))
        variants.append(variant("reference", call, reference_flops))
    speed_runner.run(model_name, "training", variants)
