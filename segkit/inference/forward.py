"""A model's logits for a batch: the one forward pass that predict, evaluate, validation and tiles share
(float32 whatever autocast computed in; flip test-time augmentation when asked)."""

from __future__ import annotations

import torch

from segkit.execution.fast_path import to_input_format


def model_logits(model: torch.nn.Module, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """``model(images)`` as float32; with ``tta``, averaged with the pass on horizontally flipped
    images (flipped back), the flip test-time augmentation used by predict, evaluate and validation.
    A model with its own ``logits_with_tta`` (``segkit.inference.ensemble.EnsembleModule``: each member
    flipped before the probabilities are averaged) computes them itself."""
    own = getattr(model, "logits_with_tta", None)
    if own is not None:
        return own(images, tta).float()
    logits = model(images).float()
    if tta:
        logits = (logits + model(images.flip(-1)).float().flip(-1)) / 2
    return logits


def input_logits(
    model: torch.nn.Module, device: torch.device, images: torch.Tensor, tta: bool = False
) -> torch.Tensor:
    """Logits of a batch of normalised images, moved to ``device`` in the model's input format first."""
    return model_logits(model, to_input_format(images, device, training=False), tta)
