"""An exponential moving average (EMA) of a model's weights, for ``ema_decay`` in a recipe.

After every optimizer step each averaged tensor moves a fraction ``1 - decay`` of the way towards the
trained one. Early on the decay is lowered to ``(1 + n) / (10 + n)`` after ``n`` updates, so the
average does not cling to the random initial weights in a short run. Floating-point buffers
(BatchNorm running statistics) are averaged the same way; integer buffers are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    """``WeightAverage(model, decay)``; call ``update(model)`` after each step and validate,
    checkpoint or predict with ``averaged``."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.averaged = copy.deepcopy(model).eval()
        for parameter in self.averaged.parameters():
            parameter.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay()
        averaged, trained = [], []
        for mine, theirs in zip(
            self.averaged.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if mine.is_floating_point():
                averaged.append(mine)
                trained.append(theirs.detach())
            else:
                mine.copy_(theirs)
        if averaged:
            torch._foreach_lerp_(averaged, trained, weight)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        self.updates = int(state["updates"])
        self.averaged.load_state_dict(weights)
