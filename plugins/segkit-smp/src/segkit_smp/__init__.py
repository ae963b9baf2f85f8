"""segkit-smp: segmentation_models_pytorch's architectures, with smp and timm encoders, as segkit models.

Registers ``smp_unet``, ``smp_unetplusplus``, ``smp_manet``, ``smp_linknet``, ``smp_fpn``,
``smp_pspnet``, ``smp_deeplabv3``, ``smp_deeplabv3plus``, ``smp_pan``, ``smp_upernet`` and
``smp_segformer``; each takes ``encoder``, ``encoder_depth``, ``decoder_channels``, ``pretrained``
and ``pad_mode`` (``segkit plugins --kind model --options``). smp and timm are imported when a model
is built, not when segkit starts.
"""

from __future__ import annotations

from functools import partial

import segkit
from segkit_smp.architectures import ARCHITECTURES
from segkit_smp.model import OPTIONS, SmpModel, build_smp_model

__all__ = ["ARCHITECTURES", "OPTIONS", "SmpModel", "build_smp_model", "register_models"]


def _factory(key: str):
    factory = partial(build_smp_model, key)
    factory.__doc__ = f"smp's {ARCHITECTURES[key].smp_class} as a segkit model (options: OPTIONS)."
    return factory


@segkit.hookimpl
def register_models(register):
    for key, architecture in ARCHITECTURES.items():
        register(
            f"smp_{key}",
            _factory(key),
            description=f"smp {architecture.summary}; encoder=resnet34 by default",
            options=OPTIONS,
        )
