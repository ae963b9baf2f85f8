"""``SmpModel``: an smp network as a segkit model (any input size, logits, an ``encoder``).

``build_smp_model(key, **options)`` checks segkit's options, builds the smp network (``activation``
None: logits) and wraps it in ``SmpModel``, which pads any height and width to the encoder's output
stride (``segkit.models.AnySizeModel``) and crops the logits back. The wrapped network is the
``network`` submodule (state_dict keys ``network.encoder.*``, ``network.decoder.*``,
``network.segmentation_head.*``); ``model.encoder`` is smp's encoder, which ``segkit run
--freeze-encoder`` freezes. ``model.export_blocker`` says why an architecture cannot be exported
with dynamic sizes (None when it can).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segkit.component_options import (
    Option,
    boolean,
    checked,
    int_at_least,
    optional,
    parse_component_options,
    text,
)
from segkit.errors import SegkitError, UsageError
from segkit.lazy import lazy_module
from segkit.models import IN_CHANNELS, OUT_CHANNELS, PAD_MODE, AnySizeModel
from segkit_smp import encoders
from segkit_smp.architectures import ARCHITECTURES, decoder_arguments

smp = lazy_module("segmentation_models_pytorch")

DEFAULT_ENCODER = "resnet34"


def _widths(value: Any) -> Any:
    """One positive width, or a list of them."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"not positive widths: {value!r}")
    return value if isinstance(value, int) else list(value)


OPTIONS = {
    "in_channels": IN_CHANNELS,
    "out_channels": OUT_CHANNELS,
    "encoder": Option(
        DEFAULT_ENCODER,
        text,
        help="smp encoder (resnet18, mobilenet_v2, efficientnet-b0, mit_b0, ...) or a timm one as tu-NAME "
        "(tu-resnet10t, tu-convnext_atto)",
    ),
    "encoder_depth": Option(
        None,
        optional(checked(int_at_least(3), lambda depth: depth <= 5, "an integer from 3 to 5")),
        help="encoder stages used (3-5; each halves the resolution); default: the architecture's",
    ),
    "decoder_channels": Option(
        None,
        optional(checked(_widths, lambda _: True, "a positive width or a list of them")),
        "a positive width, a list of widths (unet, unetplusplus, manet: one per stage), or none",
        help="decoder width(s): a list, deepest first, for unet/unetplusplus/manet ([256,128,64,32,16]); "
        "one width for the others; default: smp's",
    ),
    "pretrained": Option(
        False,
        boolean,
        help="load the encoder's ImageNet weights (smp's/timm's download, cached in the Hugging Face cache)",
    ),
    "pad_mode": PAD_MODE,
}


class SmpModel(AnySizeModel):
    """An smp segmentation network taking any input size, returning logits."""

    def __init__(
        self,
        network: nn.Module,
        in_channels: int,
        out_channels: int,
        size_multiple: int = 32,
        pad_mode: str = "reflect",
        export_blocker: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, size_multiple=size_multiple, pad_mode=pad_mode)
        self.network = network
        #: Why ``segkit export`` must refuse this model (None: it exports with dynamic sizes).
        self.export_blocker = export_blocker

    @property
    def encoder(self) -> nn.Module:
        """smp's encoder (pretrained part); ``--freeze-encoder`` freezes it."""
        return self.network.encoder

    def forward_padded(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)


def _architecture_default_depth(smp_class: Any) -> int:
    return int(inspect.signature(smp_class).parameters["encoder_depth"].default)


def _network(smp_class: Any, arguments: dict[str, Any]) -> nn.Module:
    with warnings.catch_warnings():  # smp's deprecation notes about timm- encoders and the like
        warnings.simplefilter("ignore")
        return smp_class(**arguments)


def build_smp_model(key: str, **options: Any) -> SmpModel:
    """smp architecture ``key`` (see ``ARCHITECTURES``) with segkit's options (``OPTIONS``)."""
    name = f"smp_{key}"
    parsed = parse_component_options("model", name, options, OPTIONS)
    architecture = ARCHITECTURES[key]
    encoder = parsed["encoder"]
    encoders.check_encoder(name, encoder)
    smp_class = getattr(smp, architecture.smp_class)
    depth = parsed["encoder_depth"] or _architecture_default_depth(smp_class)
    arguments = {
        "encoder_name": encoder,
        "encoder_depth": depth,
        "encoder_weights": None,
        "in_channels": parsed["in_channels"],
        "classes": parsed["out_channels"],
        "activation": None,
        **decoder_arguments(key, parsed["decoder_channels"], depth),
        **architecture.extra,
    }
    try:
        looked = probe(key, smp_class, arguments)
    except SegkitError:
        raise
    except Exception as error:  # noqa: BLE001 - smp and timm refuse combinations with many types
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"model {name!r} cannot be built with encoder={encoder}, encoder_depth={depth}: {first}"
        ) from None
    if parsed["pretrained"]:
        arguments["encoder_weights"] = encoders.smp_weights(encoder)
        try:
            network = _network(smp_class, arguments)
        except Exception as error:  # noqa: BLE001 - network, hub, hash and file errors all mean the same
            raise encoders.download_error(name, encoder, error) from None
    else:
        network = _network(smp_class, arguments)
    for module_name in looked.dead:  # never run: dropped (their BatchNorms would also stay unfolded)
        parent, _, child = module_name.rpartition(".")
        setattr(network.get_submodule(parent) if parent else network, child, nn.Identity())
    for parameter_name, parameter in network.named_parameters():
        if parameter_name in looked.unused:
            parameter.requires_grad_(False)
    return SmpModel(
        network,
        parsed["in_channels"],
        parsed["out_channels"],
        looked.multiple,
        parsed["pad_mode"],
        architecture.export_blocker,
    )


@dataclass(frozen=True)
class Probe:
    """What one forward pass of a network without weights says about it: the padding ``multiple``,
    the ``dead`` submodules (never called, every parameter unused: an encoder's classifier it keeps,
    the stages beyond ``encoder_depth``) and the ``unused`` parameters (the logits do not depend on
    them) of the rest."""

    multiple: int
    dead: tuple[str, ...]
    unused: frozenset[str]


def probe(key: str, smp_class: Any, arguments: dict[str, Any]) -> Probe:
    """Build the network once without weights to check the combination and look at one forward pass:
    on the meta device (a moment, no memory), or on the CPU for the few encoders that cannot be built
    there (mit_b0's drop-path schedule reads tensor values)."""
    try:
        with torch.device("meta"):
            return look_at(key, _network(smp_class, arguments), arguments["in_channels"])
    except Exception:  # noqa: BLE001 - tried again on the CPU, which says what is wrong if anything is
        with torch.device("cpu"):
            return look_at(key, _network(smp_class, arguments), arguments["in_channels"])


def size_multiple(key: str, network: nn.Module) -> int:
    """What height and width must be multiples of: the encoder's output stride, times the further
    halvings of an architecture that downsamples beyond it (PAN's feature pyramid attention: 8)."""
    stride = int(getattr(network.encoder, "output_stride", 32))
    return stride * ARCHITECTURES[key].extra_downsampling


def look_at(key: str, network: nn.Module, in_channels: int) -> Probe:
    """Run one forward pass, recording which submodules are called, and walk the autograd graph of
    the logits back to the parameters they depend on."""
    multiple = size_multiple(key, network)
    called: set[int] = set()
    hooks = [
        module.register_forward_pre_hook(lambda module, args: called.add(id(module)))
        for module in network.modules()
    ]
    network.train()
    try:
        with torch.enable_grad():
            logits = network(torch.zeros(2, in_channels, 2 * multiple, 2 * multiple))
    finally:
        for hook in hooks:
            hook.remove()
    reached: set[int] = set()
    seen: set[Any] = set()
    pending = [logits.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf tensor, i.e. a parameter
        if variable is not None:
            reached.add(id(variable))
        pending.extend(next_node for next_node, _ in node.next_functions)
    unused = frozenset(name for name, parameter in network.named_parameters() if id(parameter) not in reached)
    dead: list[str] = []
    for name, module in network.named_modules():
        if not name or any(name.startswith(outer + ".") for outer in dead):
            continue
        parameters = list(module.parameters())
        if id(module) not in called and parameters and all(id(p) not in reached for p in parameters):
            dead.append(name)
    in_dead = {
        f"{outer}.{name}" for outer in dead for name, _ in network.get_submodule(outer).named_parameters()
    }
    return Probe(multiple, tuple(dead), unused - in_dead)
