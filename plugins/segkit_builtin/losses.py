"""Built-in losses for binary segmentation: BCE, soft Dice, Tversky, focal, and the seed report's sums.

Every loss is an ``nn.Module`` called as ``loss(logits, target, ignore=None)``:

- ``logits``: raw network outputs ``(N, C, H, W)`` (no sigmoid applied);
- ``target``: ``{0, 1}`` float mask of the same shape;
- ``ignore``: optional bool tensor of the same shape, True where pixels must not count (e.g. the
  Oxford-IIIT Pet trimap border). Ignored pixels contribute nothing to the value or the gradient,
  whatever their logits or target values (NaN and 255 included).

All arithmetic runs in float32 with autocast disabled, so bf16/fp16 training cannot overflow the
sums, and BCE and focal use log-sigmoid forms, so logits of +-100 give finite values and gradients.

Options are keywords of the factories (``segkit.create_loss("bce_tversky", alpha=0.3, beta=0.7)``);
an unknown option or a bad value raises ``segkit.errors.UsageError`` naming it and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit import hookimpl
from segkit.errors import DataError, UsageError

# --- options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One keyword option of a loss factory: its default, a parser and the allowed values in words."""

    default: Any
    parse: Callable[[Any], Any]
    allowed: str


def _number(value: Any) -> float:
    # bool is an int subclass: ``smooth=True`` is a mistake, not 1.0.
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = float(value.strip())
    if not isinstance(value, (int, float)):
        raise ValueError
    value = float(value)
    if not math.isfinite(value):
        raise ValueError
    return value


def _positive(value: Any) -> float:
    value = _number(value)
    if value <= 0:
        raise ValueError
    return value


def _non_negative(value: Any) -> float:
    value = _number(value)
    if value < 0:
        raise ValueError
    return value


def _fraction(value: Any) -> float:
    value = _number(value)
    if not 0 <= value <= 1:
        raise ValueError
    return value


def _optional_fraction(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    return _fraction(value)


def _optional_positive(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    return _positive(value)


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _boolean(value: Any) -> bool:
    # Config files and ``--loss-option per_image=true`` give strings; accept the usual spellings.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError


POS_WEIGHT = Option(None, _optional_positive, "a number > 0, or None for 1")
SMOOTH = Option(1.0, _positive, "a number > 0")
PER_IMAGE = Option(False, _boolean, "true or false")
TERM_WEIGHT = Option(1.0, _non_negative, "a number >= 0")
TVERSKY_ALPHA = Option(0.5, _non_negative, "a number >= 0")
TVERSKY_BETA = Option(0.5, _non_negative, "a number >= 0")
FOCAL_GAMMA = Option(2.0, _non_negative, "a number >= 0")
FOCAL_ALPHA = Option(0.25, _optional_fraction, "a number in [0, 1], or None for no class weighting")


def parse_options(loss_name: str, options: dict[str, Any], spec: dict[str, Option]) -> dict[str, Any]:
    """Options of ``loss_name`` with defaults filled in; ``UsageError`` for unknown names or bad values."""
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise UsageError(
            f"loss {loss_name!r} has no option {unknown[0]!r}; its options are: {', '.join(sorted(spec))}"
        )
    parsed = {}
    for name, option in spec.items():
        value = options.get(name, option.default)
        try:
            parsed[name] = option.parse(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"loss {loss_name!r}: option {name!r} must be {option.allowed}, got {value!r}"
            ) from None
    return parsed


# --- shared preparation -----------------------------------------------------------------------------


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


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # An all-ignored batch gives 0 (with a graph) rather than 0 / 0.
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


# --- the losses -------------------------------------------------------------------------------------


class SegmentationLoss(nn.Module):
    """Base class: validates inputs, neutralises ignored pixels and computes in float32."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None):
        # The float32 casts in ``prepare`` cover today's element-wise terms; disabling autocast also
        # keeps any autocast-listed op a future term adds (a convolution, a matmul) in float32.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target, valid = prepare(logits, target, ignore)
            return self.compute(logits, target, valid)

    def compute(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BCELoss(SegmentationLoss):
    """Binary cross-entropy on logits, averaged over valid pixels; ``pos_weight`` scales foreground terms."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def compute(self, logits, target, valid):
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=pos_weight, reduction="none"
        )
        return _valid_mean(per_pixel, valid)

    def extra_repr(self) -> str:
        return f"pos_weight={self.pos_weight}"


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
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = False) -> None:
        super().__init__()
        self.smooth = smooth
        self.per_image = per_image

    def compute(self, logits, target, valid):
        dice = soft_dice_coefficient(torch.sigmoid(logits), target, valid, self.smooth, self.per_image)
        return 1 - dice.mean()

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, per_image={self.per_image}"


class TverskyLoss(SegmentationLoss):
    """``1 - soft Tversky index`` (see ``soft_tversky_index``); alpha weighs FP, beta weighs FN.

    ``per_image`` and ``smooth`` mean what they mean for ``DiceLoss`` (same defaults, same reasons);
    ``alpha = beta = 0.5`` gives exactly ``DiceLoss``.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, per_image: bool = False):
        super().__init__()
        self.alpha, self.beta, self.smooth, self.per_image = alpha, beta, smooth, per_image

    def compute(self, logits, target, valid):
        index = soft_tversky_index(
            torch.sigmoid(logits), target, valid, self.alpha, self.beta, self.smooth, self.per_image
        )
        return 1 - index.mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, per_image={self.per_image}"


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
        return _valid_mean(per_pixel, valid)

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


def _require_some_weight(loss_name: str, weights: dict[str, float]) -> None:
    if not any(weights.values()):
        names = " and ".join(repr(name) for name in weights)
        raise UsageError(f"loss {loss_name!r}: options {names} cannot both be 0")


def _require_tversky_weights(loss_name: str, alpha: float, beta: float) -> None:
    if alpha == 0 and beta == 0:
        raise UsageError(f"loss {loss_name!r}: options 'alpha' and 'beta' cannot both be 0 (no signal)")


def build_bce(**options: Any) -> BCELoss:
    """Binary cross-entropy on logits (options: pos_weight)."""
    parsed = parse_options("bce", options, {"pos_weight": POS_WEIGHT})
    return BCELoss(**parsed)


def build_dice(**options: Any) -> DiceLoss:
    """1 - soft Dice (options: smooth, per_image)."""
    parsed = parse_options("dice", options, {"smooth": SMOOTH, "per_image": PER_IMAGE})
    return DiceLoss(**parsed)


def build_tversky(**options: Any) -> TverskyLoss:
    """1 - soft Tversky index (options: alpha for FP, beta for FN, smooth, per_image)."""
    spec = {"alpha": TVERSKY_ALPHA, "beta": TVERSKY_BETA, "smooth": SMOOTH, "per_image": PER_IMAGE}
    parsed = parse_options("tversky", options, spec)
    _require_tversky_weights("tversky", parsed["alpha"], parsed["beta"])
    return TverskyLoss(**parsed)


def build_focal(**options: Any) -> FocalLoss:
    """Sigmoid focal loss of Lin et al. (options: gamma, alpha)."""
    parsed = parse_options("focal", options, {"gamma": FOCAL_GAMMA, "alpha": FOCAL_ALPHA})
    return FocalLoss(**parsed)


def build_bce_dice(**options: Any) -> WeightedSumLoss:
    """bce_weight * BCE + dice_weight * (1 - soft Dice), the seed report's loss."""
    spec = {
        "pos_weight": POS_WEIGHT,
        "bce_weight": TERM_WEIGHT,
        "dice_weight": TERM_WEIGHT,
        "smooth": SMOOTH,
        "per_image": PER_IMAGE,
    }
    parsed = parse_options("bce_dice", options, spec)
    _require_some_weight(
        "bce_dice", {"bce_weight": parsed["bce_weight"], "dice_weight": parsed["dice_weight"]}
    )
    return WeightedSumLoss(
        {
            "bce": (parsed["bce_weight"], BCELoss(parsed["pos_weight"])),
            "dice": (parsed["dice_weight"], DiceLoss(parsed["smooth"], parsed["per_image"])),
        }
    )


def build_bce_tversky(**options: Any) -> WeightedSumLoss:
    """bce_weight * BCE + tversky_weight * (1 - soft Tversky), the seed report's other loss."""
    spec = {
        "pos_weight": POS_WEIGHT,
        "bce_weight": TERM_WEIGHT,
        "tversky_weight": TERM_WEIGHT,
        "alpha": TVERSKY_ALPHA,
        "beta": TVERSKY_BETA,
        "smooth": SMOOTH,
        "per_image": PER_IMAGE,
    }
    parsed = parse_options("bce_tversky", options, spec)
    _require_some_weight(
        "bce_tversky", {"bce_weight": parsed["bce_weight"], "tversky_weight": parsed["tversky_weight"]}
    )
    _require_tversky_weights("bce_tversky", parsed["alpha"], parsed["beta"])
    tversky = TverskyLoss(parsed["alpha"], parsed["beta"], parsed["smooth"], parsed["per_image"])
    return WeightedSumLoss(
        {
            "bce": (parsed["bce_weight"], BCELoss(parsed["pos_weight"])),
            "tversky": (parsed["tversky_weight"], tversky),
        }
    )


LOSSES = {
    "bce": (build_bce, "binary cross-entropy on logits (pos_weight)"),
    "dice": (build_dice, "1 - soft Dice, batch-pooled by default (smooth, per_image)"),
    "tversky": (build_tversky, "1 - soft Tversky; alpha weighs FP, beta FN (alpha, beta, smooth, per_image)"),
    "focal": (build_focal, "sigmoid focal loss of Lin et al. (gamma, alpha)"),
    "bce_dice": (build_bce_dice, "BCE + soft Dice, the seed report's loss (bce_weight, dice_weight, ...)"),
    "bce_tversky": (build_bce_tversky, "BCE + soft Tversky (alpha, beta default 0.5, bce_weight, ...)"),
}


@hookimpl
def register_losses(register):
    for name, (factory, description) in LOSSES.items():
        register(name, factory, description=description)
