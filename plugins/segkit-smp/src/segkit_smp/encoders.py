"""Encoder names and pretrained weights: which names exist, the nearest ones to a misspelt name, and
loading ImageNet weights through smp's and timm's own downloads (cached where those libraries cache:
the Hugging Face Hub cache, ``~/.cache/huggingface/hub`` unless ``HF_HOME`` or ``HF_HUB_CACHE`` says
otherwise).

An encoder is either one of smp's own (``resnet18``, ``mobilenet_v2``, ``efficientnet-b0``, ...:
``segmentation_models_pytorch.encoders.get_encoder_names()``) or any timm model with feature
extraction as ``tu-NAME`` (``tu-resnet10t``, ``tu-convnext_atto``; ``timm.list_models()``).
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from segkit.errors import SegkitError, UsageError
from segkit.lazy import lazy_module

timm = lazy_module("timm")
smp_encoders = lazy_module("segmentation_models_pytorch.encoders")

TIMM_PREFIX = "tu-"


@lru_cache(maxsize=1)
def smp_encoder_names() -> tuple[str, ...]:
    return tuple(smp_encoders.get_encoder_names())


@lru_cache(maxsize=1)
def timm_encoder_names() -> tuple[str, ...]:
    """Every timm architecture as ``tu-NAME`` (not all support feature extraction; building says)."""
    return tuple(TIMM_PREFIX + name for name in timm.list_models())


def is_known_encoder(name: str) -> bool:
    if name.startswith(TIMM_PREFIX):
        return bool(timm.is_model(name[len(TIMM_PREFIX) :]))
    return name in smp_encoder_names()


def nearest_encoders(name: str, count: int = 3) -> list[str]:
    """The names closest to ``name`` among smp's encoders and timm's (as ``tu-NAME``)."""
    candidates = [*smp_encoder_names(), *timm_encoder_names()]
    matches = difflib.get_close_matches(name, candidates, n=count, cutoff=0.6)
    if not matches and not name.startswith(TIMM_PREFIX):  # "resnet10t" -> "tu-resnet10t"
        matches = difflib.get_close_matches(TIMM_PREFIX + name, candidates, n=count, cutoff=0.6)
    return matches


def check_encoder(model_name: str, encoder: str) -> None:
    """An unknown encoder is a ``UsageError`` suggesting the nearest names."""
    if is_known_encoder(encoder):
        return
    nearest = nearest_encoders(encoder)
    hint = f"did you mean {', '.join(nearest)}? " if nearest else ""
    raise UsageError(
        f"model {model_name!r}: unknown encoder {encoder!r}; {hint}smp's encoders: "
        "segmentation_models_pytorch.encoders.get_encoder_names(); any timm model as tu-NAME "
        "(timm.list_models())"
    )


def smp_weights(encoder: str) -> str | bool:
    """The ``encoder_weights`` argument that asks smp for ImageNet weights: ``True`` for ``tu-``
    encoders (timm's default pretrained tag, or the one in the name), else ``"imagenet"`` (or the
    encoder's only published set where it has no ImageNet one)."""
    if encoder.startswith(TIMM_PREFIX):
        return True
    published = list(smp_encoders.encoders[encoder]["pretrained_settings"])
    if not published:
        raise UsageError(f"encoder {encoder!r} has no pretrained weights in smp; use pretrained=false")
    return "imagenet" if "imagenet" in published else published[0]


def weights_cache() -> str:
    """Where smp and timm cache downloaded weights (the Hugging Face Hub cache)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001 - only for the message
        return "~/.cache/huggingface/hub"


def download_error(model_name: str, encoder: str, error: BaseException) -> SegkitError:
    """The one-line error for pretrained weights that could not be had, saying what to do."""
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return SegkitError(
        f"{model_name}: could not load the pretrained weights of encoder {encoder!r} "
        f"({type(error).__name__}{': ' + text if text else ''}). smp and timm download them once from "
        f"the Hugging Face Hub into {weights_cache()}: connect to the internet and retry, or copy that cache "
        "from a machine that has them (HF_HOME moves it; HF_HUB_OFFLINE=1 reads only the cache), or train "
        "from scratch with --model-option pretrained=false"
    )
