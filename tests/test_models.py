"""Models: the padding/size helpers of segkit.models, the built-in "unet" and "resnet34_unet", and
the `segkit models` command."""

from __future__ import annotations

import json
import socket
import urllib.error

import pytest
import torch
from click.testing import CliRunner
from fixtures import QUICK, value_texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models import resnet18, resnet34

import segkit
from segkit.config.options import parse_value
from segkit.errors import SegkitError, UsageError
from segkit.models import (
    Padding,
    PadToMultiple,
    count_flops,
    count_parameters,
    describe_model,
)
from segkit.plugins import PluginHost
from segkit.testing import check_model
from segkit_builtin import resnet_unet, unet
from segkit_builtin.resnet_unet import (
    ResNet34Encoder,
    adapt_rgb_filters,
    build_resnet18_unet,
    build_resnet34_unet,
)
from segkit_builtin.unet import build_unet

sides = st.integers(min_value=1, max_value=80)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are small: one intra-op thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet_model():
    torch.manual_seed(0)
    return build_resnet34_unet().eval()


# -- padding -----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    height=sides,
    width=sides,
    multiple=st.sampled_from([1, 2, 8, 16, 32]),
    mode=st.sampled_from(["reflect", "zeros"]),
    channels_last=st.booleans(),
)
def test_padding_reaches_a_multiple_and_crops_back_exactly(height, width, multiple, mode, channels_last):
    images = torch.randn(2, 3, height, width)
    if channels_last:
        images = images.to(memory_format=torch.channels_last)
    padding = Padding.to_multiple(height, width, multiple)
    padded = padding.apply(images, mode)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - height < multiple and padded.shape[-1] - width < multiple
    assert abs(padding.top - padding.bottom) <= 1 and abs(padding.left - padding.right) <= 1
    assert torch.equal(padding.remove(padded), images)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(2, 60), width=st.integers(2, 60), multiple=st.sampled_from([4, 16, 32]))
def test_reflect_padding_mirrors_the_image_and_zeros_padding_adds_zeros(height, width, multiple):
    images = torch.randn(1, 2, height, width)
    padding = Padding.to_multiple(height, width, multiple)
    zeros = padding.apply(images, "zeros")
    assert zeros.abs().sum() == pytest.approx(images.abs().sum().item(), rel=1e-5)
    padded = padding.apply(images, "reflect")
    if padding.top:
        row_above = padded[..., padding.top - 1, padding.left : padding.left + width]
        if max(padding.top, padding.bottom) < height and max(padding.left, padding.right) < width:
            # a mirror does not repeat the edge: the row above the image is its second row
            torch.testing.assert_close(row_above, images[..., 1, :])
        else:  # too small to mirror: edge pixels are repeated instead
            torch.testing.assert_close(row_above, images[..., 0, :])


class NeedsMultipleOf8(nn.Module):
    """Downsamples by 8 and back: fails on a size that is not a multiple of 8."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 4, kernel_size=8, stride=8)
        self.up = nn.ConvTranspose2d(4, 1, kernel_size=8, stride=8)

    def forward(self, images):
        assert images.shape[-2] % 8 == 0 and images.shape[-1] % 8 == 0
        return self.up(self.down(images))


@settings(max_examples=25, deadline=None)
@given(height=sides, width=sides)
def test_pad_to_multiple_wrapper_gives_any_size_network_its_input_size(height, width):
    model = PadToMultiple(NeedsMultipleOf8(), in_channels=1, out_channels=1, size_multiple=8)
    assert model(torch.randn(1, 1, height, width)).shape == (1, 1, height, width)


@pytest.mark.parametrize(
    "images, expected",
    [
        (torch.randn(1, 4, 32, 32), "in_channels=4"),
        (torch.randn(3, 32, 32), r"\(N, 3, H, W\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
        (None, "torch.Tensor"),
    ],
)
def test_bad_input_gets_a_usage_error_not_a_torch_traceback(images, expected):
    model = build_unet(base_channels=2)
    with pytest.raises(UsageError, match=expected):
        model(images)


# -- options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, options, option_named",
    [
        (build_unet, {"base_channels": 0}, "base_channels"),
        (build_unet, {"base_channels": -8}, "base_channels"),
        (build_unet, {"base_channels": 2.5}, "base_channels"),
        (build_unet, {"base_channels": True}, "base_channels"),
        (build_unet, {"base_channels": "64"}, "base_channels"),
        (build_unet, {"base_channels": [8, 16, 32]}, "base_channels"),
        (build_unet, {"base_channels": [8, 16, 0, 64]}, "base_channels"),
        (build_unet, {"pad_mode": "circular"}, "pad_mode"),
        (build_unet, {"in_channels": 0}, "in_channels"),
        (build_unet, {"out_channels": None}, "out_channels"),
        (build_unet, {"base_channel": 16}, "did you mean 'base_channels'"),
        (build_resnet34_unet, {"pretrained": "yes"}, "pretrained"),
        (build_resnet34_unet, {"download_timeout": 0}, "download_timeout"),
        (build_resnet34_unet, {"pad_mode": "edge"}, "pad_mode"),
        (build_resnet34_unet, {"in_channels": -1}, "in_channels"),
        (build_resnet34_unet, {"base_channels": 16}, "has no option 'base_channels'"),
        (build_resnet18_unet, {"pretrained": "yes"}, "resnet18_unet.*pretrained"),
    ],
)
def test_bad_options_raise_a_usage_error_naming_the_option(factory, options, option_named):
    with pytest.raises(UsageError, match=option_named):
        factory(**options)


def test_base_channels_accepts_an_int_or_four_widths():
    assert build_unet(base_channels=8).widths == (8, 16, 32, 64)
    assert build_unet(base_channels=[4, 8, 16, 24]).widths == (4, 8, 16, 24)
    assert count_parameters(build_unet(base_channels=[8, 16, 32, 64])) == count_parameters(
        build_unet(base_channels=8)
    )


@QUICK
@given(
    options=st.dictionaries(
        st.sampled_from(["base_channels", "pad_mode", "depth", "channels"]),
        st.one_of(value_texts.map(parse_value), st.integers(-10, 10**12)),
        max_size=3,
    )
)
def test_unet_options_build_a_model_or_are_refused(options):
    with torch.device("meta"):  # absurd widths allocate nothing
        try:
            model = segkit.create_model("unet", in_channels=3, out_channels=1, **options)
        except UsageError:
            return
    assert isinstance(model, torch.nn.Module)


# -- parameter counts and FLOPs ----------------------------------------------------------------------


def test_full_size_parameter_counts_match_the_seed_report():
    assert abs(count_parameters(build_unet()) - 31.0e6) <= 0.1e6
    assert abs(count_parameters(build_resnet34_unet()) - 29.2e6) <= 0.1e6


def test_resnet18_unet_is_resnet34_unets_lighter_sibling():
    light, full = build_resnet18_unet(), build_resnet34_unet()
    assert abs(count_parameters(light) - 19.0e6) <= 0.1e6
    # torchvision's resnet18 blocks per stage (2, 2, 2, 2) against resnet34's (3, 4, 6, 3), same widths.
    for stage, blocks in zip(("layer1", "layer2", "layer3", "layer4"), (2, 2, 2, 2), strict=True):
        assert len(getattr(light.encoder, stage)) == blocks
        assert (
            getattr(light.encoder, stage)[0].conv1.out_channels
            == getattr(full.encoder, stage)[0].conv1.out_channels
        )
    assert light.head[-1].in_channels == 32 and full.head[-1].in_channels == 64
    assert count_flops(light, 3, (128, 128)) < 0.7 * count_flops(full, 3, (128, 128))


@settings(max_examples=30, deadline=None)
@given(inputs=st.integers(1, 64), outputs=st.integers(1, 64), bias=st.booleans(), frozen=st.booleans())
def test_count_parameters_counts_weights_and_biases_not_buffers(inputs, outputs, bias, frozen):
    model = nn.Sequential(nn.Linear(inputs, outputs, bias=bias), nn.BatchNorm1d(outputs))
    model[0].requires_grad_(not frozen)
    linear = inputs * outputs + (outputs if bias else 0)
    assert count_parameters(model) == linear + 2 * outputs
    assert count_parameters(model, trainable_only=True) == (0 if frozen else linear) + 2 * outputs


@settings(max_examples=25, deadline=None)
@given(
    in_channels=st.integers(1, 8),
    out_channels=st.integers(1, 8),
    kernel=st.sampled_from([1, 3, 5]),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
)
def test_count_flops_of_a_convolution_is_two_per_multiply_add(
    in_channels, out_channels, kernel, height, width
):
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    expected = 2 * in_channels * out_channels * kernel * kernel * height * width
    assert count_flops(conv, in_channels, (height, width)) == expected


def test_unet_flops_scale_with_pixels_and_are_the_same_on_meta_and_cpu():
    model = build_unet(base_channels=4).train()
    small, large = count_flops(model, 3, 64), count_flops(model, 3, (128, 128))
    assert large == 4 * small
    assert model.training, "count_flops must restore training mode"
    with torch.device("meta"):
        on_meta = build_unet(base_channels=4)
    assert count_flops(on_meta, 3, 64) == small


def convolution_flops_by_hooks(model: nn.Module, in_channels: int, size: tuple[int, int]) -> int:
    """2 FLOPs per multiply-add of every convolution, from the shapes its forward hooks see: a
    count that owes nothing to segkit.models (nor to torch's FlopCounterMode)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):  # each input pixel meets out_channels / groups kernels
            total += 2 * inputs[0].numel() * kernel * module.out_channels // module.groups
        else:  # each output pixel sums in_channels / groups kernels
            total += 2 * output.numel() * kernel * module.in_channels // module.groups

    hooks = [
        module.register_forward_hook(count)
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, *size))
    for hook in hooks:
        hook.remove()
    return total


def test_describe_model_reports_size_and_cost_of_a_registered_model():
    description = describe_model("unet", image_size=(64, 96), base_channels=8)
    model = build_unet(base_channels=8)
    # Built on the meta device there, for real here: the weights and biases the real model has.
    assert description["parameters"] == sum(parameter.numel() for parameter in model.parameters())
    assert description["flops"] == convolution_flops_by_hooks(model, 3, (64, 96))
    assert description["gflops"] == pytest.approx(description["flops"] / 1e9)
    assert description["image_size"] == [64, 96]
    assert description["distribution"] == "segkit"


def test_describe_model_of_a_plugin_model_worked_by_hand(model_host):
    """``tiny``: one 3x3 convolution, 3 -> 2 channels, with bias: 3 * 2 * 9 + 2 = 56 parameters;
    at 64 x 96, 6144 output pixels x 2 channels x 27 multiply-adds x 2 = 663,552 FLOPs."""
    description = describe_model("tiny", image_size=(64, 96), out_channels=2)
    assert description["parameters"] == 56
    assert description["flops"] == 663_552
    assert (description["distribution"], description["version"]) == ("segkit-tiny", "2.0")
    with pytest.raises(UsageError, match="image_size"):
        describe_model("unet", image_size=0)
    with pytest.raises(UsageError, match="base_channels"):
        describe_model("unet", base_channels=0)


# -- the model contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("in_channels, out_channels", [(3, 1), (1, 1), (4, 2)])
def test_unet_conforms(in_channels, out_channels):
    check_model("unet", {"base_channels": 4}, in_channels=in_channels, out_channels=out_channels)


@pytest.mark.parametrize("in_channels, out_channels", [(3, 1), (4, 2)])
def test_resnet34_unet_conforms(in_channels, out_channels):
    # Small sizes: a 29M-parameter network costs about a second per backward pass on a CPU.
    check_model(
        "resnet34_unet", in_channels=in_channels, out_channels=out_channels, sizes=((33, 50), (40, 17))
    )


@pytest.mark.parametrize("in_channels, out_channels", [(3, 1), (1, 3)])
def test_resnet18_unet_conforms(in_channels, out_channels):
    check_model(
        "resnet18_unet", in_channels=in_channels, out_channels=out_channels, sizes=((33, 50), (40, 17))
    )


@pytest.mark.parametrize("in_channels, out_channels", [(1, 2), (4, 1)])
def test_resnet34_unet_takes_any_channel_count(in_channels, out_channels):
    model = build_resnet34_unet(in_channels=in_channels, out_channels=out_channels)
    logits = model(torch.randn(2, in_channels, 37, 45))
    assert logits.shape == (2, out_channels, 37, 45)
    logits.mean().backward()
    assert model.encoder.conv1.weight.grad.shape[1] == in_channels
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 37, 45)).shape == (1, out_channels, 37, 45)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 2), height=sides, width=sides, in_channels=st.sampled_from([1, 3, 4]))
def test_unet_output_has_the_input_size(batch, height, width, in_channels):
    model = build_unet(in_channels=in_channels, out_channels=2, base_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(batch, in_channels, height, width)).shape == (batch, 2, height, width)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=sides, width=sides)
def test_resnet34_unet_output_has_the_input_size(resnet_model, height, width):
    with torch.no_grad():
        assert resnet_model(torch.randn(1, 3, height, width)).shape == (1, 1, height, width)


@pytest.mark.parametrize("factory", [lambda: build_unet(base_channels=4), build_resnet34_unet])
def test_channels_last_gives_the_same_logits_and_gradients(factory):
    torch.manual_seed(0)
    model = factory()
    twin = factory()
    twin.load_state_dict(model.state_dict())
    twin = twin.to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 45, 70)
    for train in (True, False):
        model.train(train)
        twin.train(train)
        expected = model(images)
        got = twin(images.to(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        if train:
            got.square().mean().backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in twin.parameters())


# -- ResNet34 encoder and torchvision weights ----------------------------------------------------


def test_encoder_keys_are_torchvision_resnet34_keys():
    torchvision_state = resnet34().state_dict()
    encoder_state = build_resnet34_unet().encoder.state_dict()
    for key, value in encoder_state.items():
        assert key in torchvision_state, f"encoder key {key} is not a torchvision resnet34 key"
        assert torchvision_state[key].shape == value.shape, key
    assert {k for k in torchvision_state if k not in encoder_state} == {"fc.weight", "fc.bias"}


def test_torchvision_state_dict_loads_into_the_encoder():
    torchvision_model = resnet34()
    model = build_resnet34_unet()
    result = model.encoder.load_state_dict(torchvision_model.state_dict(), strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]
    fresh = build_resnet34_unet()
    fresh.encoder.load_torchvision_state_dict(torchvision_model.state_dict())
    for key, value in fresh.encoder.state_dict().items():
        assert torch.equal(value, torchvision_model.state_dict()[key]), key


def test_pretrained_filters_for_other_channel_counts_respond_to_grey_like_rgb():
    rgb = ResNet34Encoder(3)
    rgb.load_torchvision_state_dict(resnet34().state_dict())
    for in_channels in (1, 2, 4):
        other = ResNet34Encoder(in_channels)
        other.load_torchvision_state_dict(rgb.state_dict())
        assert other.conv1.weight.shape[1] == in_channels
        grey = torch.rand(1, 1, 32, 32)
        expected = nn.functional.conv2d(grey.expand(1, 3, 32, 32), adapt_rgb_filters(rgb.conv1.weight, 3))
        got = nn.functional.conv2d(grey.expand(1, in_channels, 32, 32), other.conv1.weight)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    return tmp_path / "checkpoints" / "resnet34-b627a593.pth"


def test_pretrained_weights_come_through_torchvisions_weight_api(empty_hub_cache, monkeypatch):
    served = resnet34().state_dict()
    timeouts = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        timeouts.append(socket.getdefaulttimeout())
        assert url == resnet_unet.IMAGENET_WEIGHTS.url and hash_prefix == "b627a593"
        torch.save(served, destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = build_resnet34_unet(pretrained=True, download_timeout=7)
    assert timeouts == [7.0], "the download must run under a socket timeout"
    assert socket.getdefaulttimeout() is None, "the socket timeout must be restored"
    assert empty_hub_cache.exists()
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, served[key]), key


def test_resnet18_unet_pretrained_loads_torchvisions_resnet18_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    served = resnet18().state_dict()
    fetched = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        fetched.append(url)
        torch.save(served, destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = build_resnet18_unet(pretrained=True)
    assert fetched == [resnet_unet.imagenet_weights("resnet18").url] and "resnet18" in fetched[0]
    assert (tmp_path / "checkpoints" / resnet_unet.weights_file_name("resnet18")).is_file()
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, served[key]), key


def test_failed_download_raises_a_segkit_error_saying_what_to_do(empty_hub_cache, monkeypatch):
    def no_internet(url, destination, hash_prefix=None, progress=True):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_internet)
    with pytest.raises(SegkitError, match="pretrained=False") as error:
        build_resnet34_unet(pretrained=True)
    assert str(empty_hub_cache) in str(error.value)
    assert "download.pytorch.org" in str(error.value)
    assert socket.getdefaulttimeout() is None


def test_corrupt_cached_weights_raise_a_segkit_error(empty_hub_cache):
    empty_hub_cache.parent.mkdir(parents=True)
    empty_hub_cache.write_bytes(b"this is not a checkpoint")
    with pytest.raises(SegkitError, match=str(empty_hub_cache)):
        build_resnet34_unet(pretrained=True)


# -- learning ----------------------------------------------------------------------------------------


def disc_images(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images of one bright disc each, and the disc masks."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for _ in range(count):
        centre = torch.randint(size // 4, 3 * size // 4, (2,), generator=generator)
        radius = int(torch.randint(size // 8, size // 4, (1,), generator=generator))
        mask = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).float()
        noise = 0.3 * torch.randn(3, size, size, generator=generator)
        images.append(mask.expand(3, size, size) + noise)
        masks.append(mask[None])
    return torch.stack(images), torch.stack(masks)


def dice(logits: torch.Tensor, masks: torch.Tensor) -> float:
    """Dice of the thresholded prediction (logit > 0), pooled over the batch."""
    predicted = (logits > 0).float()
    return float(2 * (predicted * masks).sum() / (predicted.sum() + masks.sum()))


def overfit(model: nn.Module, steps: int, lr: float) -> float:
    """Train on four disc images with BCE + soft Dice; the Dice reached on them in eval mode."""
    torch.manual_seed(0)
    images, masks = disc_images(4, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(images)
        probabilities = logits.sigmoid()
        soft_dice = 2 * (probabilities * masks).sum() / (probabilities.sum() + masks.sum())
        (nn.functional.binary_cross_entropy_with_logits(logits, masks) + 1 - soft_dice).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return dice(model(images), masks)


def test_light_unet_overfits_four_discs():
    torch.manual_seed(0)
    assert overfit(build_unet(base_channels=8), steps=50, lr=5e-3) > 0.95


@pytest.mark.slow
def test_resnet34_unet_overfits_four_discs():
    torch.manual_seed(0)
    assert overfit(build_resnet34_unet(), steps=50, lr=1e-3) > 0.95


# -- `segkit models` ---------------------------------------------------------------------------------


class TinyModelPlugin:
    """An inline plugin: one working model and one whose factory is broken."""

    @segkit.hookimpl
    def register_models(self, register):
        def tiny(in_channels=3, out_channels=1):
            return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

        register("tiny", tiny)

        def broken(in_channels=3, out_channels=1):
            raise RuntimeError("weights file missing")

        register("broken", broken, description="never builds")


@pytest.fixture
def model_host(monkeypatch):
    """A process-wide host holding the two built-in model plugins and the inline one only."""
    host = PluginHost(load_entry_points=False)
    host.register_plugin(unet, "unet", "segkit", "0.1.0")
    host.register_plugin(resnet_unet, "resnet_unet", "segkit", "0.1.0")
    host.register_plugin(TinyModelPlugin(), "tiny-plugin", "segkit-tiny", "2.0")
    monkeypatch.setattr("segkit.plugins._host", host)
    return host


def test_models_command_lists_every_model_as_json(model_host):
    from segkit.cli.models_cmd import models

    result = CliRunner().invoke(models, ["--json", "--image-size", "64x96"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert sorted(rows) == ["broken", "resnet18_unet", "resnet34_unet", "tiny", "unet"]
    assert rows["unet"]["parameters"] == count_parameters(build_unet())
    with torch.device("meta"):
        full_unet = build_unet()
    assert rows["unet"]["flops"] == count_flops(full_unet, 3, (64, 96))
    assert rows["unet"]["distribution"] == "segkit" and rows["unet"]["image_size"] == [64, 96]
    assert rows["tiny"]["distribution"] == "segkit-tiny" and rows["tiny"]["parameters"] == 3 * 9 + 1
    assert rows["tiny"]["flops"] == 2 * 3 * 9 * 64 * 96
    assert "weights file missing" in rows["broken"]["error"]


def test_models_command_prints_a_table(model_host):
    from segkit.cli.models_cmd import models

    result = CliRunner().invoke(models, [])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["name", "distribution", "parameters", "GFLOPs@256x256"]
    unet_line = next(line for line in lines if line.startswith("unet "))
    assert "31.04M" in unet_line and "segkit 0.1.0" in unet_line
    assert "cannot be built: RuntimeError: weights file missing" in result.output


@pytest.mark.parametrize("size", ["0", "abc", "64x", "1x2x3", "-5"])
def test_models_command_refuses_a_bad_image_size(model_host, size):
    from segkit.cli.models_cmd import models

    result = CliRunner().invoke(models, ["--image-size", size])
    assert result.exit_code == 2
    assert "--image-size" in result.output
