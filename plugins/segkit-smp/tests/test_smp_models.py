"""segkit-smp's models: the conformance kit over architectures and encoders, the options, the errors.

Run from this folder with ``python -m pytest`` (the plugin installed: ``pip install -e .``), or from
segkit's root, whose test command installs it. Nothing here downloads anything.
"""

from __future__ import annotations

import pytest
import torch
from segkit_smp import ARCHITECTURES, SmpModel
from segkit_smp.encoders import nearest_encoders

import segkit
from segkit.errors import UsageError
from segkit.testing import check_model

#: Odd sizes, small so that the suite stays fast: none is a multiple of any architecture's stride.
ODD = ((33, 50), (17, 9))

#: (architecture, encoder, more options): seven architectures, six encoders (two from timm).
CONFORMING = [
    ("unet", "resnet18", {}),
    ("fpn", "mobilenet_v2", {}),
    ("deeplabv3plus", "efficientnet-b0", {}),
    ("linknet", "tu-resnet10t", {}),
    ("pspnet", "mobilenet_v2", {}),
    ("unetplusplus", "tu-resnet10t", {"encoder_depth": 3}),
    ("pan", "tu-resnet10t", {}),
    ("segformer", "mit_b0", {}),
    ("upernet", "tu-mobilenetv3_small_050", {}),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("architecture, encoder, options", CONFORMING, ids=lambda v: str(v) if v else "")
def test_architecture_and_encoder_meet_the_model_contract(architecture, encoder, options):
    model = check_model(
        f"smp_{architecture}", {"encoder": encoder, **options}, in_channels=2, out_channels=3, sizes=ODD
    )
    assert isinstance(model, SmpModel) and isinstance(model.encoder, torch.nn.Module)
    assert model.encoder is model.network.encoder


def test_every_architecture_is_registered_and_builds_on_the_meta_device():
    registered = {component.name for component in segkit.list_components("model")}
    assert {f"smp_{key}" for key in ARCHITECTURES} <= registered
    assert len(ARCHITECTURES) >= 10
    for key in ARCHITECTURES:
        with torch.device("meta"):
            model = segkit.create_model(f"smp_{key}", in_channels=4, out_channels=2)
        assert model.size_multiple % 8 == 0, key


def test_what_the_logits_do_not_use_is_dropped_or_frozen():
    # smp's EfficientNet keeps its classifier's conv head (never run: dropped); PSPNet uses 3 of the
    # encoder's 5 stages, and this encoder still runs its sixth block (run, unused: frozen)
    model = segkit.create_model("smp_pspnet", encoder="efficientnet-b0")
    assert isinstance(model.encoder._conv_head, torch.nn.Identity)
    assert "network.encoder._conv_head.weight" not in model.state_dict()
    frozen = [name for name, parameter in model.named_parameters() if not parameter.requires_grad]
    assert "network.encoder._blocks.5._expand_conv.weight" in frozen
    assert not any(name.startswith(("network.decoder", "network.segmentation_head")) for name in frozen)
    resnet = segkit.create_model("smp_pspnet", encoder="resnet18")  # layer3 and layer4: never run
    assert isinstance(resnet.encoder.layer4, torch.nn.Identity)
    assert all(parameter.requires_grad for parameter in resnet.parameters())


def test_decoder_channels_and_encoder_depth():
    model = segkit.create_model(
        "smp_unet", encoder="tu-resnet10t", encoder_depth=3, decoder_channels=[32, 16, 8]
    )
    assert model.size_multiple == 8
    assert model.network.segmentation_head[0].in_channels == 8
    fpn = segkit.create_model("smp_fpn", encoder="mobilenet_v2", decoder_channels=64)
    assert fpn.network.decoder.p5.out_channels == 64


@pytest.mark.parametrize(
    "model, options, message",
    [
        ("smp_unet", {"encoder_depth": 3, "decoder_channels": [8, 8]}, "one width per decoder stage"),
        ("smp_linknet", {"decoder_channels": 8}, "takes no decoder_channels"),
        ("smp_fpn", {"decoder_channels": [8, 8]}, "one width"),
        ("smp_unet", {"encoder_depth": 7}, "encoder_depth"),
        ("smp_unet", {"encoder": "tu-vit_tiny_patch16_224"}, "cannot be built with encoder"),
        ("smp_unet", {"encodr": "resnet18"}, "did you mean 'encoder'"),
    ],
)
def test_bad_options_are_usage_errors(model, options, message):
    with pytest.raises(UsageError, match=message):
        segkit.create_model(model, **options)


@pytest.mark.parametrize(
    "typed, suggested",
    [("resnet81", "resnet18"), ("efficentnet-b0", "efficientnet-b0"), ("tu-resnet10", "tu-resnet10t")],
)
def test_an_unknown_encoder_suggests_the_nearest_names(typed, suggested):
    with pytest.raises(UsageError) as error:
        segkit.create_model("smp_fpn", encoder=typed)
    message = str(error.value)
    assert f"unknown encoder {typed!r}" in message and suggested in message and "\n" not in message
    assert suggested in nearest_encoders(typed)


def test_export_blocker_marks_the_pyramid_pooling_architectures():
    blocked = {key for key, architecture in ARCHITECTURES.items() if architecture.export_blocker}
    assert blocked == {"pspnet", "upernet"}
    with torch.device("meta"):
        assert segkit.create_model("smp_pspnet").export_blocker
        assert segkit.create_model("smp_fpn").export_blocker is None


def test_models_command_describes_a_chosen_encoder():
    from segkit.models import describe_model

    row = describe_model("smp_fpn", 64, encoder="mobilenet_v2")
    assert 2e6 < row["parameters"] < 6e6 and row["flops"] > 0


#: (architecture, encoder, whether segkit.execution.fast_path folds every BatchNorm: not timm's deep
#: stem, whose BatchNorm follows a Sequential of convolutions, nor the blocks of a dilated stage fx
#: cannot trace).
FAST_PATHS = [
    ("fpn", "mobilenet_v2", True),
    ("pspnet", "resnet18", True),
    ("deeplabv3plus", "tu-resnet10t", False),
]


@pytest.mark.parametrize("architecture, encoder, folds_all", FAST_PATHS)
def test_segkits_fast_paths_compute_what_the_plain_model_computes(architecture, encoder, folds_all):
    """segkit.execution.fast_path's inference copy (BatchNorm folded, channels_last) and training path
    (dropout off: it draws its masks in memory order) give the plain model's logits."""
    import copy

    from torch import nn

    from segkit.execution.fast_path import prepare_for_inference, prepare_for_training, to_input_format

    torch.manual_seed(0)
    model = segkit.create_model(f"smp_{architecture}", encoder=encoder).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics, as after training
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.25, 1.75)
    images = torch.randn(2, 3, 40, 56)
    fast = prepare_for_inference(model, "cpu", channels_last=True, threads=0)
    with torch.inference_mode():
        expected, got = model(images), fast(to_input_format(images, "cpu", channels_last=True))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    unfolded = [module for module in fast.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    assert not unfolded or not folds_all

    plain = model.train()
    trained = prepare_for_training(copy.deepcopy(plain), "cpu", channels_last=True, threads=0)
    for network in (plain, trained):
        for module in network.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.eval()
    with torch.no_grad():
        expected = plain(images)
        got = trained(to_input_format(images, "cpu", channels_last=True, training=True))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
