"""The Python API: the same registries the CLI uses (``segkit.components``), and trained models
loaded for inference, for notebooks and scripts. The package root re-exports it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from segkit.components import (
    create_callback,
    create_dataset,
    create_loss,
    create_model,
    get_component,
    list_components,
)

if TYPE_CHECKING:
    from segkit.inference.predictor import TrainedModel

__all__ = [
    "create_callback",
    "create_dataset",
    "create_loss",
    "create_model",
    "get_component",
    "list_components",
    "load_model",
]


def load_model(run_or_checkpoint: str | os.PathLike, device: str = "cpu") -> TrainedModel:
    """A trained model, ready for inference, from a run folder (its ``best.pt``, else ``last.pt``) or a
    checkpoint file::

        model = segkit.load_model("runs/20261124-101500-unet-bce_dice")
        mask = model.predict("photo.jpg")  # bool (H, W) at the photo's size, as segkit predict makes it
        model.model, model.image_size, model.threshold, model.epoch, model.task.class_names

    The result is a ``segkit.inference.predictor.TrainedModel``: ``.model`` is the ``nn.Module`` in eval mode
    (BatchNorm folded) mapping normalised ``(N, C, H, W)`` images to logits; ``.predict(image)``
    resizes, normalises, predicts and thresholds with the run's own inference choices. Checkpoints
    load with ``torch.load(weights_only=True)``; a bad one is a ``segkit.errors.CheckpointError``.
    """
    from pathlib import Path

    from segkit.inference.predictor import load_trained_model

    return load_trained_model(Path(run_or_checkpoint), device=device)
