"""segkit from Python: ``segkit.train`` (``segkit run``), ``segkit.Run`` (a run folder, with evaluate,
predict, report, export and resume as methods), ``segkit.load_model`` (a trained model for inference)
and the registries the CLI uses (``segkit.components``). The package root re-exports them.

Everything here calls the functions the command line calls, with the same settings table and checks;
where the CLI prints one line and exits, these raise the same message as a ``segkit.errors.SegkitError``
(``UsageError`` for a bad setting, ``DataError`` for bad data, ``CheckpointError`` for a bad checkpoint).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from segkit.api.run import EvaluationResult, ReportPage, Run
from segkit.api.training import train
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
    "EvaluationResult",
    "ReportPage",
    "Run",
    "create_callback",
    "create_dataset",
    "create_loss",
    "create_model",
    "get_component",
    "list_components",
    "load_model",
    "train",
]


def load_model(run_or_checkpoint: str | os.PathLike, device: str = "cpu") -> TrainedModel:
    """A trained model, ready for inference, from a run folder (its ``best.pt``, else ``last.pt``) or a
    checkpoint file::

        model = segkit.load_model("runs/20261124-101500-unet-bce_dice")
        mask = model.predict("photo.jpg")  # bool (H, W) at the photo's size, as segkit predict makes it
        masks = model.predict([numpy_image, pil_image])  # a list of photos: a list of masks
        model.model, model.image_size, model.threshold, model.epoch, model.task.class_names

    The result is a ``segkit.inference.predictor.TrainedModel``: ``.model`` is the ``nn.Module`` in eval mode
    (BatchNorm folded) mapping normalised ``(N, C, H, W)`` images to logits; ``.predict(images)``
    resizes (or tiles), normalises, predicts and thresholds with the run's own inference choices.
    Checkpoints load with ``torch.load(weights_only=True)``; a bad one is a ``segkit.errors.CheckpointError``.
    """
    from pathlib import Path

    from segkit.execution.device import resolve_device
    from segkit.inference.predictor import load_trained_model

    return load_trained_model(Path(run_or_checkpoint), device=resolve_device(device))
