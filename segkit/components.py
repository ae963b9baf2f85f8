"""Components by kind and name, from the registries the plugin host built: the functions every layer
uses to build a model, a loss, a dataset or a callback by its registered name.

``segkit.create_model`` and the rest of the package root's API are these functions; modules inside
segkit import them from here (never the package root), so no core module depends on the top layer.
"""

from __future__ import annotations

from typing import Any

from segkit.plugins import get_host
from segkit.registry import KINDS, Component


def get_component(kind: str, name: str) -> Component:
    """The registered component of ``kind`` called ``name`` (raises ``UnknownComponentError``)."""
    return get_host().registry(kind).get(name)


def list_components(kind: str | None = None) -> list[Component]:
    """Every registered component, or those of one kind, sorted by kind then name."""
    kinds = KINDS if kind is None else (kind,)
    return [component for each in kinds for component in get_host().registry(each)]


def create_model(name: str, in_channels: int = 3, out_channels: int = 1, **options: Any):
    """Build a registered model: an ``nn.Module`` mapping images to logits."""
    return get_component("model", name).factory(in_channels=in_channels, out_channels=out_channels, **options)


def create_loss(name: str, **options: Any):
    """Build a registered loss taking ``(logits, target)``."""
    return get_component("loss", name).factory(**options)


def create_dataset(name: str, **options: Any):
    """Build a registered dataset, e.g. ``create_dataset("oxford_pet", root=DIR, split="test")``."""
    return get_component("dataset", name).factory(**options)


def create_callback(name: str, **options: Any):
    """Build a registered training callback."""
    return get_component("callback", name).factory(**options)
