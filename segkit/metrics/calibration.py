"""Choosing the probability threshold on the validation split (``calibrate_threshold`` in a recipe).

One validation pass scores every threshold of a small grid at once; the threshold with the best
per-image mean Dice wins, ties going to the one nearest 0.5. The grid stays within 0.3-0.7 on purpose:
a validation split is small (30 images in the Pet sample), and a far-off threshold fitted to it would
mostly fit its noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segkit.metrics.binary import MetricAccumulator

CALIBRATION_GRID: tuple[float, ...] = tuple(round(0.3 + 0.05 * step, 2) for step in range(9))


class ThresholdSweep:
    """Per-image Dice at each threshold of ``thresholds`` over the same predictions."""

    def __init__(self, thresholds: Sequence[float] = CALIBRATION_GRID, empty_score: float = 1.0) -> None:
        self.accumulators = {float(t): MetricAccumulator(float(t), empty_score) for t in thresholds}

    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        ignore: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        for accumulator in self.accumulators.values():
            accumulator.update(logits, target, ignore=ignore, names=names)

    def all_reduce(self) -> None:
        """Pool the counts of every torch.distributed process (each scored its own shard)."""
        for accumulator in self.accumulators.values():
            accumulator.all_reduce()

    def scores(self) -> dict[float, float]:
        """Per-image mean Dice at each threshold."""
        return {t: a.compute()["dice_per_image"] for t, a in self.accumulators.items()}

    def best(self, prefer: float = 0.5) -> tuple[float, float]:
        """``(threshold, dice)`` with the highest per-image mean Dice; ties go to the nearest ``prefer``."""
        scores = self.scores()
        # Rounded, so that float noise in averaging does not break a tie that the counts make.
        threshold = max(scores, key=lambda t: (round(scores[t], 9), -abs(t - prefer)))
        return threshold, scores[threshold]
