"""The Python API: the same registries the CLI uses, for notebooks and scripts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from segkit.plugins import get_host
from segkit.registry import KINDS, Component

if TYPE_CHECKING:
    from segkit.inference import TrainedModel


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


def load_model(run_or_checkpoint: str | os.PathLike, device: str = "cpu") -> TrainedModel:
    """A trained model, ready for inference, from a run folder (its ``best.pt``, else ``last.pt``) or a
    checkpoint file::

        model = segkit.load_model("runs/20261124-101500-unet-bce_dice")
        mask = model.predict("photo.jpg")  # bool (H, W) at the photo's size, as segkit predict makes it
        model.model, model.image_size, model.threshold, model.epoch, model.task.class_names

    The result is a ``segkit.inference.TrainedModel``: ``.model`` is the ``nn.Module`` in eval mode
    (BatchNorm folded) mapping normalised ``(N, C, H, W)`` images to logits; ``.predict(image)``
    resizes, normalises, predicts and thresholds with the run's own inference choices. Checkpoints
    load with ``torch.load(weights_only=True)``; a bad one is a ``segkit.errors.CheckpointError``.
    """
    from pathlib import Path

    from segkit.inference import load_trained_model

    return load_trained_model(Path(run_or_checkpoint), device=device)
