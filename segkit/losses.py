"""The base every segmentation loss builds on, and the functional math losses share.

A loss is an ``nn.Module`` called as ``loss(logits, target, ignore=None)``:

- ``logits``: raw network outputs ``(N, C, H, W)`` (no sigmoid applied);
- ``target``: ``{0, 1}`` float mask of the same shape;
- ``ignore``: optional bool tensor of the same shape, True where pixels must not count (e.g. the
  Oxford-IIIT Pet trimap border). Ignored pixels contribute nothing to the value or the gradient,
  whatever their logits or target values (NaN and 255 included).

Subclass ``SegmentationLoss`` and implement ``compute(logits, target, valid)``: the base checks the
inputs, neutralises ignored pixels and runs ``compute`` in float32 with autocast disabled, so bf16 or
fp16 training cannot overflow the sums. ``valid`` is a float32 mask, 1 where a pixel counts. Declare
the factory's options with ``segkit.component_options``. A plugin's loss::

    import torch
    from segkit.losses import SegmentationLoss, valid_mean

    class SquaredErrorLoss(SegmentationLoss):
        def compute(self, logits, target, valid):
            return valid_mean((torch.sigmoid(logits) - target) ** 2, valid)
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.errors import DataError

__all__ = ["SegmentationLoss", "prepare", "soft_dice_coefficient", "soft_tversky_index", "valid_mean"]


class SegmentationLoss(nn.Module):
    """Base class: validates inputs, neutralises ignored pixels and computes in float32."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None):
        # The float32 casts in ``prepare`` cover today's element-wise terms; disabling autocast also
        # keeps any autocast-listed op a future term adds (a convolution, a matmul) in float32.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target, valid = prepare(logits, target, ignore)
            return self.compute(logits, target, valid)

    def compute(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The loss value from float32 ``logits`` and ``target`` (ignored pixels zeroed) and the
        float32 ``valid`` mask (1 where a pixel counts)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute(logits, target, valid)")


def prepare(
    logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 logits and target with ignored pixels neutralised, and a float32 mask of valid pixels.

    Ignored entries are replaced (not just multiplied by zero) so that NaN or 255 there cannot leak
    into sums or gradients: ``0 * nan`` is still ``nan``.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise DataError("a loss takes tensors: loss(logits, target, ignore=None)")
    if logits.shape != target.shape:
        raise DataError(
            f"loss: target shape {tuple(target.shape)} differs from logits shape {tuple(logits.shape)}; "
            "both must be (N, C, H, W) (does the model's out_channels match the masks?)"
        )
    logits = logits.float()
    target = target.float()
    if ignore is None:
        return logits, target, torch.ones_like(logits)
    if ignore.shape != logits.shape:
        raise DataError(
            f"loss: ignore shape {tuple(ignore.shape)} differs from logits shape {tuple(logits.shape)}"
        )
    if ignore.dtype != torch.bool:
        raise DataError(f"loss: ignore must be a bool tensor (True = pixel ignored), got {ignore.dtype}")
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    return torch.where(ignore, zero, logits), torch.where(ignore, zero, target), (~ignore).float()


def _sum_dims(tensor: torch.Tensor, per_image: bool) -> torch.Tensor:
    """Sums over each image (shape ``(N,)``) or over the whole batch (a 1-element tensor)."""
    if per_image:
        return tensor.flatten(1).sum(dim=1)
    return tensor.sum().reshape(1)


def soft_tversky_index(
    probabilities: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    alpha: float,
    beta: float,
    smooth: float,
    per_image: bool,
) -> torch.Tensor:
    """Soft Tversky index ``(2 TP + s) / (2 TP + 2 alpha FP + 2 beta FN + s)``, per image or per batch.

    Written with the factor 2 so that ``alpha = beta = 0.5`` is exactly the soft Dice
    ``(2 TP + s) / (sum p + sum t + s)`` with the same ``smooth`` s (it is ``TP / (TP + alpha FP +
    beta FN)`` of Salehi et al. 2017 with smoothing s / 2). alpha weighs false positives, beta false
    negatives: beta > alpha favours recall.
    """
    probabilities = probabilities * valid
    target = target * valid
    true_positive = _sum_dims(probabilities * target, per_image)
    false_positive = _sum_dims(probabilities * (1 - target), per_image)
    false_negative = _sum_dims((1 - probabilities) * target, per_image)
    numerator = 2 * true_positive + smooth
    return numerator / (numerator + 2 * alpha * false_positive + 2 * beta * false_negative)


def soft_dice_coefficient(
    probabilities: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float, per_image: bool
) -> torch.Tensor:
    """Soft Dice ``(2 sum(p t) + s) / (sum p + sum t + s)`` over valid pixels, per image or per batch."""
    probabilities = probabilities * valid
    target = target * valid
    intersection = _sum_dims(probabilities * target, per_image)
    total = _sum_dims(probabilities, per_image) + _sum_dims(target, per_image)
    return (2 * intersection + smooth) / (total + smooth)


def valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over valid pixels; an all-ignored batch gives 0 (with a graph), not 0 / 0."""
    return (values * valid).sum() / valid.sum().clamp_min(1.0)
