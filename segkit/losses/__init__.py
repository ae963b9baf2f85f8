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
the factory's options with ``segkit.config.component_options``. A plugin's loss::

    import torch
    from segkit.losses import SegmentationLoss, valid_mean

    class SquaredErrorLoss(SegmentationLoss):
        def compute(self, logits, target, valid):
            return valid_mean((torch.sigmoid(logits) - target) ** 2, valid)

That contract serves **binary** tasks (one channel) and **multilabel** ones (C independent channels,
each a sigmoid; ``soft_dice_coefficient`` and ``soft_tversky_index`` take ``per_channel=True`` to
score each channel on its own). **Multiclass** tasks (K mutually exclusive classes) have their own
contract and base, ``MulticlassLoss``: ``loss(logits, target, ignore=None)`` with ``(N, K, H, W)``
logits and an ``(N, H, W)`` integer tensor of class indices in ``[0, K)``, where ``ignore_index``
(255 by default) marks pixels that count for nothing. Subclass it and implement ``compute(logits,
target, one_hot, valid)``.

A loss says which tasks it serves when it is registered (``register(..., tasks=("multiclass",))``);
one registered without ``tasks`` is taken to serve binary and multilabel tasks. ``check_loss_task``
refuses a loss for a task it does not serve, naming those that do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit.components import list_components
from segkit.config.component_options import Option, Parser, integer, number, optional
from segkit.errors import DataError, UsageError

__all__ = [
    "SegmentationLoss",
    "MulticlassLoss",
    "prepare",
    "prepare_multiclass",
    "soft_dice_coefficient",
    "soft_tversky_index",
    "valid_mean",
    "class_mean",
    "check_class_weights",
    "check_loss_task",
    "loss_tasks",
    "losses_for_task",
    "class_weights",
    "CLASS_WEIGHTS",
    "IGNORE_INDEX",
    "DEFAULT_LOSS_TASKS",
]

#: The target value of pixels a multiclass loss ignores, unless a loss is given another ``ignore_index``.
IGNORE_INDEX = 255
#: The tasks a loss registered without ``tasks=`` serves.
DEFAULT_LOSS_TASKS = ("binary", "multilabel")
#: Class weights beyond this overflow float32 sums; none is sensible.
MAX_CLASS_WEIGHT = 1e6


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


def _sum_dims(tensor: torch.Tensor, per_image: bool, per_channel: bool = False) -> torch.Tensor:
    """Sums over each image (shape ``(N,)``) or over the whole batch (a 1-element tensor); with
    ``per_channel``, over each channel of each image (``(N, C)``) or of the batch (``(1, C)``)."""
    if per_channel:
        sums = tensor.flatten(2).sum(dim=2)
        return sums if per_image else sums.sum(dim=0, keepdim=True)
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
    per_channel: bool = False,
) -> torch.Tensor:
    """Soft Tversky index ``(2 TP + s) / (2 TP + 2 alpha FP + 2 beta FN + s)``, per image or per batch.

    Written with the factor 2 so that ``alpha = beta = 0.5`` is exactly the soft Dice
    ``(2 TP + s) / (sum p + sum t + s)`` with the same ``smooth`` s (it is ``TP / (TP + alpha FP +
    beta FN)`` of Salehi et al. 2017 with smoothing s / 2). alpha weighs false positives, beta false
    negatives: beta > alpha favours recall. ``per_channel``: one index per channel, shape ``(N, C)``
    per image or ``(1, C)`` for the batch (multilabel channels, or multiclass classes against one-hot
    targets); otherwise channels are pooled, shape ``(N,)`` or ``(1,)``. ``valid`` broadcasts against
    ``probabilities`` (``(N, 1, H, W)`` for multiclass).
    """
    probabilities = probabilities * valid
    target = target * valid
    true_positive = _sum_dims(probabilities * target, per_image, per_channel)
    false_positive = _sum_dims(probabilities * (1 - target), per_image, per_channel)
    false_negative = _sum_dims((1 - probabilities) * target, per_image, per_channel)
    numerator = 2 * true_positive + smooth
    return numerator / (numerator + 2 * alpha * false_positive + 2 * beta * false_negative)


def soft_dice_coefficient(
    probabilities: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    smooth: float,
    per_image: bool,
    per_channel: bool = False,
) -> torch.Tensor:
    """Soft Dice ``(2 sum(p t) + s) / (sum p + sum t + s)`` over valid pixels, per image or per batch;
    ``per_channel`` gives one per channel (see ``soft_tversky_index`` for the shapes)."""
    probabilities = probabilities * valid
    target = target * valid
    intersection = _sum_dims(probabilities * target, per_image, per_channel)
    total = _sum_dims(probabilities, per_image, per_channel) + _sum_dims(target, per_image, per_channel)
    return (2 * intersection + smooth) / (total + smooth)


def valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over valid pixels; an all-ignored batch gives 0 (with a graph), not 0 / 0."""
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def class_mean(scores: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-class scores ``(B, K)`` (B images, or 1 for a pooled batch): the mean over B, then
    over classes, weighted by ``weights`` (``(K,)``, non-negative, not all 0) when given."""
    if weights is None:
        return scores.mean()
    return (scores.mean(dim=0) * weights).sum() / weights.sum()


# --- class weights ----------------------------------------------------------------------------------


def _class_weights(value: Any) -> tuple[float, ...]:
    # From Python: a list or tuple; from a config file: a list; from --loss-option: "[1, 2]" is already
    # a list (segkit.config.options.parse_value), and "1,2" stays text.
    if isinstance(value, str):
        value = value.strip()
        if value[:1] in "[(" and value[-1:] in ")]":
            value = value[1:-1]
        value = value.split(",")
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) == 0:
        raise TypeError(f"not a list of numbers: {value!r}")
    weights = tuple(number(weight) for weight in value)
    if any(not 0 <= weight <= MAX_CLASS_WEIGHT for weight in weights) or not any(weights):
        raise ValueError(f"class weights out of range or all 0: {value!r}")
    return weights


#: Parses ``class_weights``: a non-empty list of numbers in ``[0, 1e6]``, not all 0, or none.
class_weights = optional(
    Parser(_class_weights, f"a list of numbers in [0, {MAX_CLASS_WEIGHT:g}], not all 0, one per class")
)
CLASS_WEIGHTS = Option(None, class_weights, help="weight of each class (channel), K of them; none: all 1")
IGNORE_INDEX_OPTION = Option(
    IGNORE_INDEX, integer, help="target value of pixels that count for nothing (value and gradient)"
)


def check_class_weights(loss_name: str, weights: Sequence[float] | None, channels: int) -> None:
    """Raises ``UsageError`` unless ``weights`` is None or has one weight per channel of the logits."""
    if weights is not None and len(weights) != channels:
        raise UsageError(
            f"loss {loss_name!r}: option 'class_weights' has {len(weights)} values but the logits have "
            f"{channels} channels (K = {channels}); give one weight per class"
        )


def class_weight_tensor(weights: Sequence[float] | None, like: torch.Tensor) -> torch.Tensor | None:
    """``weights`` as a float tensor on ``like``'s device and dtype, or None."""
    if weights is None:
        return None
    return torch.tensor(weights, dtype=like.dtype, device=like.device)


# --- multiclass ------------------------------------------------------------------------------------


class MulticlassLoss(nn.Module):
    """Base of losses for K mutually exclusive classes: validates ``(logits, target)``, masks ignored
    pixels, builds one-hot targets and runs ``compute`` in float32 with autocast disabled.

    Called as ``loss(logits, target, ignore=None)``: ``logits`` ``(N, K, H, W)``; ``target`` an integer
    tensor ``(N, H, W)`` (or ``(N, 1, H, W)``) of class indices in ``[0, K)`` or ``ignore_index``;
    ``ignore`` an optional bool tensor ``(N, H, W)`` (or ``(N, 1, H, W)``), True where pixels must not
    count whatever their target. Ignored pixels contribute nothing to the value or the gradient, NaN
    logits there included. Another target value is a ``DataError`` naming it; ``class_weights`` whose
    length is not K is a ``UsageError``.

    ``compute(logits, target, one_hot, valid)`` receives float32 ``logits`` ``(N, K, H, W)`` (0 at
    ignored pixels), the int64 ``target`` ``(N, H, W)`` (0 at ignored pixels), the float32 ``one_hot``
    ``(N, K, H, W)`` (all 0 at ignored pixels) and the float32 ``valid`` mask ``(N, 1, H, W)``.
    ``self.class_weights`` is None or a tuple of K floats (``class_weight_tensor`` makes it a tensor).
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)
        self.ignore_index = int(ignore_index)
        self.name = name or type(self).__name__

    def forward(self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None):
        if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise DataError("a loss takes tensors: loss(logits, target, ignore=None)")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target, one_hot, valid = prepare_multiclass(logits, target, ignore, self.ignore_index)
            check_class_weights(self.name, self.class_weights, logits.shape[1])
            return self.compute(logits, target, one_hot, valid)

    def compute(
        self, logits: torch.Tensor, target: torch.Tensor, one_hot: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """The loss value; see the class docstring for what each argument holds."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute(logits, target, one_hot, valid)"
        )

    def weights_like(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """``class_weights`` as a tensor on ``tensor``'s device and dtype, or None."""
        return class_weight_tensor(self.class_weights, tensor)

    def extra_repr(self) -> str:
        return f"class_weights={self.class_weights}, ignore_index={self.ignore_index}"


def _pixel_mask(mask: torch.Tensor, logits: torch.Tensor, what: str) -> torch.Tensor:
    """An ``(N, H, W)`` view of an ``(N, H, W)`` or ``(N, 1, H, W)`` per-pixel tensor, or a DataError."""
    expected = (logits.shape[0], *logits.shape[2:])
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if tuple(mask.shape) != expected:
        raise DataError(
            f"loss: {what} shape {tuple(mask.shape)} does not fit logits of shape {tuple(logits.shape)}; "
            f"a multiclass {what} is (N, H, W) = {expected} (or (N, 1, H, W))"
        )
    return mask


def prepare_multiclass(
    logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float32 logits, int64 class indices, float32 one-hot targets and an ``(N, 1, H, W)`` valid mask,
    with ignored pixels neutralised (replaced, so NaN there cannot reach sums or gradients)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise DataError("a loss takes tensors: loss(logits, target, ignore=None)")
    if logits.dim() != 4:
        raise DataError(f"loss: logits must be (N, K, H, W), got shape {tuple(logits.shape)}")
    target = _pixel_mask(target, logits, "target")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise DataError(
            f"loss: a multiclass target holds class indices, an integer tensor (int64), got {target.dtype}"
        )
    counted = target != ignore_index
    if ignore is not None:
        ignore = _pixel_mask(ignore, logits, "ignore")
        if ignore.dtype != torch.bool:
            raise DataError(f"loss: ignore must be a bool tensor (True = pixel ignored), got {ignore.dtype}")
        counted = counted & ~ignore
    classes = logits.shape[1]
    bad = counted & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise DataError(
            f"loss: the target holds class {value}, outside [0, {classes}) for logits of {classes} channels "
            f"and not the ignore value {ignore_index}"
        )
    target = torch.where(counted, target, torch.zeros((), dtype=target.dtype, device=target.device)).long()
    valid = counted.unsqueeze(1)
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    logits = torch.where(valid, logits.float(), zero)
    valid = valid.float()
    one_hot = F.one_hot(target, classes).permute(0, 3, 1, 2).float() * valid
    return logits, target, one_hot, valid


# --- which tasks a loss serves -----------------------------------------------------------------------


def loss_tasks(component_metadata: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The task kinds a registered loss serves (its ``tasks`` metadata; binary and multilabel if none)."""
    tasks = (component_metadata or {}).get("tasks")
    if tasks is None:
        return DEFAULT_LOSS_TASKS
    return (tasks,) if isinstance(tasks, str) else tuple(tasks)


def losses_for_task(task_kind: str) -> list[str]:
    """The names of the registered losses serving ``task_kind``, sorted."""

    return [c.name for c in list_components("loss") if task_kind in loss_tasks(c.metadata)]


def _and_list(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def check_loss_task(loss_name: str, component_metadata: Mapping[str, Any] | None, task_kind: str) -> None:
    """Raises ``UsageError`` when the loss registered as ``loss_name`` does not serve ``task_kind``,
    naming the registered losses that do."""
    tasks = loss_tasks(component_metadata)
    if task_kind in tasks:
        return
    served = f"is for {_and_list(tasks)} tasks" if tasks else "serves no task"
    fitting = losses_for_task(task_kind)
    advice = (
        f"for a {task_kind} task use one of: {', '.join(fitting)}"
        if fitting
        else f"no registered loss serves a {task_kind} task"
    )
    raise UsageError(f"loss {loss_name!r} {served}; {advice}")
