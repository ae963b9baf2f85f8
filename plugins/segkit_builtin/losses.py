"""Built-in losses for binary and multilabel segmentation: BCE, soft Dice, Tversky, focal, and the seed
report's sums.

Each loss is a ``segkit.losses.SegmentationLoss`` (see there for the call contract and the float32 /
ignored-pixel handling), built on the shared functional math of ``segkit.losses``. BCE and focal use
log-sigmoid forms, so logits of +-100 give finite values and gradients.

Options are keywords of the factories (``segkit.create_loss("bce_tversky", alpha=0.3, beta=0.7)``),
declared with ``segkit.component_options``; an unknown option or a bad value raises
``segkit.errors.UsageError`` naming it and what is allowed.

Multilabel targets are ``(N, C, H, W)``, one independent sigmoid channel per label. By default the
Dice and Tversky terms pool all channels together (for ``C = 1``, the binary loss); ``per_channel=True``
scores each channel on its own and averages over channels, so a small label weighs as much as a large
one. ``class_weights`` (C numbers) weighs each channel's BCE terms. Multiclass losses (softmax over K
exclusive classes) live in ``segkit_builtin.multiclass_losses``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit import hookimpl
from segkit.component_options import (
    Option,
    boolean,
    checked,
    fraction,
    non_negative,
    number,
    optional,
    parse_component_options,
    positive,
)
from segkit.errors import UsageError

# Moved to the core (``segkit.losses``); kept importable from here for existing imports.
from segkit.losses import (  # noqa: F401
    CLASS_WEIGHTS,
    SegmentationLoss,
    check_class_weights,
    class_weight_tensor,
    prepare,
    soft_dice_coefficient,
    soft_tversky_index,
    valid_mean,
)

# --- options ----------------------------------------------------------------------------------------

#: Weights beyond this overflow float32 losses (a BCE term of 8 times 1e38 is inf); none is sensible.
MAX_WEIGHT = 1e6
WEIGHT = checked(number, lambda value: 0 < value <= MAX_WEIGHT, f"a number in (0, {MAX_WEIGHT:g}]")
TERM = checked(number, lambda value: 0 <= value <= MAX_WEIGHT, f"a number in [0, {MAX_WEIGHT:g}]")
POS_WEIGHT = Option(
    None,
    optional(WEIGHT),
    f"a number in (0, {MAX_WEIGHT:g}], or None for 1",
    help="weight of foreground pixels in BCE",
)
SMOOTH = Option(1.0, positive, help="added to numerator and denominator, in pixels")
PER_IMAGE = Option(False, boolean, help="average per-image scores instead of pooling the batch")
PER_CHANNEL = Option(
    False, boolean, help="score each channel (label) on its own and average, instead of pooling channels"
)
CHANNEL_WEIGHTS = Option(
    None,
    CLASS_WEIGHTS.parse,
    CLASS_WEIGHTS.allowed.replace("one per class", "one per channel"),
    help="weight of each channel's BCE terms; none: all 1",
)
#: The task kinds these losses serve (see ``segkit.losses.check_loss_task``).
TASKS = ("binary", "multilabel")
TERM_WEIGHT = Option(1.0, TERM, help="weight of this term in the sum")
TVERSKY_ALPHA = Option(0.5, TERM, help="weight of false positives")
TVERSKY_BETA = Option(0.5, TERM, help="weight of false negatives")
FOCAL_GAMMA = Option(2.0, non_negative, help="focusing exponent: down-weights pixels already right")
FOCAL_ALPHA = Option(
    0.25,
    optional(fraction),
    "a number in [0, 1], or None for no class weighting",
    help="weight of foreground pixels (background: 1 - alpha)",
)


# --- the losses -------------------------------------------------------------------------------------


class BCELoss(SegmentationLoss):
    """Binary cross-entropy on logits, averaged over valid pixels; ``pos_weight`` scales foreground terms.

    ``class_weights`` (one per channel, or None) multiplies each channel's terms, like the ``weight``
    of ``torch.nn.BCEWithLogitsLoss``; the mean is still over valid pixels.
    """

    def __init__(
        self,
        pos_weight: float | None = None,
        class_weights: tuple[float, ...] | None = None,
        name: str = "bce",
    ) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.class_weights = None if class_weights is None else tuple(class_weights)
        self.name = name

    def compute(self, logits, target, valid):
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction="none"
        )
        if self.class_weights is not None:
            check_class_weights(self.name, self.class_weights, logits.shape[1])
            weights = class_weight_tensor(self.class_weights, logits)
            per_pixel = per_pixel * weights.view(1, -1, *([1] * (logits.dim() - 2)))
        return valid_mean(per_pixel, valid)

    def extra_repr(self) -> str:
        extra = "" if self.class_weights is None else f", class_weights={self.class_weights}"
        return f"pos_weight={self.pos_weight}{extra}"


class DiceLoss(SegmentationLoss):
    """``1 - soft Dice`` of sigmoid probabilities.

    ``per_image`` (default False): the soft Dice is computed over the whole batch, as one pool of
    pixels. We default to the batch form because it stays well conditioned when an image has little
    or no foreground (a per-image Dice there is dominated by ``smooth`` and gives large, noisy
    gradients), it is what flattening the batch in the seed report's BCE+Dice did, and it tracks the
    ``dataset`` (pooled) metric. ``per_image=True`` averages per-image soft Dice scores instead, which
    tracks the ``per_image`` metric more closely when every image has foreground.
    ``smooth`` (default 1.0) is added to numerator and denominator, in pixels: an image (or batch)
    with empty truth and prediction scores Dice 1, not 0 / 0.
    ``per_channel`` (default False: channels pooled, the binary loss): for multilabel targets, the
    mean over channels of each channel's soft Dice (each pooled over the batch, or per image).
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = False, per_channel: bool = False) -> None:
        super().__init__()
        self.smooth = smooth
        self.per_image = per_image
        self.per_channel = per_channel

    def compute(self, logits, target, valid):
        probabilities = torch.sigmoid(logits)
        if self.per_channel:
            dice = soft_dice_coefficient(probabilities, target, valid, self.smooth, self.per_image, True)
        else:
            dice = soft_dice_coefficient(probabilities, target, valid, self.smooth, self.per_image)
        return 1 - dice.mean()

    def extra_repr(self) -> str:
        extra = ", per_channel=True" if self.per_channel else ""
        return f"smooth={self.smooth}, per_image={self.per_image}{extra}"


class TverskyLoss(SegmentationLoss):
    """``1 - soft Tversky index`` (see ``soft_tversky_index``); alpha weighs FP, beta weighs FN.

    ``per_image``, ``smooth`` and ``per_channel`` mean what they mean for ``DiceLoss`` (same defaults,
    same reasons); ``alpha = beta = 0.5`` gives exactly ``DiceLoss``.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        per_image: bool = False,
        per_channel: bool = False,
    ):
        super().__init__()
        self.alpha, self.beta, self.smooth, self.per_image = alpha, beta, smooth, per_image
        self.per_channel = per_channel

    def compute(self, logits, target, valid):
        arguments = (torch.sigmoid(logits), target, valid, self.alpha, self.beta, self.smooth, self.per_image)
        index = soft_tversky_index(*arguments, True) if self.per_channel else soft_tversky_index(*arguments)
        return 1 - index.mean()

    def extra_repr(self) -> str:
        extra = ", per_channel=True" if self.per_channel else ""
        return (
            f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, per_image={self.per_image}{extra}"
        )


class FocalLoss(SegmentationLoss):
    """Sigmoid focal loss of Lin et al. 2017, ``-alpha_t (1 - p_t)^gamma log(p_t)``, mean over valid pixels.

    ``gamma`` (default 2) down-weights pixels already classified well; ``alpha`` (default 0.25, the
    paper's) weighs foreground pixels by alpha and background ones by 1 - alpha; None disables it.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def compute(self, logits, target, valid):
        # Signed logit z: p_t = sigmoid(z). Writing (1 - p_t)^gamma as exp(gamma * logsigmoid(-z))
        # keeps the gradient finite at saturated logits for any gamma >= 0, where torchvision's
        # ``(1 - p_t) ** gamma`` gives 0 * inf = NaN for gamma < 1.
        signed = torch.where(target > 0.5, logits, -logits)
        cross_entropy = -F.logsigmoid(signed)
        modulating = torch.exp(self.gamma * F.logsigmoid(-signed))
        per_pixel = modulating * cross_entropy
        if self.alpha is not None:
            per_pixel = per_pixel * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return valid_mean(per_pixel, valid)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"


class WeightedSumLoss(SegmentationLoss):
    """``sum(weight * term)`` of other losses on the same inputs (e.g. BCE + Dice)."""

    def __init__(self, terms: dict[str, tuple[float, SegmentationLoss]]) -> None:
        super().__init__()
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})

    def compute(self, logits, target, valid):
        terms = self.terms.items()
        return sum(self.weights[name] * term.compute(logits, target, valid) for name, term in terms)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}_weight={weight}" for name, weight in self.weights.items())


# --- factories --------------------------------------------------------------------------------------


def require_some_weight(loss_name: str, weights: dict[str, float]) -> None:
    if not any(weights.values()):
        names = " and ".join(repr(name) for name in weights)
        raise UsageError(f"loss {loss_name!r}: options {names} cannot both be 0")


def require_tversky_weights(loss_name: str, alpha: float, beta: float) -> None:
    if alpha == 0 and beta == 0:
        raise UsageError(f"loss {loss_name!r}: options 'alpha' and 'beta' cannot both be 0 (no signal)")


BCE_OPTIONS = {"pos_weight": POS_WEIGHT, "class_weights": CHANNEL_WEIGHTS}
DICE_OPTIONS = {"smooth": SMOOTH, "per_image": PER_IMAGE, "per_channel": PER_CHANNEL}
TVERSKY_OPTIONS = {
    "alpha": TVERSKY_ALPHA,
    "beta": TVERSKY_BETA,
    "smooth": SMOOTH,
    "per_image": PER_IMAGE,
    "per_channel": PER_CHANNEL,
}
FOCAL_OPTIONS = {"gamma": FOCAL_GAMMA, "alpha": FOCAL_ALPHA}
BCE_DICE_OPTIONS = {
    "pos_weight": POS_WEIGHT,
    "bce_weight": TERM_WEIGHT,
    "dice_weight": TERM_WEIGHT,
    "smooth": SMOOTH,
    "per_image": PER_IMAGE,
    "per_channel": PER_CHANNEL,
    "class_weights": CHANNEL_WEIGHTS,
}
BCE_TVERSKY_OPTIONS = {
    "pos_weight": POS_WEIGHT,
    "bce_weight": TERM_WEIGHT,
    "tversky_weight": TERM_WEIGHT,
    "alpha": TVERSKY_ALPHA,
    "beta": TVERSKY_BETA,
    "smooth": SMOOTH,
    "per_image": PER_IMAGE,
    "per_channel": PER_CHANNEL,
    "class_weights": CHANNEL_WEIGHTS,
}


def build_bce(**options: Any) -> BCELoss:
    """Binary cross-entropy on logits (options: pos_weight, class_weights)."""
    return BCELoss(**parse_component_options("loss", "bce", options, BCE_OPTIONS), name="bce")


def build_dice(**options: Any) -> DiceLoss:
    """1 - soft Dice (options: smooth, per_image, per_channel)."""
    return DiceLoss(**parse_component_options("loss", "dice", options, DICE_OPTIONS))


def build_tversky(**options: Any) -> TverskyLoss:
    """1 - soft Tversky index (options: alpha for FP, beta for FN, smooth, per_image, per_channel)."""
    parsed = parse_component_options("loss", "tversky", options, TVERSKY_OPTIONS)
    require_tversky_weights("tversky", parsed["alpha"], parsed["beta"])
    return TverskyLoss(**parsed)


def build_focal(**options: Any) -> FocalLoss:
    """Sigmoid focal loss of Lin et al. (options: gamma, alpha)."""
    return FocalLoss(**parse_component_options("loss", "focal", options, FOCAL_OPTIONS))


def build_bce_dice(**options: Any) -> WeightedSumLoss:
    """bce_weight * BCE + dice_weight * (1 - soft Dice), the seed report's loss."""
    parsed = parse_component_options("loss", "bce_dice", options, BCE_DICE_OPTIONS)
    require_some_weight(
        "bce_dice", {"bce_weight": parsed["bce_weight"], "dice_weight": parsed["dice_weight"]}
    )
    bce = BCELoss(parsed["pos_weight"], parsed["class_weights"], name="bce_dice")
    dice = DiceLoss(parsed["smooth"], parsed["per_image"], parsed["per_channel"])
    return WeightedSumLoss({"bce": (parsed["bce_weight"], bce), "dice": (parsed["dice_weight"], dice)})


def build_bce_tversky(**options: Any) -> WeightedSumLoss:
    """bce_weight * BCE + tversky_weight * (1 - soft Tversky), the seed report's other loss."""
    parsed = parse_component_options("loss", "bce_tversky", options, BCE_TVERSKY_OPTIONS)
    require_some_weight(
        "bce_tversky", {"bce_weight": parsed["bce_weight"], "tversky_weight": parsed["tversky_weight"]}
    )
    require_tversky_weights("bce_tversky", parsed["alpha"], parsed["beta"])
    tversky = TverskyLoss(
        parsed["alpha"], parsed["beta"], parsed["smooth"], parsed["per_image"], parsed["per_channel"]
    )
    bce = BCELoss(parsed["pos_weight"], parsed["class_weights"], name="bce_tversky")
    return WeightedSumLoss(
        {"bce": (parsed["bce_weight"], bce), "tversky": (parsed["tversky_weight"], tversky)}
    )


LOSSES = {
    "bce": (build_bce, BCE_OPTIONS, "binary cross-entropy on logits (pos_weight, class_weights)"),
    "dice": (
        build_dice,
        DICE_OPTIONS,
        "1 - soft Dice, batch-pooled by default (smooth, per_image, per_channel)",
    ),
    "tversky": (
        build_tversky,
        TVERSKY_OPTIONS,
        "1 - soft Tversky; alpha weighs FP, beta FN (alpha, beta, smooth, per_image, per_channel)",
    ),
    "focal": (build_focal, FOCAL_OPTIONS, "sigmoid focal loss of Lin et al. (gamma, alpha)"),
    "bce_dice": (
        build_bce_dice,
        BCE_DICE_OPTIONS,
        "BCE + soft Dice, the seed report's loss (bce_weight, dice_weight, ...)",
    ),
    "bce_tversky": (
        build_bce_tversky,
        BCE_TVERSKY_OPTIONS,
        "BCE + soft Tversky (alpha, beta default 0.5, bce_weight, ...)",
    ),
}


@hookimpl
def register_losses(register):
    for name, (factory, options, description) in LOSSES.items():
        register(name, factory, description=description, options=options, tasks=TASKS)
