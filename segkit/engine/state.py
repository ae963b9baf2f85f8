"""The training state: where a run stands (epoch, optimizer step, best score, history, time spent).

One object, saved in every checkpoint and restored by ``--resume``, so a resumed run continues from
exactly where the interrupted one stood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainingState:
    #: The last completed epoch (0 before the first).
    epoch: int = 0
    #: Optimizer steps taken so far (a step may span several micro-batches, see --accumulate-steps).
    step: int = 0
    #: Seconds trained before this process started (by the run this one resumes).
    elapsed_before: float = 0.0
    #: The best selection score so far (valid Dice for a binary task) and its epoch.
    best_score: float = -1.0
    best_epoch: int = 0
    #: One record per completed epoch: what metrics.csv holds.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The time budget's estimates when the state was saved (``RunClock.estimates()``); empty before.
    clock_estimates: dict[str, float] = field(default_factory=dict)

    def add_epoch(self, record: dict[str, Any], score: float) -> bool:
        """Record a completed epoch; True when ``score`` is the best so far."""
        self.epoch = int(record["epoch"])
        self.history.append(record)
        improved = score > self.best_score and math.isfinite(score)
        if improved:
            self.best_score, self.best_epoch = score, self.epoch
        return improved

    @property
    def last_record(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def state_dict(self, elapsed_s: float, clock_estimates: dict[str, float] | None = None) -> dict[str, Any]:
        """The checkpoint fields of this state (names as checkpoints have always carried them);
        ``clock_estimates`` are the time budget's (``RunClock.estimates()``)."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best_dice": self.best_score,
            "best_epoch": self.best_epoch,
            "schedule_state": {"step": self.step, "elapsed_s": elapsed_s, **(clock_estimates or {})},
        }

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> TrainingState:
        """The state a checkpoint saved; a ``KeyError`` names a field it lacks."""
        schedule = payload["schedule_state"]
        return cls(
            epoch=int(payload["epoch"]),
            step=int(schedule["step"]),
            elapsed_before=float(schedule["elapsed_s"]),
            best_score=payload.get("best_dice", -1.0),
            best_epoch=payload.get("best_epoch", 0),
            history=list(payload.get("history", [])),
            # Checkpoints written before the estimates were saved have none: the rule starts from 0 s.
            clock_estimates={
                key: float(schedule[key]) for key in ("step_s", "validation_s") if key in schedule
            },
        )
