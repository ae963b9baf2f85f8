"""Built-in losses for multiclass segmentation: cross-entropy, softmax Dice, their sum, focal, Tversky.

Each loss is a ``segkit.losses.MulticlassLoss``: called as ``loss(logits, target, ignore=None)`` with
``(N, K, H, W)`` logits and an ``(N, H, W)`` int64 target of class indices in ``[0, K)``, where
``ignore_index`` (default 255) marks pixels that count for nothing, in value and gradient. All compute
in float32 with autocast disabled, from ``log_softmax`` / ``softmax``, so logits of +-100 give finite
values and gradients.

Every loss takes ``class_weights`` (K non-negative numbers, not all 0; None for all 1) and
``ignore_index``. Cross-entropy uses the weights as torch's ``weight`` (a weighted mean over valid
pixels: ``sum(w[y] nll) / sum(w[y])``); Dice and Tversky weigh the per-class scores in their average
over classes (a weight of 0 leaves a class out, e.g. ``[0, 1, 1]`` for Dice without the background);
focal uses them as the per-class alpha. Dice and Tversky average over all K classes: a class absent
from both truth and prediction scores 1 through ``smooth``, like the binary Dice.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segkit import hookimpl
from segkit.component_options import Option, parse_component_options
from segkit.losses import (
    CLASS_WEIGHTS,
    IGNORE_INDEX_OPTION,
    MulticlassLoss,
    class_mean,
    soft_dice_coefficient,
    soft_tversky_index,
    valid_mean,
)
from segkit_builtin.losses import (
    FOCAL_GAMMA,
    PER_IMAGE,
    SMOOTH,
    TERM_WEIGHT,
    TVERSKY_ALPHA,
    TVERSKY_BETA,
    require_some_weight,
    require_tversky_weights,
)

#: The task kinds these losses serve (see ``segkit.losses.check_loss_task``).
TASKS = ("multiclass",)

# --- the losses -------------------------------------------------------------------------------------


class CrossEntropyLoss(MulticlassLoss):
    """Softmax cross-entropy, a mean over valid pixels weighted by ``class_weights[target]`` (torch's
    ``weight`` convention); a batch with no valid (or only zero-weight) pixels gives 0 with a graph."""

    def compute(self, logits, target, one_hot, valid):
        nll = F.cross_entropy(logits, target, reduction="none")
        valid = valid[:, 0]
        weights = self.weights_like(logits)
        if weights is None:
            return valid_mean(nll, valid)
        pixel_weight = weights[target] * valid
        total = pixel_weight.sum()
        return (nll * pixel_weight).sum() / torch.where(total > 0, total, torch.ones_like(total))


class SoftmaxDiceLoss(MulticlassLoss):
    """``1 -`` the soft Dice of softmax probabilities against one-hot targets, averaged over classes.

    ``per_image`` (default False) and ``smooth`` (default 1.0) mean what they mean for the binary
    ``dice``: each class's Dice is pooled over the batch, or computed per image and averaged.
    """

    def __init__(self, smooth: float = 1.0, per_image: bool = False, **base: Any) -> None:
        super().__init__(**base)
        self.smooth, self.per_image = smooth, per_image

    def compute(self, logits, target, one_hot, valid):
        probabilities = torch.softmax(logits, dim=1)
        dice = soft_dice_coefficient(probabilities, one_hot, valid, self.smooth, self.per_image, True)
        return 1 - class_mean(dice, self.weights_like(logits))

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, per_image={self.per_image}, {super().extra_repr()}"


class MulticlassTverskyLoss(MulticlassLoss):
    """``1 -`` the soft Tversky index of each class (alpha weighs FP, beta FN), averaged over classes.

    Same formula as the binary ``tversky`` (``segkit.losses.soft_tversky_index``), so ``alpha = beta =
    0.5`` is exactly ``softmax_dice``.
    """

    def __init__(
        self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, per_image: bool = False, **base: Any
    ) -> None:
        super().__init__(**base)
        self.alpha, self.beta, self.smooth, self.per_image = alpha, beta, smooth, per_image

    def compute(self, logits, target, one_hot, valid):
        probabilities = torch.softmax(logits, dim=1)
        index = soft_tversky_index(
            probabilities, one_hot, valid, self.alpha, self.beta, self.smooth, self.per_image, True
        )
        return 1 - class_mean(index, self.weights_like(logits))

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, per_image={self.per_image}, "
            f"{super().extra_repr()}"
        )


class MulticlassFocalLoss(MulticlassLoss):
    """Softmax focal loss ``-alpha[y] (1 - p_y)^gamma log p_y``, a mean over valid pixels.

    ``gamma`` (default 2) down-weights pixels already classified well; ``class_weights`` is the
    per-class alpha (None: no class weighting).
    """

    def __init__(self, gamma: float = 2.0, **base: Any) -> None:
        super().__init__(**base)
        self.gamma = gamma

    def compute(self, logits, target, one_hot, valid):
        log_norm = torch.logsumexp(logits, dim=1)
        log_p_t = logits.gather(1, target.unsqueeze(1))[:, 0] - log_norm
        if logits.shape[1] == 1:
            modulating = torch.zeros_like(log_p_t)  # one class: p_y = 1, nothing to learn
        else:
            # log(1 - p_y) as logsumexp over the other classes: (1 - p_y)^gamma stays differentiable
            # when p_y saturates at 1, for any gamma >= 0 (a pow of 1 - exp(log p_y) would give 0 * inf).
            others = logits.masked_fill(one_hot.bool(), float("-inf"))
            modulating = torch.exp(self.gamma * (torch.logsumexp(others, dim=1) - log_norm))
        per_pixel = -modulating * log_p_t
        weights = self.weights_like(logits)
        if weights is not None:
            per_pixel = per_pixel * weights[target]
        return valid_mean(per_pixel, valid[:, 0])

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"


class MulticlassWeightedSumLoss(MulticlassLoss):
    """``sum(weight * term)`` of other multiclass losses on the same inputs (e.g. CE + Dice)."""

    def __init__(self, terms: dict[str, tuple[float, MulticlassLoss]], **base: Any) -> None:
        super().__init__(**base)
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})

    def compute(self, logits, target, one_hot, valid):
        terms = self.terms.items()
        return sum(self.weights[name] * term.compute(logits, target, one_hot, valid) for name, term in terms)

    def extra_repr(self) -> str:
        weights = ", ".join(f"{name}_weight={weight}" for name, weight in self.weights.items())
        return f"{weights}, {super().extra_repr()}"


# --- factories --------------------------------------------------------------------------------------

BASE_OPTIONS = {"class_weights": CLASS_WEIGHTS, "ignore_index": IGNORE_INDEX_OPTION}
CE_OPTIONS = dict(BASE_OPTIONS)
SOFTMAX_DICE_OPTIONS = {"smooth": SMOOTH, "per_image": PER_IMAGE, **BASE_OPTIONS}
CE_DICE_OPTIONS = {
    "ce_weight": TERM_WEIGHT,
    "dice_weight": TERM_WEIGHT,
    "smooth": SMOOTH,
    "per_image": PER_IMAGE,
    **BASE_OPTIONS,
}
MULTICLASS_FOCAL_OPTIONS = {
    "gamma": FOCAL_GAMMA,
    **BASE_OPTIONS,
    "class_weights": Option(None, CLASS_WEIGHTS.parse, CLASS_WEIGHTS.allowed, help="per-class alpha"),
}
MULTICLASS_TVERSKY_OPTIONS = {
    "alpha": TVERSKY_ALPHA,
    "beta": TVERSKY_BETA,
    "smooth": SMOOTH,
    "per_image": PER_IMAGE,
    **BASE_OPTIONS,
}


def _parse(name: str, options: dict[str, Any], spec: dict[str, Option]) -> tuple[dict[str, Any], dict]:
    """The parsed options, split into this loss's own and the base's (class_weights, ignore_index)."""
    parsed = parse_component_options("loss", name, options, spec)
    base = {key: parsed.pop(key) for key in BASE_OPTIONS}
    return parsed, {**base, "name": name}


def build_ce(**options: Any) -> CrossEntropyLoss:
    """Softmax cross-entropy (options: class_weights, ignore_index)."""
    _, base = _parse("ce", options, CE_OPTIONS)
    return CrossEntropyLoss(**base)


def build_softmax_dice(**options: Any) -> SoftmaxDiceLoss:
    """1 - soft Dice of softmax probabilities, averaged over classes (smooth, per_image, ...)."""
    parsed, base = _parse("softmax_dice", options, SOFTMAX_DICE_OPTIONS)
    return SoftmaxDiceLoss(**parsed, **base)


def build_ce_dice(**options: Any) -> MulticlassWeightedSumLoss:
    """ce_weight * cross-entropy + dice_weight * (1 - softmax Dice)."""
    parsed, base = _parse("ce_dice", options, CE_DICE_OPTIONS)
    weights = {"ce_weight": parsed["ce_weight"], "dice_weight": parsed["dice_weight"]}
    require_some_weight("ce_dice", weights)
    dice = SoftmaxDiceLoss(parsed["smooth"], parsed["per_image"], **base)
    terms = {"ce": (parsed["ce_weight"], CrossEntropyLoss(**base)), "dice": (parsed["dice_weight"], dice)}
    return MulticlassWeightedSumLoss(terms, **base)


def build_multiclass_focal(**options: Any) -> MulticlassFocalLoss:
    """Softmax focal loss (options: gamma, class_weights as per-class alpha, ignore_index)."""
    parsed, base = _parse("multiclass_focal", options, MULTICLASS_FOCAL_OPTIONS)
    return MulticlassFocalLoss(**parsed, **base)


def build_multiclass_tversky(**options: Any) -> MulticlassTverskyLoss:
    """1 - soft Tversky per class, averaged (alpha for FP, beta for FN, smooth, per_image, ...)."""
    parsed, base = _parse("multiclass_tversky", options, MULTICLASS_TVERSKY_OPTIONS)
    require_tversky_weights("multiclass_tversky", parsed["alpha"], parsed["beta"])
    return MulticlassTverskyLoss(**parsed, **base)


LOSSES = {
    "ce": (build_ce, CE_OPTIONS, "softmax cross-entropy (class_weights, ignore_index)"),
    "softmax_dice": (
        build_softmax_dice,
        SOFTMAX_DICE_OPTIONS,
        "1 - softmax soft Dice averaged over classes (smooth, per_image, class_weights)",
    ),
    "ce_dice": (
        build_ce_dice,
        CE_DICE_OPTIONS,
        "cross-entropy + softmax Dice (ce_weight, dice_weight, smooth, per_image, class_weights)",
    ),
    "multiclass_focal": (
        build_multiclass_focal,
        MULTICLASS_FOCAL_OPTIONS,
        "softmax focal loss (gamma, class_weights as per-class alpha)",
    ),
    "multiclass_tversky": (
        build_multiclass_tversky,
        MULTICLASS_TVERSKY_OPTIONS,
        "1 - soft Tversky per class, averaged (alpha FP, beta FN, smooth, per_image, class_weights)",
    ),
}


@hookimpl
def register_losses(register):
    for name, (factory, options, description) in LOSSES.items():
        register(name, factory, description=description, options=options, tasks=TASKS)
